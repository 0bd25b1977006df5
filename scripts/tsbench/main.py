"""scripts/bench's main(): the options, the build, every measurement in
turn (an ERROR row for one that breaks), the table, the exit status.
"""
import argparse
import contextlib
import os
import shlex
import signal
import sys
import time
import traceback

from tsbench import b1, b2, b3, b6, growth, incr, memory, pg, reads, restore, verify, xfs
from tsbench.common import (REPO, T0, TS, BenchError, block_unmount, error_row, fuse_unmount, log,
                            mounted_paths, print_table, rm_rf, run)
from tsbench.envs import Envs

MEASUREMENTS = [
    ("B1", b1.bench_b1),
    ("B2", b2.bench_b2),
    ("B3", b3.bench_b3),
    ("B4", reads.bench_b4),
    ("B5", reads.bench_b5),
    ("B6", b6.bench_b6),
    ("XFS", xfs.bench_xfs),
    ("GROWTH", growth.bench_growth),
    ("PG", pg.bench_pg),
    ("RS", restore.bench_rs),
    ("S1", incr.bench_s1),
    ("S2", incr.bench_s2),
    ("S3", verify.bench_s3),
    ("S4", memory.bench_s4),
]


class Ctx:
    def __init__(self, args):
        self.workdir = os.path.realpath(args.workdir)
        self.quick = args.quick
        self.large = args.large
        self.runs = args.runs
        self.memo = {}          # figures that several measurements share (incr.measure)
        self.envs = Envs(self.workdir, args.quick)
        self.outdir = os.path.join(self.workdir, "out")

    def out(self, name):
        d = os.path.join(self.outdir, name)
        rm_rf(d)
        os.makedirs(d)
        return d


def cleanup_stale(workdir):
    """Unmount what a previous, interrupted run left under the work directory."""
    for mp, fstype in reversed(mounted_paths()):
        if mp.startswith(workdir + "/"):
            log("unmounting leftover %s (%s)" % (mp, fstype))
            if fstype.startswith("fuse"):
                fuse_unmount(mp)
            else:
                block_unmount(mp)


def one_line(e):
    """A tests/tshelpers.py failure (AssertionError, often with a whole daemon
    log) as one line of the table: its first line and its last five."""
    lines = [l for l in str(e).strip().splitlines() if l.strip()]
    return " | ".join(lines if len(lines) <= 6 else lines[:1] + ["..."] + lines[-5:])


def main():
    ap = argparse.ArgumentParser(description="Benchmark tracsnap against its baselines.")
    ap.add_argument("--only", help="comma-separated subset of: " + ",".join(k for k, _ in MEASUREMENTS))
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (default 3)")
    ap.add_argument("--quick", action="store_true", help="sizes / 10, for a smoke run")
    ap.add_argument("--large", action="store_true",
                    help="S1, S2 and S4 also at 1,000,000 files (generating that environment takes a few "
                    "minutes once; each row adds tens of minutes)")
    ap.add_argument("--workdir", default="/var/tmp/tracsnap-bench", help="default /var/tmp/tracsnap-bench")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run make; use the existing build/tracsnap (waits up to 5 min for it)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    keys = [k for k, _ in MEASUREMENTS]
    only = keys
    if args.only:
        only = [k.strip().upper() for k in args.only.split(",") if k.strip()]
        bad = [k for k in only if k not in keys]
        if bad:
            ap.error("unknown measurement(s) %s; choose from %s" % (",".join(bad), ",".join(keys)))

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    print("$ " + shlex.join(sys.argv))
    try:
        head = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
        dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                    check=False).stdout.strip()
        head += " (modified)" if dirty else ""
    except Exception:
        head = "?"
    print("# %s, %s, kernel %s, %d CPUs, %.0f GiB RAM, commit %s, runs %d%s%s, workdir %s"
          % (time.strftime("%Y-%m-%d %H:%M:%S"), os.uname().nodename, os.uname().release, os.cpu_count(),
             os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, head, args.runs,
             ", quick" if args.quick else "", ", large" if args.large else "", args.workdir))
    sys.stdout.flush()

    # tests/tshelpers.py runs $TRACSNAP_BIN: the binary built (or waited for) below.
    os.environ["TRACSNAP_BIN"] = TS
    if os.geteuid() != 0:
        log("warning: not root: cold-cache, XFS and FUSE measurements may fail")
    os.makedirs(args.workdir, exist_ok=True)
    ctx = Ctx(args)
    cleanup_stale(ctx.workdir)
    rows = []
    broken = False
    try:
        if args.no_build:
            deadline = time.monotonic() + 300
            while not os.access(TS, os.X_OK):
                if time.monotonic() > deadline:
                    raise BenchError("%s missing (--no-build)" % TS)
                log("waiting for %s to be built" % TS)
                time.sleep(10)
            log("not building (--no-build): using %s" % TS)
        else:
            log("building: make -C %s" % REPO)
            run(["make", "-C", REPO])
            if not os.access(TS, os.X_OK):
                raise BenchError("%s missing after make" % TS)
        for key, fn in MEASUREMENTS:
            if key not in only:
                continue
            log("=== %s ===" % key)
            t = time.monotonic()
            try:
                rows.extend(fn(ctx))
            except BenchError as e:
                broken = True
                log("%s failed: %s" % (key, e))
                rows.append(error_row(key, str(e)))
            except AssertionError as e:   # a tests/tshelpers.py helper failed
                broken = True
                log("%s failed: %s" % (key, one_line(e)))
                rows.append(error_row(key, one_line(e)))
            except KeyboardInterrupt:
                raise
            except Exception as e:
                broken = True
                traceback.print_exc()
                rows.append(error_row(key, "%s: %s" % (type(e).__name__, e)))
            finally:
                cleanup_stale(ctx.workdir)
            log("%s done in %.0f s" % (key, time.monotonic() - t))
    except BenchError as e:
        broken = True
        log("error: %s" % e)
    except KeyboardInterrupt as e:
        broken = True
        log("interrupted (%s)" % (e or "SIGINT"))
    finally:
        cleanup_stale(ctx.workdir)
        with contextlib.suppress(Exception):
            rm_rf(ctx.outdir)
    if rows:
        print_table(rows)
    print("# total %.0f s; ratios compare medians measured in this run; PASS/FAIL reports, it does not gate"
          % (time.monotonic() - T0))
    return 1 if broken else 0

