"""GROWTH: how much the store grows per snapshot of a large SQLite database
(doc/contract.md section 5; snapshot/store/seal_share.h) on an XFS
filesystem with reflinks: a loop image made for the run holds the store
alone, the environment stays on the work directory's filesystem, so that
the image's used space is the store's.  The environment is the SQLite
fixture with a 1 GiB database (--quick: 100 MiB) of 64 KiB rows, kept under
WORKDIR/envs between runs.  Per run, on a fresh store, `tracsnap snapshot`
(which seals before it exits) takes a first snapshot, then one after 16
rows rewritten (1 MiB of pages), then one with nothing written; the used
space (statvfs, after sync) is read after each.  Not by mkdir: the daemon's
stage keeps a copy of the database made ahead (STORE/.stage/db.precopy,
snapshot/take/stage.h), whose space comes and goes with its refreshes
between two readings.  Ratio: the growth over the database's size; targets
<= 0.05 with 1 MiB rewritten, <= 0.01 unchanged (the copy is then a hard
link to the previous one).
Skipped when mkfs.xfs is not installed.
"""
import contextlib
import json
import os
import random
import shutil
import sqlite3

from tsbench.common import MiB, Row, block_unmount, log, rm_rf, run, sync
from tsbench.envs import FIXTURE, extract_fixture
from tsbench.snap import ts_snapshot
from tshelpers import fs_used

ROW = 64 * 1024
REWRITE = 16                # rows of 64 KiB: 1 MiB of pages


def mkfs_xfs():
    return shutil.which("mkfs.xfs") or next((p for p in ("/usr/sbin/mkfs.xfs", "/sbin/mkfs.xfs")
                                             if os.path.exists(p)), None)


def db_env(ctx, rows):
    """The fixture with `rows` rows of 64 KiB in its database, reused while
    its spec file checks out."""
    env = os.path.join(ctx.envs.dir, "dbgrowth-%d" % rows)
    spec = {"kind": "dbgrowth", "rows": rows, "fixture_size": os.path.getsize(FIXTURE)}
    db = os.path.join(env, "db", "trac.db")
    with contextlib.suppress(OSError, ValueError, sqlite3.Error):
        with open(env + ".json") as f:
            if json.load(f) == spec and not os.path.exists(db + "-journal"):
                c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
                try:
                    if c.execute("SELECT count(*) FROM tracsnap_big").fetchone()[0] == rows:
                        return env
                finally:
                    c.close()
    log("generating environment %s" % env)
    rm_rf(env)
    rm_rf(env + ".json")
    extract_fixture(env)
    c = sqlite3.connect(db)
    try:
        c.execute("CREATE TABLE tracsnap_big(id INTEGER PRIMARY KEY, b BLOB)")
        c.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < %d) "
                  "INSERT INTO tracsnap_big(b) SELECT randomblob(%d) FROM n" % (rows, ROW))
        c.commit()
    finally:
        c.close()
    sync()
    with open(env + ".json", "w") as f:
        json.dump(spec, f)
    return env


def rewrite(env, rows):
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    try:
        for i in random.sample(range(1, rows + 1), REWRITE):
            c.execute("UPDATE tracsnap_big SET b = randomblob(?) WHERE id = ?", (ROW, i))
        c.commit()
    finally:
        c.close()


def bench_growth(ctx):
    mkfs = mkfs_xfs()
    if not mkfs:
        return [Row("GROWTH store growth on XFS: skipped (mkfs.xfs not installed)", "B", [], [])]
    rows = 1600 if ctx.quick else 16384
    env = db_env(ctx, rows)
    size = os.path.getsize(os.path.join(env, "db", "trac.db"))
    out = ctx.out("growth")
    img, mnt = os.path.join(out, "xfs.img"), os.path.join(out, "xfs")
    changed, same = [], []
    try:
        run(["truncate", "-s", "%dM" % max(1024, 4 * size // MiB), img])
        run([mkfs, "-q", "-f", "-m", "reflink=1", img])
        os.makedirs(mnt, exist_ok=True)
        run(["mount", "-o", "loop", img, mnt])
        store = os.path.join(mnt, "store")
        for r in range(ctx.runs):
            log("GROWTH run %d/%d (database %.0f MiB)" % (r + 1, ctx.runs, size / MiB))
            rm_rf(store)
            ts_snapshot(env, store, "base-%d" % r)
            prev = fs_used(mnt)
            rewrite(env, rows)
            ts_snapshot(env, store, "changed-%d" % r)
            now = fs_used(mnt)
            changed.append(now - prev)
            ts_snapshot(env, store, "same-%d" % r)
            same.append(fs_used(mnt) - now)
            rm_rf(store)
    finally:
        block_unmount(mnt)
        with contextlib.suppress(OSError):
            os.unlink(img)
    label = "%.0f MiB" % (size / MiB) if ctx.quick else "1 GiB"
    return [
        Row("GROWTH XFS store growth per snapshot, %s database, 1 MiB of pages rewritten "
            "/ database size" % label, "B", changed, [size] * len(changed), target="<= 0.05",
            ratio_limit=0.05, base_label="db"),
        Row("GROWTH XFS store growth per snapshot, %s database unchanged / database size" % label,
            "B", same, [size] * len(same), target="<= 0.01", ratio_limit=0.01, base_label="db"),
    ]
