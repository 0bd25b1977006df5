"""B1: writer stall.  The longest commit wait of the Trac-like writer
(tsbench/writer.py) while `tracsnap snapshot` runs, against Trac's own
hotcopy (BEGIN IMMEDIATE; cp -a; COMMIT), for environments of 0.5, 1 and
2 GB; the snapshot's lock hold time; a control (cp -a && sync, no lock: the
I/O share of the waits); and whether the wait stays flat from 0.5 to 2 GB.

`tracsnap snapshot` seals before it exits, so B1's window includes sealing.
"""
import json
import os
import shlex
import signal
import sqlite3
import statistics
import subprocess
import time

from tsbench.common import (BENCH, PY, BenchError, Row, fmt_vals, log, rm_rf, run, settle, tree_bytes,
                            warm)
from tsbench.snap import ts_snapshot


def with_writer(db, op):
    """Start the writer, wait 0.5 s, run op(), wait 0.5 s, stop the writer.
    Returns (op result, max commit wait, number of failed commits, (median, max) wait before the op).

    The max counts the commits that end after op() starts: the ones before
    it, the writer's first among them (a fresh connection's, up to 110 ms on
    this VM with nothing else running), are no part of the operation's
    stall and come apart, as the idle median and max."""
    p = subprocess.Popen([PY, BENCH, "--_writer", db], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        if line.strip() != b"ready":
            raise BenchError("writer did not start: %s" % p.stderr.read().decode(errors="replace")[-500:])
        time.sleep(0.5)
        op_start = time.monotonic()
        res = op()
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    try:
        rec = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError("writer output unreadable: %s" % err.decode(errors="replace")[-500:])
    fails = [r for r in rec if r[2] is not True]
    idle = [r[1] for r in rec if r[0] + r[1] < op_start] or [0.0]
    during = [r[1] for r in rec if r[0] + r[1] >= op_start] or [0.0]
    return res, max(during), len(fails), (statistics.median(idle), max(idle))


def bench_b1(ctx):
    rows = []
    out = ctx.out("b1")
    per_size, labels = {}, {}
    for n_full, label in ((100, "0.5 GB"), (200, "1 GB"), (400, "2 GB")):
        env = ctx.envs.att(n_full)
        db = os.path.join(env, "db", "trac.db")
        gb = tree_bytes(env) / 1e9
        label = "%.2f GB" % gb if ctx.quick else label
        labels[n_full] = label
        ts_w, base_w, held, fails_ts, fails_base, base_wall, ts_wall, idle = [], [], [], 0, 0, [], [], []
        idle_max = []
        ctl_w = []
        big = n_full == 400
        warm(env)   # the VM's DAMON pages out what sat idle for a minute
        for r in range(ctx.runs):
            log("B1 %s run %d/%d" % (label, r + 1, ctx.runs))
            order = ("base", "ts") if r % 2 == 0 else ("ts", "base")
            if big:   # control: the same copy without any lock, to show the I/O share of the waits
                order += ("ctl",)
            for which in order:
                dest = os.path.join(out, "cp")
                store = os.path.join(out, "store")
                rm_rf(dest)
                rm_rf(store)
                settle()
                if which == "base":
                    def op():
                        t = time.monotonic()
                        c = sqlite3.connect(db, timeout=10, isolation_level=None)
                        c.execute("BEGIN IMMEDIATE")
                        try:
                            run(["cp", "-a", env, dest])
                        finally:
                            c.execute("COMMIT")
                            c.close()
                        return time.monotonic() - t
                    wall, w, nf, idl = with_writer(db, op)
                    idle.append(idl[0])
                    idle_max.append(idl[1])
                    base_w.append(w)
                    base_wall.append(wall)
                    fails_base += nf
                elif which == "ctl":
                    _, w, nf, _ = with_writer(db, lambda: run("cp -a %s %s && sync" % (shlex.quote(env), shlex.quote(dest)),
                                                               shell=True))
                    ctl_w.append(w)
                else:
                    # `tracsnap snapshot` seals inline before it exits (hashing, bounded
                    # writeback, syncfs), so the measured window covers the whole snapshot
                    # including sealing: writeback that stalled Trac's fsyncs would show here.
                    (wall, lk, _, _), w, nf, idl = with_writer(db, lambda: ts_snapshot(env, store, "s1"))
                    idle.append(idl[0])
                    idle_max.append(idl[1])
                    ts_w.append(w)
                    held.append(lk / 1000.0)
                    ts_wall.append(wall)
                    fails_ts += nf
        rm_rf(os.path.join(out, "cp"))
        rm_rf(os.path.join(out, "store"))
        per_size[n_full] = ts_w
        note = ("lock held %s; op wall ts %s, base %s; idle commit median %.1f ms, longest %s "
                "(before the op, not counted)" % (
                    fmt_vals(held, "ms"), fmt_vals(ts_wall, "s"), fmt_vals(base_wall, "s"),
                    statistics.median(idle) * 1000, fmt_vals(idle_max, "ms")))
        if fails_ts or fails_base:
            note += "; FAILED COMMITS (database is locked): ts %d, base %d" % (fails_ts, fails_base)
        rows.append(Row("B1 writer stall %s: max commit wait (base: hotcopy)" % label, "ms", ts_w, base_w,
                        target="<= 0.05" if big else None, ratio_limit=0.05 if big else None, note=note))
        if big:
            rows.append(Row("B1 tracsnap lock held, %s" % label, "ms", held, [], note="from tracsnap's output"))
            rows.append(Row("B1 control, %s: max commit wait during cp -a && sync, no lock" % label, "ms", ctl_w, [],
                            ts_label="cp", note="I/O share of the waits, for information"))
    a, b = statistics.median(per_size[100]), statistics.median(per_size[400])
    flat = b <= 2 * a or b - a <= 0.020
    rows.append(Row("B1 flat: tracsnap max wait, %s vs %s" % (labels[400], labels[100]), "ms",
                    per_size[400], per_size[100], target="<= 2x or +20ms", passed=flat,
                    ts_label=labels[400].replace(" ", ""), base_label=labels[100].replace(" ", "")))
    return rows
