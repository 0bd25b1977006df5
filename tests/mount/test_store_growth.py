"""The store grows with change, not with the size of what is unchanged
(doc/contract.md section 5; snapshot/store/seal_share.h, seal_dedupe.h).

Sealing hashes every copy a snapshot made; a copy identical to the previous
sealed snapshot's at the same path, with the same metadata, becomes a hard
link to it: the database when nothing was written to it, a file whose mode
was changed and put back, every file after a restore.  A previous copy that
is damaged is never linked.  On a filesystem with reflinks (XFS here, on a
loop device made for the test) a copy that changed in part shares its
unchanged blocks with the previous one: a database of 100+ MB with a few
pages rewritten grows the filesystem by far less than its size, whether the
environment is on another filesystem than the store (every copy is a full
one there) or in WAL mode (the backup API writes the copy anew).

Checked with the real binary (`tracsnap snapshot`, the daemon's mkdir),
stat(2) of the store's copies, statvfs(2) of the XFS filesystem, and
`tracsnap verify` / `tracsnap restore`.
"""
import contextlib
import os
import shutil
import sqlite3
import subprocess

import pytest

from tshelpers import cli_snapshot, fs_used, run, sha256_file, tracsnap, wait_sealed, wait_stage

DB = os.path.join("db", "trac.db")
EX_DATAERR = 65


def stored(store, name, rel):
    return os.path.join(store, name, "tree", rel)


def ino(store, name, rel):
    return os.lstat(stored(store, name, rel)).st_ino


def nlink(store, name, rel):
    return os.lstat(stored(store, name, rel)).st_nlink


def verify(env, store):
    return tracsnap("verify", "--store", store, env, check=False)


def write_db(env, sql="INSERT INTO system(name, value) VALUES ('tracsnap-test', 'x')"):
    c = sqlite3.connect(os.path.join(env, DB))
    try:
        c.execute(sql)
        c.commit()
    finally:
        c.close()


def regular_files(tree):
    out = []
    for d, _, files in os.walk(tree):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(os.path.relpath(p, tree))
    return sorted(out)


# ---- identical copies become hard links -------------------------------------


def test_unchanged_database_shared_written_copied(env_sqlite, tmp_path):
    env, store = env_sqlite, str(tmp_path / "store")
    cli_snapshot(env, store, "s1")
    cli_snapshot(env, store, "s2")
    # Nothing written in between: one inode for both.
    assert ino(store, "s1", DB) == ino(store, "s2", DB)
    assert nlink(store, "s2", DB) == 2

    write_db(env)
    cli_snapshot(env, store, "s3")
    assert ino(store, "s3", DB) != ino(store, "s2", DB)
    assert nlink(store, "s3", DB) == 1
    assert sha256_file(stored(store, "s3", DB)) != sha256_file(stored(store, "s2", DB))
    cli_snapshot(env, store, "s4")
    assert ino(store, "s4", DB) == ino(store, "s3", DB)

    p = verify(env, store)
    assert p.returncode == 0, p.stdout + p.stderr

    # Either content restores, and is what it was.
    for name in ("s2", "s4"):
        want = sha256_file(stored(store, name, DB))
        tracsnap("restore", os.path.join(store, name, "tree"), env)
        assert sha256_file(os.path.join(env, DB)) == want
    p = verify(env, store)
    assert p.returncode == 0, p.stdout + p.stderr


