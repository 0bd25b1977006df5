"""S3: verify costs the unique data.  `tracsnap verify` of N_SNAPS snapshots
that share the same files (taken back to back by `tracsnap snapshot`, no
change in between) against verify of one of them, in the same store, the
page cache dropped before each; target: at most 1.2x.

Two environments: files-200k (200,000 files of 1 KiB, where the cost per
file shows) and big (2 GB in 400 files of 5 MiB, where the data does).
verify's summary line ("N MiB read (M MiB in the snapshots)") goes in the
note: what it read once against what the snapshots hold.
"""
import os
import re

from tsbench.common import TS, Row, count_label, drop_caches, log, noisy_runs, rm_rf, timed
from tsbench.snap import ts_snapshot

N_SNAPS = 5
SUMMARY_RE = re.compile(r"^verified .*$", re.M)


def verify_once(env, store, names):
    """Cold `tracsnap verify --store STORE ENV NAMES...`: (seconds, summary line)."""
    drop_caches()
    t, cp = timed([TS, "verify", "--store", store, env] + names)
    m = SUMMARY_RE.search(cp.stdout)
    return t, m.group(0) if m else cp.stdout.strip()


def verify_rows(ctx, env, label):
    out = ctx.out("s3")
    store = os.path.join(out, "store")
    names = ["v%d" % i for i in range(1, N_SNAPS + 1)]
    rm_rf(store)
    snap_s = []
    for name in names:
        log("S3 %s: tracsnap snapshot %s" % (label, name))
        snap_s.append(ts_snapshot(env, store, name)[0])
    one, every = [], []
    sum_one = sum_every = ""
    runs = noisy_runs(ctx)
    for r in range(runs):
        log("S3 %s run %d/%d" % (label, r + 1, runs))
        order = ("one", "every") if r % 2 == 0 else ("every", "one")
        for which in order:
            if which == "one":
                t, sum_one = verify_once(env, store, names[:1])
                one.append(t)
            else:
                t, sum_every = verify_once(env, store, [])
                every.append(t)
    rm_rf(store)
    note = "%s | %s; snapshots took %s s%s" % (sum_every, sum_one, ",".join("%.1f" % s for s in snap_s),
                                               ctx.envs.gen_note(env))
    return [Row("S3 verify, %d snapshots sharing their files vs 1, %s, cold" % (N_SNAPS, label), "s",
                every, one, target="<= 1.2", ratio_limit=1.2, ts_label=str(N_SNAPS), base_label="1",
                note=note)]


def bench_s3(ctx):
    files = ctx.envs.files(200000)
    rows = verify_rows(ctx, files, "%s files of 1 KiB" % count_label(ctx.envs.files_n(200000)))
    big = ctx.envs.big()
    rows += verify_rows(ctx, big, "big (%s)" % os.path.basename(big))
    return rows
