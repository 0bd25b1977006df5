"""B4 and B5: reading a snapshot through the mount against reading its tree
in the store directly, warm and cold (caches dropped before each run).
B4: tar of the 2 GB environment's snapshot (throughput; target: at least
0.8 of the store's, warm and cold).  B5: find -printf over the entries of
the snapshot of the environment of 100,000 small files (target: at most
twice the store's time warm, 1.5 times cold).  Both wait for the
snapshot's seal first: its hashing and writeback must not overlap the
reads.
"""
import os
import shlex

import tshelpers
from tsbench.common import Row, drop_caches, fmt, log, noisy_runs, rm_rf, run, sync, timed, tree_bytes
from tsbench.snap import mkdir_snapshot, ts_mount


def read_runs(ctx, label, cmd_ts, cmd_plain, cold):
    ts, plain = [], []
    if not cold:
        run(cmd_ts, shell=True)
        run(cmd_plain, shell=True)
    runs = noisy_runs(ctx)
    for r in range(runs):
        log("%s %s run %d/%d" % (label, "cold" if cold else "warm", r + 1, runs))
        order = [("ts", cmd_ts), ("plain", cmd_plain)]
        if r % 2:
            order.reverse()
        for which, cmd in order:
            if cold:
                drop_caches()
            else:
                sync()
            t, _ = timed(cmd, shell=True)
            (ts if which == "ts" else plain).append(t)
    return ts, plain


def bench_b4(ctx):
    env = ctx.envs.big()
    out = ctx.out("b4")
    store, mnt = os.path.join(out, "store"), os.path.join(out, "mnt")
    rows = []
    dlog = os.path.join(out, "daemon.log")
    with ts_mount(env, store, mnt, dlog) as m:
        # wait for the seal: its hashing and writeback must not overlap the reads
        mk, _ = mkdir_snapshot(store, mnt, "s1", m, dlog)
        tree = os.path.join(store, "s1", "tree")
        nbytes = tree_bytes(tree)
        tar = "set -o pipefail; tar -cf - -C %s . | cat > /dev/null"
        cmd_ts, cmd_plain = tar % shlex.quote(os.path.join(mnt, "s1")), tar % shlex.quote(tree)
        for cold in (False, True):
            ts, plain = read_runs(ctx, "B4", cmd_ts, cmd_plain, cold)
            tput_ts = [nbytes / t for t in ts]
            tput_pl = [nbytes / t for t in plain]
            rows.append(Row("B4 tar read of a snapshot, %s: mount vs store tree" % ("cold" if cold else "warm"),
                            "B/s", tput_ts, tput_pl, target=">= 0.8",
                            ratio_limit=0.8, higher_better=True, base_label="plain",
                            note="%s per run%s" % (fmt(nbytes, "B"),
                                                    "; mkdir took %.1f s" % mk if not cold else "")))
    rm_rf(store)
    return rows


def bench_b5(ctx):
    env = ctx.envs.small(100000)
    out = ctx.out("b5")
    store, mnt = os.path.join(out, "store"), os.path.join(out, "mnt")
    rows = []
    dlog = os.path.join(out, "daemon.log")
    with ts_mount(env, store, mnt, dlog) as m:
        sync()
        # wait for the seal: its hashing and writeback must not overlap the reads
        mk, _ = mkdir_snapshot(store, mnt, "s1", m, dlog)
        tree = os.path.join(store, "s1", "tree")
        nfiles = len(tshelpers.tree_entries(tree)) - 1   # not the tree itself
        find = "find %s -printf '%%s %%m %%u\\n' > /dev/null"
        cmd_ts, cmd_plain = find % shlex.quote(os.path.join(mnt, "s1")), find % shlex.quote(tree)
        for cold in (False, True):
            ts, plain = read_runs(ctx, "B5", cmd_ts, cmd_plain, cold)
            rows.append(Row("B5 find -printf over %d entries, %s: mount vs store tree"
                            % (nfiles, "cold" if cold else "warm"), "s", ts, plain,
                            target="<= 1.5" if cold else "<= 2", ratio_limit=1.5 if cold else 2.0,
                            base_label="plain", note="" if cold else "mkdir (first snapshot) took %.1f s" % mk))
    rm_rf(store)
    return rows