def test_unchanged_database_shared_by_mkdir(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s1"))
    wait_sealed(m.store, "s1", daemon=m)
    wait_stage(m.store, "s1")
    os.mkdir(m.path("s2"))
    wait_sealed(m.store, "s2", daemon=m)
    assert ino(m.store, "s1", DB) == ino(m.store, "s2", DB)
    assert "snapshot s2: sealed: " in m.log_text()
    assert "1 unchanged" in [l for l in m.log_text().splitlines() if "snapshot s2: sealed:" in l][0]
    # Through the view the database is the one of s1, byte for byte.
    assert sha256_file(m.path("s2", DB)) == sha256_file(m.path("s1", DB))
    p = verify(m.env, m.store)
    assert p.returncode == 0, p.stdout + p.stderr

    write_db(m.env)
    os.mkdir(m.path("s3"))
    wait_sealed(m.store, "s3", daemon=m)
    assert ino(m.store, "s3", DB) != ino(m.store, "s2", DB)
    p = verify(m.env, m.store)
    assert p.returncode == 0, p.stdout + p.stderr


def test_damaged_previous_copy_never_linked(env_sqlite, tmp_path):
    env, store = env_sqlite, str(tmp_path / "store")
    cli_snapshot(env, store, "s1")
    cli_snapshot(env, store, "s2")
    shared = stored(store, "s2", DB)
    assert ino(store, "s1", DB) == ino(store, "s2", DB)

    # A byte flipped in the shared copy, its mtime put back: only the
    # content shows it.
    st = os.stat(shared)
    with open(shared, "r+b") as f:
        f.seek(200)
        c = f.read(1)
        f.seek(200)
        f.write(bytes([c[0] ^ 0xff]))
    os.utime(shared, ns=(st.st_atime_ns, st.st_mtime_ns))

    cli_snapshot(env, store, "s3")
    assert ino(store, "s3", DB) != ino(store, "s2", DB)
    assert sha256_file(stored(store, "s3", DB)) == sha256_file(os.path.join(env, DB))
    p = verify(env, store)
    assert p.returncode == EX_DATAERR, p.stdout + p.stderr
    damaged = [l for l in p.stdout.splitlines() + p.stderr.splitlines() if DB in l]
    assert damaged and not [l for l in damaged if "s3" in l], p.stdout + p.stderr


def test_copies_with_unchanged_content_linked(env_sqlite, tmp_path):
    """A file whose mode was changed and put back (its ctime moved, so it is
    copied), and after a restore every file (new inodes, same bytes)."""
    env, store = env_sqlite, str(tmp_path / "store")
    cli_snapshot(env, store, "s1")
    att = next(f for f in regular_files(stored(store, "s1", ".")) if f.startswith("files/attachments/"))
    p = os.path.join(env, att)
    mode = os.stat(p).st_mode & 0o7777
    os.chmod(p, 0o600)
    os.chmod(p, mode)
    cli_snapshot(env, store, "s2")
    assert ino(store, "s2", att) == ino(store, "s1", att)

    tracsnap("restore", os.path.join(store, "s1", "tree"), env)
    kept = [n for n in os.listdir(store) if n.startswith("pre-restore-")]
    assert len(kept) == 1
    cli_snapshot(env, store, "s3")
    files = regular_files(stored(store, "s3", "."))
    assert DB in files and att in files
    for f in files:
        assert ino(store, "s3", f) == ino(store, kept[0], f), f
    p = verify(env, store)
    assert p.returncode == 0, p.stdout + p.stderr


# ---- on XFS with reflinks: unchanged blocks are shared ------------------------


def mkfs_xfs():
    return shutil.which("mkfs.xfs") or next((p for p in ("/usr/sbin/mkfs.xfs", "/sbin/mkfs.xfs")
                                             if os.path.exists(p)), None)


@pytest.fixture
def xfs(tmp_path):
    """An XFS filesystem with reflinks on a loop device: its mount point."""
    mkfs = mkfs_xfs()
    if not mkfs or os.geteuid() != 0:
        pytest.skip("needs root and mkfs.xfs (xfsprogs)")
    img, mnt = str(tmp_path / "xfs.img"), str(tmp_path / "xfs")
    run(["truncate", "-s", "1G", img])
    run([mkfs, "-q", "-f", "-m", "reflink=1", img])
    os.makedirs(mnt)
    run(["mount", "-o", "loop", img, mnt])
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        with contextlib.suppress(OSError):
            os.unlink(img)


def grow_db(env, wal=False):
    """Make the database 100+ MB (1700 rows of 64 KiB of random bytes);
    its size."""
    c = sqlite3.connect(os.path.join(env, DB))
    try:
        c.execute("CREATE TABLE tracsnap_big(id INTEGER PRIMARY KEY, b BLOB)")
        c.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1700) "
                  "INSERT INTO tracsnap_big(b) SELECT randomblob(65536) FROM n")
        c.commit()
        if wal:
            assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        c.close()
    size = os.path.getsize(os.path.join(env, DB))
    assert size > 100 << 20
    return size


def rewrite_rows(env):
    """A few pages rewritten: three rows of 64 KiB out of 1700."""
    for i in (17, 800, 1650):
        write_db(env, "UPDATE tracsnap_big SET b = randomblob(65536) WHERE id = %d" % i)


def test_xfs_database_blocks_shared_across_filesystems(env_sqlite, xfs):
    """The environment on another filesystem than the store: the copy is a
    full one, and sealing shares what did not change."""
    env, store = env_sqlite, os.path.join(xfs, "store")
    size = grow_db(env)
    cli_snapshot(env, store, "s1")
    before = fs_used(xfs)
    rewrite_rows(env)
    cli_snapshot(env, store, "s2")
    growth = fs_used(xfs) - before
    assert growth < size // 10, "store grew %d bytes for a database of %d" % (growth, size)
    assert sha256_file(stored(store, "s2", DB)) == sha256_file(os.path.join(env, DB))
    p = verify(env, store)
    assert p.returncode == 0, p.stdout + p.stderr


def test_xfs_wal_database_blocks_shared_by_mkdir(env_sqlite, xfs, mount_factory):
    """WAL mode, snapshots by mkdir: the backup API writes each copy anew,
    and sealing shares what did not change."""
    env = env_sqlite
    size = grow_db(env, wal=True)
    m = mount_factory(env, store=os.path.join(xfs, "store"))
    os.mkdir(m.path("s1"))
    wait_sealed(m.store, "s1", daemon=m)
    wait_stage(m.store, "s1")
    before = fs_used(xfs)
    rewrite_rows(env)
    os.mkdir(m.path("s2"))
    wait_sealed(m.store, "s2", daemon=m)
    growth = fs_used(xfs) - before
    assert growth < size // 10, "store grew %d bytes for a database of %d" % (growth, size)
    c = sqlite3.connect("file:%s?mode=ro" % m.path("s2", DB), uri=True)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT count(*) FROM tracsnap_big").fetchone()[0] == 1700
    finally:
        c.close()
    p = verify(m.env, m.store)
    assert p.returncode == 0, p.stdout + p.stderr
