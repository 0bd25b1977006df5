"""tracsnap verify over snapshots that share store inodes, and verify --repair.

A stored copy shared by two snapshots (one inode, two hard links) is damaged
the way an administrator or a bad disk would: one byte flipped in place with
dd conv=notrunc.  verify reports it in both snapshots, reads the shared
inode once (the summary's "read" is the unique data, its "in the
snapshots" the sum over snapshots) and exits 65; --repair rewrites the
damaged inode in place from the live file when that is unchanged, else from
another stored copy with the same hash, and names what it cannot repair.
"""
import os
import re
import subprocess
import time

import pytest

from tshelpers import cli_snapshot, tracsnap

EX_DATAERR = 65
REL = "htdocs/blob.bin"
BLOB_LEN = 3 * 1024 * 1024 + 123


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "store")


def human(n):
    """Bytes as tracsnap prints them (snapshot/base/progress.c)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    b, k = float(n), 0
    while b >= 1024 and k < 4:
        b /= 1024
        k += 1
    return ("%.1f %s" if k else "%.0f %s") % (b, units[k])


def put_blob(env, data):
    """ENV/REL with data, a new inode each time (written aside, renamed)."""
    path = os.path.join(env, REL)
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.replace(path + ".new", path)
    # Older than the window in which the engine copies a file again rather
    # than trust its stat (a file this young is not shared).
    time.sleep(0.1)


def stored(store, name, rel=REL):
    return os.path.join(store, name, "tree", rel)


def flip(path, at=1000):
    """One byte flipped in place, as `dd conv=notrunc` does it (the mtime
    moves as with any write)."""
    with open(path, "rb") as f:
        f.seek(at)
        b = f.read(1)
    subprocess.run(["dd", "of=" + path, "bs=1", "seek=%d" % at, "count=1", "conv=notrunc",
                    "status=none"], input=bytes([b[0] ^ 0xff]), check=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tree_bytes(store, names):
    """(unique bytes, bytes over all snapshots, files) of the regular files."""
    seen, uniq, total, files = set(), 0, 0, 0
    for n in names:
        for d, _, fs in os.walk(os.path.join(store, n, "tree")):
            for f in fs:
                st = os.lstat(os.path.join(d, f))
                if not os.path.isfile(os.path.join(d, f)) or os.path.islink(os.path.join(d, f)):
                    continue
                files += 1
                total += st.st_size
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    uniq += st.st_size
    return uniq, total, files


def verify(env, store, *args):
    return tracsnap("verify", "--store", store, env, *args, check=False)


def summary(p):
    """The one stdout line."""
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    return lines[0]


@pytest.fixture
def shared(env_sqlite, store):
    """Snapshots a and b sharing REL's stored copy; returns its content."""
    data = os.urandom(BLOB_LEN)
    put_blob(env_sqlite, data)
    cli_snapshot(env_sqlite, store, "a")
    cli_snapshot(env_sqlite, store, "b")
    assert os.stat(stored(store, "a")).st_ino == os.stat(stored(store, "b")).st_ino
    return data


def test_shared_damage_reported_in_each_snapshot_read_once(env_sqlite, store, shared):
    uniq, total, files = tree_bytes(store, ["a", "b"])
    p = verify(env_sqlite, store)
    assert (p.returncode, p.stderr) == (0, "")
    assert summary(p) == "verified 2 snapshots: %d files, %s read (%s in the snapshots), no problem" % (
        files, human(uniq), human(total))
    assert human(uniq) != human(total)

    flip(stored(store, "a"))
    p = verify(env_sqlite, store)
    assert p.returncode == EX_DATAERR, p.stderr
    for name in ("a", "b"):
        assert [l for l in p.stderr.splitlines()
                if l.startswith("tracsnap: %s/%s: content differs" % (name, REL))], p.stderr
    # Shared damage is read once too.
    assert summary(p) == ("verified 2 snapshots: %d files, %s read (%s in the snapshots), "
                          "4 problems in a, b" % (files, human(uniq), human(total)))
    assert len(p.stderr.splitlines()) == 4   # mtime and content, in each


