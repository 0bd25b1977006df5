"""B6: daemon memory.  The daemon's VmRSS after 10 and after 100 snapshots
(`mkdir MNT/sNNN`, listing and reading the 10th and the 100th) of the
environment of 10,000 small files; target: at most 64 MiB after 100.
"""
import os
import shlex
import statistics
import time

from tsbench.common import MiB, BenchError, Row, fmt_vals, log, rm_rf, run, tail
from tsbench.snap import ts_mount


def rss(pid):
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0]) * 1024
    return vals["VmRSS"], vals["VmHWM"]


def bench_b6(ctx):
    env = ctx.envs.small(10000)
    out = ctx.out("b6")
    rss10, rss100, hwm, mk = [], [], [], []
    for r in range(ctx.runs):
        log("B6 run %d/%d" % (r + 1, ctx.runs))
        store, mnt = os.path.join(out, "store"), os.path.join(out, "mnt")
        rm_rf(store)
        with ts_mount(env, store, mnt, os.path.join(out, "daemon.log")) as m:
            for i in range(1, 101):
                t = time.monotonic()
                os.mkdir(os.path.join(mnt, "s%03d" % i))
                mk.append(time.monotonic() - t)
                if i in (10, 100):
                    run(["ls", "-l", mnt])
                    run("set -o pipefail; tar -cf - -C %s . | cat > /dev/null"
                        % shlex.quote(os.path.join(mnt, "s%03d" % i)), shell=True)
                    if m.proc.poll() is not None:
                        raise BenchError("tracsnap daemon died (exit %s): %s"
                                         % (m.proc.returncode, tail(os.path.join(out, "daemon.log"))))
                    v, h = rss(m.proc.pid)
                    (rss10 if i == 10 else rss100).append(v)
                    if i == 100:
                        hwm.append(h)
        rm_rf(store)
    ok = max(rss100) <= 64 * MiB
    return [Row("B6 daemon VmRSS after 100 snapshots (base: after 10)", "B", rss100, rss10,
                target="<= 64 MiB", passed=ok, ts_label="100", base_label="10",
                note="VmHWM %s; mkdir median %.0f ms, max %.0f ms (%d files each)"
                % (fmt_vals(hwm, "B"), statistics.median(mk) * 1000, max(mk) * 1000,
                   sum(len(f) for _, _, f in os.walk(env))))]
