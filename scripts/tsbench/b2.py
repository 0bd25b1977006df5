"""B2: incremental snapshot, by `mkdir MNT/NAME` on a mounted daemon.

Per run: a fresh store and a tracsnap mount; mkdir MNT/first-R, wait until it is
sealed and staged (the daemon then makes the next snapshot's tree ahead:
snapshot/take/stage.h).  Then two incremental snapshots, each after adding 1 % new
attachments (files + rows, written as Trac writes them):
  "settled": mkdir MNT/second-R B2_PAUSE_S after the attachments were written.
      In service a snapshot comes minutes or hours after the changes it
      holds; the daemon copies changes into the stage once they settle
      (fs/daemon/daemon_stage.c), so the snapshot only checks.  This is the
      target row; how long the daemon took to catch up is reported beside it.
  "at once": mkdir MNT/now-R right after the attachments were written (and
      sync), the worst case: the snapshot waits for (or makes) the copies of
      the new files.  Reported for information.
The sealed times (visible + hashing + writeback + syncfs) are reported too.
The store growth is measured for the settled snapshot, from before its new
attachments were written (their copies in the stage count) until it is
sealed and staged.
"""
import contextlib
import os
import sqlite3
import time

from tsbench.common import ATT_SIZE, Row, du_bytes, fmt, log, noisy_runs, rm_rf, settle, sync, warm
from tsbench.envs import att_path
from tsbench.snap import mkdir_snapshot, ts_mount, wait_staged

B2_PAUSE_S = 2.0


def b2_add(env, db, r, tag, n_new):
    """Add n_new attachments of ATT_SIZE as Trac does: file created, row inserted,
    content written, one commit.  Returns their paths."""
    added = []
    block = bytearray(os.urandom(ATT_SIZE))
    c = sqlite3.connect(db, timeout=10, isolation_level=None)
    c.execute("BEGIN")
    for k in range(n_new):
        tid = 31 + k
        fn = "b2-run%d-%s-%d.bin" % (r, tag, k)
        path = att_path(env, "ticket", tid, fn)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        block[:64] = ("tracsnap-bench b2 run %d %s new %d" % (r, tag, k)).ljust(63).encode() + b"\n"
        with open(path, "wb") as f:
            f.write(block)
        added.append(path)
        c.execute("INSERT INTO attachment VALUES (?,?,?,?,?,?,?)",
                  ("ticket", str(tid), fn, ATT_SIZE, int(time.time() * 1e6), "b2", "bench-b2"))
    c.execute("COMMIT")
    c.close()
    return added


def b2_wait_caught_up(env, store, paths, t0, timeout=10.0):
    """Seconds from t0 until the daemon's stage holds every path (STORE/.stage/manifest
    lists it and the stage is not being refreshed), or None after timeout."""
    rels = [os.path.relpath(x, env) for x in paths]
    man, base = os.path.join(store, ".stage", "manifest"), os.path.join(store, ".stage", "base")
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(OSError):
            with open(man) as f:
                text = f.read()
            if os.path.exists(base) and all("\t%s\n" % rel in text for rel in rels):
                return time.monotonic() - t0
        time.sleep(0.005)
    return None


def bench_b2(ctx):
    env = ctx.envs.big()
    db = os.path.join(env, "db", "trac.db")
    out = ctx.out("b2")
    store, mnt = os.path.join(out, "store"), os.path.join(out, "mnt")
    dlog = os.path.join(out, "daemon.log")
    n_new = 4 if not ctx.quick else 1
    warm(env)
    firsts, seconds, firsts_sl, seconds_sl, nows, growth, limit, caught = [], [], [], [], [], [], [], []
    runs = noisy_runs(ctx)
    for r in range(runs):
        log("B2 run %d/%d" % (r + 1, runs))
        rm_rf(store)
        added = []
        with ts_mount(env, store, mnt, dlog) as m:
            sync()
            t1, s1 = mkdir_snapshot(store, mnt, "first-%d" % r, m, dlog)
            wait_staged(store, "first-%d" % r)
            settle()   # the store deleted before the first snapshot
            try:
                added += b2_add(env, db, r, "now", n_new)
                sync()
                t_now, _ = mkdir_snapshot(store, mnt, "now-%d" % r, m, dlog)
                wait_staged(store, "now-%d" % r)
                settle()
                # Before the new attachments: the daemon's stage copies them as they
                # appear (snapshot/take/stage.h), and those copies are growth too.
                before = du_bytes(store)
                new = b2_add(env, db, r, "settled", n_new)
                added += new
                t_added = time.monotonic()
                sync()
                caught.append(b2_wait_caught_up(env, store, new, t_added))
                time.sleep(max(0.0, t_added + B2_PAUSE_S - time.monotonic()))
                new_bytes = n_new * ATT_SIZE
                dbsize = os.path.getsize(db)
                t2, s2 = mkdir_snapshot(store, mnt, "second-%d" % r, m, dlog)
                wait_staged(store, "second-%d" % r)   # its directories count too
                after = du_bytes(store)
            finally:
                c = sqlite3.connect(db, timeout=10, isolation_level=None)
                c.execute("DELETE FROM attachment WHERE author='bench-b2'")
                c.close()
                for path in added:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
        firsts.append(t1)
        seconds.append(t2)
        nows.append(t_now)
        firsts_sl.append(s1)
        seconds_sl.append(s2)
        growth.append(after - before)
        limit.append(1.2 * (new_bytes + dbsize))
    rm_rf(store)
    note_new = "new %s + db %s" % (fmt(n_new * ATT_SIZE, "B"), fmt(os.path.getsize(db), "B"))
    g_ok = all(g <= l for g, l in zip(growth, limit))
    caught_s = ", ".join("-" if x is None else "%.3f" % x for x in caught)
    return [
        Row("B2 incremental: 2nd snapshot (+%d x 5 MiB, %.0f s later) vs 1st, mkdir wall (visible)"
            % (n_new, B2_PAUSE_S), "s", seconds, firsts, target="<= 0.10", ratio_limit=0.10,
            ts_label="2nd", base_label="1st",
            note="stage caught up %s s after the writes" % caught_s),
        Row("B2 incremental at once: snapshot (+%d x 5 MiB) right after the writes vs 1st" % n_new, "s",
            nows, firsts, ts_label="now", base_label="1st", note="for information"),
        Row("B2 incremental sealed (visible + hashing + sync): 2nd vs 1st", "s", seconds_sl, firsts_sl,
            ts_label="2nd", base_label="1st", note="for information"),
        Row("B2 store growth (du) vs 1.2 x (new bytes + db)", "B", growth, limit, target="growth <= limit",
            passed=g_ok, ts_label="growth", base_label="limit", note=note_new),
    ]
