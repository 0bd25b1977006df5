"""RS: the store after a restore.  After `tracsnap restore` the next
snapshot should share every file whose content is unchanged: the store's
growth for the first snapshot after a restore, as a ratio to the new data
written into the environment after the restore (target <= 1.2; sharing
nothing, it is the whole environment over the new data).

Each run, on a copy of the 0.5 GB environment (att-100, B1's; the restore
replaces the copy, never the kept environment): `tracsnap snapshot` base;
an attachment added (what the restore then undoes); `tracsnap restore base`;
RS_NEW new attachments of 5 MiB, with their rows; `du` of the store; the
next `tracsnap snapshot`; `du` again.  du counts each hard-linked inode
once, so the growth is what the snapshot added: copies, its directories,
its manifest, and the database (copied by every snapshot).
"""
import os
import re
import sqlite3
import time

from tsbench.common import ATT_SIZE, MiB, BenchError, Row, du_bytes, log, rm_rf, run
from tsbench.envs import att_path
from tsbench.snap import ts_snapshot
import tshelpers

RS_NEW = 4                  # new attachments after the restore (quick: 1)
COPIED_RE = re.compile(r"([\d.]+ \S+) copied, ([\d.]+ \S+) shared")


def add_attachments(env, first, n, tag):
    """n new 5 MiB attachments of ticket 1, as Trac adds them (file, row);
    returns their bytes."""
    db = os.path.join(env, "db", "trac.db")
    block = bytearray(os.urandom(ATT_SIZE))
    rows, now = [], int(time.time() * 1e6)
    for i in range(first, first + n):
        fn = "rs-%s-%03d.bin" % (tag, i)
        path = att_path(env, "ticket", 1, fn)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        block[:64] = ("tracsnap-bench restore %s %d" % (tag, i)).ljust(63).encode() + b"\n"
        with open(path, "wb") as f:
            f.write(block)
        rows.append(("ticket", "1", fn, ATT_SIZE, now + i, "bench restore", "bench-rs"))
    c = sqlite3.connect(db)
    with c:
        c.executemany("INSERT INTO attachment VALUES (?,?,?,?,?,?,?)", rows)
    c.close()
    return n * ATT_SIZE


def bench_rs(ctx):
    src = ctx.envs.att(100)
    out = ctx.out("rs")
    env, store = os.path.join(out, "env"), os.path.join(out, "store")
    n_new = 1 if ctx.quick else RS_NEW
    growth, new, notes = [], [], []
    for r in range(ctx.runs):
        log("RS run %d/%d" % (r + 1, ctx.runs))
        rm_rf(env)
        rm_rf(store)
        run(["cp", "-a", src, env])
        ts_snapshot(env, store, "base")
        add_attachments(env, 0, 1, "undone")
        p = tshelpers.tracsnap("restore", "--store", store, "base", env, check=False)
        if p.returncode != 0:
            raise BenchError("tracsnap restore: exit %d: %s" % (p.returncode, p.stderr.strip()[-500:]))
        recorded = "recorded as snapshot" in p.stdout
        n = add_attachments(env, 0, n_new, "after-%d" % r)
        before = du_bytes(store)
        _, _, _, line = ts_snapshot(env, store, "after")
        growth.append(du_bytes(store) - before)
        new.append(n)
        m = COPIED_RE.search(line)
        notes.append("%s%s" % ("%s copied, %s shared" % m.groups() if m else "?",
                               "" if recorded else ", no record"))
    rm_rf(env)
    rm_rf(store)
    return [Row("RS store growth, first snapshot after a restore (base: new data written after it)", "B",
                growth, new, target="<= 1.2", ratio_limit=1.2, ts_label="growth", base_label="new",
                note="%d x %d MiB new; %s" % (n_new, ATT_SIZE // MiB, "; ".join(notes)))]