def test_repair_from_the_environment(env_sqlite, store, shared):
    path = stored(store, "a")
    ino = os.stat(path).st_ino
    flip(path)
    p = verify(env_sqlite, store, "--repair")
    assert p.returncode == 0, p.stderr
    assert ("tracsnap: repaired a/%s from the environment (and 1 other snapshot sharing it)" % REL
            in p.stderr.splitlines()), p.stderr
    assert summary(p).endswith(", 4 problems in a, b: all repaired")
    # In place: the same inode, so b is healed too.
    for name in ("a", "b"):
        assert os.stat(stored(store, name)).st_ino == ino
        assert read(stored(store, name)) == read(os.path.join(env_sqlite, REL)) == shared
    assert os.stat(path).st_mode & 0o7777 == os.stat(os.path.join(env_sqlite, REL)).st_mode & 0o7777
    p = verify(env_sqlite, store)
    assert (p.returncode, p.stderr) == (0, "")
    assert summary(p).endswith(", no problem")
    # Nothing left behind in the store.
    # (.lock and .linklog are the store's own: store.h, linklog.h)
    assert sorted(n for n in os.listdir(store) if n not in (".lock", ".linklog")) == ["a", "b"]


def test_repair_refused_without_a_good_copy(env_sqlite, store, shared):
    put_blob(env_sqlite, b"changed since\n")
    path = stored(store, "a")
    flip(path)
    damaged = read(path)
    p = verify(env_sqlite, store, "--repair")
    assert p.returncode == EX_DATAERR, p.stderr
    assert ("tracsnap: a/%s: cannot repair: no good copy (live file changed since the snapshot) "
            "(and 1 other snapshot sharing it)" % REL in p.stderr.splitlines()), p.stderr
    assert summary(p).endswith(", 4 problems in a, b: 0 repaired, 4 left")
    assert read(path) == damaged
    assert verify(env_sqlite, store).returncode == EX_DATAERR


def test_repair_from_another_stored_copy(env_sqlite, store):
    data = os.urandom(BLOB_LEN)
    put_blob(env_sqlite, data)
    cli_snapshot(env_sqlite, store, "a")
    # The same bytes rewritten in ENV: a new inode, so b holds a copy of
    # its own with the same hash.
    put_blob(env_sqlite, data)
    cli_snapshot(env_sqlite, store, "b")
    assert os.stat(stored(store, "a")).st_ino != os.stat(stored(store, "b")).st_ino
    # Then the live file changes: it cannot serve.
    put_blob(env_sqlite, b"new content\n")
    cli_snapshot(env_sqlite, store, "c")
    path = stored(store, "a")
    ino = os.stat(path).st_ino
    flip(path, at=BLOB_LEN - 1)
    p = verify(env_sqlite, store, "--repair", "a")
    assert p.returncode == 0, p.stderr
    assert "tracsnap: repaired a/%s from b/%s" % (REL, REL) in p.stderr.splitlines(), p.stderr
    assert os.stat(path).st_ino == ino
    assert read(path) == data
    p = verify(env_sqlite, store)
    assert (p.returncode, p.stderr) == (0, "")
    assert re.fullmatch(r"verified 3 snapshots: .*, no problem", summary(p))


def test_repair_metadata_and_what_is_not_repaired(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "only")
    tree = os.path.join(store, "only", "tree")
    mode = os.lstat(os.path.join(tree, "VERSION")).st_mode & 0o7777
    os.chmod(os.path.join(tree, "VERSION"), 0o600)
    d = os.lstat(os.path.join(tree, "conf"))
    os.unlink(os.path.join(tree, "conf", "trac.ini.sample"))
    os.utime(os.path.join(tree, "conf"), ns=(d.st_atime_ns, d.st_mtime_ns))
    p = verify(env_sqlite, store, "--repair")
    assert p.returncode == EX_DATAERR, p.stderr
    lines = p.stderr.splitlines()
    assert "tracsnap: repaired only/VERSION: mode, owner and mtime as the manifest says" in lines, lines
    assert ("tracsnap: only/conf/trac.ini.sample: cannot repair: missing entries are not restored"
            in lines), lines
    assert summary(p).endswith(", 2 problems in only: 1 repaired, 1 left")
    assert os.lstat(os.path.join(tree, "VERSION")).st_mode & 0o7777 == mode


def test_repair_with_nothing_to_repair(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "only")
    p = verify(env_sqlite, store, "--repair")
    assert (p.returncode, p.stderr) == (0, "")
    assert re.fullmatch(r"verified 1 snapshot: \d+ files, .* read \(.* in the snapshots\), no problem",
                        summary(p))
