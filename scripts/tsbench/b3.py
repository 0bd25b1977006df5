"""B3: first snapshot.  `mkdir MNT/NAME` on a fresh store (a fresh mount per
run) of the 2 GB environment, against cp -a (warm: the target) and
cp -a && sync; the time until sealed is reported for information.
"""
import os
import shlex

from tsbench.common import Row, log, rm_rf, sync, timed, warm
from tsbench.snap import mkdir_snapshot, ts_mount


def bench_b3(ctx):
    """First snapshot = mkdir MNT/NAME on a fresh store (a fresh mount per run, so that
    nothing is shared with an earlier snapshot).  The target compares the mkdir wall
    time (visible); the time until sealed is reported for information."""
    env = ctx.envs.big()
    out = ctx.out("b3")
    store, dest, mnt = os.path.join(out, "store"), os.path.join(out, "cp"), os.path.join(out, "mnt")
    dlog = os.path.join(out, "daemon.log")
    warm(env)
    ts, ts_sl, cpa, cps = [], [], [], []
    for r in range(ctx.runs):
        log("B3 run %d/%d" % (r + 1, ctx.runs))
        order = ["ts", "cp", "cpsync"]
        order = order[r % 3:] + order[:r % 3]
        for which in order:
            rm_rf(store)
            rm_rf(dest)
            sync()
            if which == "ts":
                with ts_mount(env, store, mnt, dlog) as m:
                    sync()
                    vis, sl = mkdir_snapshot(store, mnt, "first-%d" % r, m, dlog)
                ts.append(vis)
                ts_sl.append(sl)
            elif which == "cp":
                cpa.append(timed(["cp", "-a", env, dest])[0])
            else:
                cps.append(timed("cp -a %s %s && sync" % (shlex.quote(env), shlex.quote(dest)), shell=True)[0])
    rm_rf(store)
    rm_rf(dest)
    return [
        Row("B3 first snapshot of big (mkdir, visible) vs cp -a (warm)", "s", ts, cpa,
            target="<= 1.25", ratio_limit=1.25),
        Row("B3 first snapshot of big (mkdir, visible) vs cp -a && sync", "s", ts, cps, note="for information"),
        Row("B3 first snapshot sealed (visible + hashing + sync) vs cp -a && sync", "s", ts_sl, cps,
            ts_label="sealed", note="for information"),
    ]
