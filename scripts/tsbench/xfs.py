"""XFS: first snapshot on an XFS filesystem with reflinks (a 6 GB loop
image made for the run) of the 2 GB environment copied onto it, by
`mkdir MNT/NAME` (visible; target: at most 0.2 of cp -a --reflink=never),
against cp -a with reflinks (for information) and the time until sealed.
Skipped when mkfs.xfs is not installed.
"""
import contextlib
import os
import shutil

from tsbench.common import Row, block_unmount, log, rm_rf, run, sync, timed, warm
from tsbench.snap import mkdir_snapshot, ts_mount


def bench_xfs(ctx):
    mkfs = shutil.which("mkfs.xfs") or ("/usr/sbin/mkfs.xfs" if os.path.exists("/usr/sbin/mkfs.xfs")
                                         else ("/sbin/mkfs.xfs" if os.path.exists("/sbin/mkfs.xfs") else None))
    if not mkfs:
        r = Row("XFS reflink: skipped (mkfs.xfs not installed)", "s", [], [])
        return [r]
    env0 = ctx.envs.big()
    out = ctx.out("xfs")
    img, mnt = os.path.join(out, "xfs.img"), os.path.join(out, "xfs")
    rows = []
    try:
        run(["truncate", "-s", "6G", img])
        run([mkfs, "-q", "-f", "-m", "reflink=1", img])
        os.makedirs(mnt, exist_ok=True)
        run(["mount", "-o", "loop", img, mnt])
        env = os.path.join(mnt, "env")
        log("XFS: copying big onto the XFS filesystem")
        run(["cp", "-a", "--reflink=never", env0, env])
        sync()
        warm(env)
        store, dest = os.path.join(mnt, "store"), os.path.join(mnt, "cp")
        # the FUSE mount point and its log stay off the XFS filesystem
        tsmnt, dlog = os.path.join(out, "tsmnt"), os.path.join(out, "daemon.log")
        ts, ts_sl, never, auto = [], [], [], []
        for r in range(ctx.runs):
            log("XFS run %d/%d" % (r + 1, ctx.runs))
            order = ["ts", "never", "auto"]
            order = order[r % 3:] + order[:r % 3]
            for which in order:
                rm_rf(store)
                rm_rf(dest)
                sync()
                if which == "ts":
                    # a fresh store, hence a fresh mount, per run; mkdir = visible, then sealed
                    with ts_mount(env, store, tsmnt, dlog) as m:
                        sync()
                        vis, sl = mkdir_snapshot(store, tsmnt, "first-%d" % r, m, dlog)
                    ts.append(vis)
                    ts_sl.append(sl)
                elif which == "never":
                    never.append(timed(["cp", "-a", "--reflink=never", env, dest])[0])
                else:
                    auto.append(timed(["cp", "-a", env, dest])[0])
        rm_rf(store)
        rm_rf(dest)
        rows.append(Row("XFS first snapshot (mkdir, visible) vs cp -a --reflink=never", "s", ts, never,
                        target="<= 0.2", ratio_limit=0.2, base_label="never"))
        rows.append(Row("XFS first snapshot (mkdir, visible) vs cp -a (coreutils %s: reflink=auto)"
                        % run(["cp", "--version"]).stdout.split()[3], "s", ts, auto,
                        base_label="auto", note="for information"))
        rows.append(Row("XFS first snapshot sealed (visible + hashing + sync) vs cp -a --reflink=never", "s",
                        ts_sl, never, ts_label="sealed", base_label="never", note="for information"))
    finally:
        block_unmount(mnt)
        with contextlib.suppress(OSError):
            os.unlink(img)
    return rows
