"""The view at the root of the mount (doc/contract.md section 2): listing, `latest`,
mkdir/rmdir/rename of snapshots, first-access auto names, permission of
managing snapshots, and what the view shows of a snapshot's entries
(read-only, metadata, symlinks, xattrs, inode numbers)."""
import errno
import os
import sqlite3
import stat
import threading
import time

import pytest

from tshelpers import (as_nobody, clock_offset_to_hour_start, run, run_refused_mount, snapshot_names,
                       start_public_mount, store_entries, store_snapshots, tracsnap, tree_entries)


def _errno_of(fn, *args, **kw):
    """Call fn and return the errno of the OSError it raises (fail if none)."""
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno
    raise AssertionError("%s%r succeeded, expected an error" % (fn.__name__, args))


def _errno_of_or_ok(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return "success"


@pytest.fixture
def clocked(env_sqlite, mount_factory):
    """The fixture environment mounted by a daemon whose clock stands 10 s
    past the start of the current hour (Mount.clock_offset): the auto names
    of this hour and day stay the same for the whole test.  Expected names
    come from m.strftime, the same shifted clock."""
    return mount_factory(env_sqlite, clock_offset=clock_offset_to_hour_start())


# ---------------------------------------------------------------- the root

def test_root_empty_mount(mnt):
    st = os.stat(mnt.mnt)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_uid == os.getuid()
    assert os.listdir(mnt.mnt) == []
    assert not os.path.lexists(mnt.path("latest"))


def test_mkdir_makes_snapshot_and_latest(mnt):
    os.mkdir(mnt.path("zeta"))
    assert sorted(os.listdir(mnt.mnt)) == ["latest", "zeta"]
    assert os.path.islink(mnt.path("latest"))
    assert os.readlink(mnt.path("latest")) == "zeta"
    assert os.path.isdir(mnt.path("zeta"))
    assert os.path.isfile(mnt.path("zeta", "VERSION"))
    assert os.path.isdir(os.path.join(mnt.store, "zeta", "tree"))

    # `latest` follows the snapshot instant, not the name order
    os.mkdir(mnt.path("alpha"))
    assert sorted(os.listdir(mnt.mnt)) == ["alpha", "latest", "zeta"]
    assert os.readlink(mnt.path("latest")) == "alpha"
    assert os.lstat(mnt.path("latest")).st_size == len("alpha")
    # through the symlink one reaches the newest snapshot
    assert os.path.isfile(mnt.path("latest", "conf", "trac.ini"))
    assert sorted(store_snapshots(mnt.store)) == ["alpha", "zeta"]


def test_mkdir_accepts_unusual_but_valid_names(mnt):
    names = ["caf\u00e9 snap", "with space", "2026-01-01T00:00", "a.b", "-dash"]
    for n in names:
        os.mkdir(mnt.path(n))
    raw = b"\xff\xfe-latin1"
    os.mkdir(os.path.join(os.fsencode(mnt.mnt), raw))
    assert sorted(os.listdir(os.fsencode(mnt.mnt))) == \
        sorted([os.fsencode(n) for n in names] + [raw, b"latest"])
    assert sorted(n for n in os.listdir(os.fsencode(mnt.store)) if not n.startswith(b".")) == sorted([os.fsencode(n) for n in names] + [raw])
    assert os.path.isfile(os.path.join(os.fsencode(mnt.mnt), raw, b"VERSION"))


def test_mkdir_existing_name_is_eexist(mnt):
    os.mkdir(mnt.path("snap"))
    before = os.stat(mnt.path("snap", "README")).st_ino
    assert _errno_of(os.mkdir, mnt.path("snap")) == errno.EEXIST
    assert snapshot_names(mnt.mnt) == ["snap"]
    assert store_snapshots(mnt.store) == ["snap"]
    assert os.stat(mnt.path("snap", "README")).st_ino == before


def test_mkdir_invalid_names(mnt):
    cases = {
        ".hidden": (errno.EINVAL,),
        "latest": (errno.EINVAL,),          # no snapshot yet: reaches the daemon
        "a\x01b": (errno.EINVAL,),
        "a\nb": (errno.EINVAL,),
        "tab\there": (errno.EINVAL,),
        "del\x7f": (errno.EINVAL,),
        "x" * 256: (errno.EINVAL, errno.ENAMETOOLONG),
    }
    for name, allowed in cases.items():
        err = _errno_of(os.mkdir, mnt.path(name))
        assert err in allowed, "mkdir %r: %s" % (name, errno.errorcode.get(err, err))
    assert os.listdir(mnt.mnt) == []
    assert store_snapshots(mnt.store) == []
    assert not [n for n in store_entries(mnt.store) if n.startswith(".tmp-")]


def test_mkdir_255_byte_name_allowed(mnt):
    name = "y" * 255
    os.mkdir(mnt.path(name))
    assert snapshot_names(mnt.mnt) == [name]
    assert store_snapshots(mnt.store) == [name]
    assert os.path.isfile(mnt.path(name, "VERSION"))


def test_concurrent_mkdir(mnt):
    """Same name from several callers: one snapshot, the others EEXIST;
    different names at once: all succeed."""
    def race(names):
        barrier = threading.Barrier(len(names))
        res = [None] * len(names)

        def worker(i):
            barrier.wait()
            res[i] = _errno_of_or_ok(os.mkdir, mnt.path(names[i]))
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(len(names))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        return res

    res = race(["same"] * 4)
    assert sorted(res, key=str) == sorted(["success"] + [errno.EEXIST] * 3, key=str), res
    assert store_snapshots(mnt.store) == ["same"]
    res = race(["p1", "p2", "p3", "p4"])
    assert res == ["success"] * 4, res
    assert snapshot_names(mnt.mnt) == ["p1", "p2", "p3", "p4", "same"]
    assert sorted(store_snapshots(mnt.store)) == ["p1", "p2", "p3", "p4", "same"]


def test_snapshot_taken_by_command_appears_in_view(mnt):
    os.mkdir(mnt.path("first"))
    assert _errno_of(os.stat, mnt.path("cli1")) == errno.ENOENT
    tracsnap("snapshot", "--store", mnt.store, mnt.env, "cli1")
    assert "cli1" in os.listdir(mnt.mnt)
    assert os.path.isdir(mnt.path("cli1"))
    assert os.path.isfile(mnt.path("cli1", "VERSION"))
    assert os.readlink(mnt.path("latest")) == "cli1"


def test_mkdir_latest_refused_when_snapshots_exist(mnt):
    os.mkdir(mnt.path("a"))
    assert _errno_of(os.mkdir, mnt.path("latest")) in (errno.EEXIST, errno.EINVAL)
    assert os.readlink(mnt.path("latest")) == "a"
    assert store_snapshots(mnt.store) == ["a"]


def test_mkdir_ebusy_while_trac_holds_write_lock(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite, opts=["lock_timeout=1"])
    m.expect_log(r"^tracsnap: snapshot busy \(mkdir\) failed: could not take the write lock on .* within 1 s")
    db = sqlite3.connect(os.path.join(env_sqlite, "db", "trac.db"), isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        t0 = time.time()
        res = []
        t = threading.Thread(target=lambda: res.append(_errno_of_or_ok(os.mkdir, m.path("busy"))))
        t.start()
        t.join(20)
        elapsed = time.time() - t0
        assert not t.is_alive(), "mkdir still blocked after 20 s with lock_timeout=1"
        err = res[0]
        assert err == errno.EBUSY, "mkdir: %s" % errno.errorcode.get(err, err)
        assert elapsed < 10, "mkdir took %.1f s with lock_timeout=1" % elapsed
        assert os.listdir(m.mnt) == []
        assert store_snapshots(m.store) == []
        assert not [n for n in store_entries(m.store) if n.startswith(".tmp-")], \
            store_entries(m.store)
        lines = [l for l in m.log_text().splitlines() if "lock" in l.lower()]
        assert lines, "no log line mentions the lock:\n" + m.log_text()
    finally:
        db.execute("ROLLBACK")
    os.mkdir(m.path("busy"))
    assert snapshot_names(m.mnt) == ["busy"]
    db.close()


def test_non_owner_cannot_manage_snapshots(public_dir, mount_factory, env_sqlite, tmp_path):
    m = start_public_mount(mount_factory, public_dir, tmp_path, env_sqlite)
    os.mkdir(m.path("keep"))
    # nobody can see the view (allow_other) ...
    p = as_nobody(["ls", m.mnt])
    assert p.returncode == 0, p.stderr
    assert "keep" in p.stdout.split()
    # ... but not manage it
    p = as_nobody(["mkdir", m.path("x")])
    assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
    p = as_nobody(["rmdir", m.path("keep")])
    assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
    p = as_nobody(["mv", "-T", m.path("keep"), m.path("moved")])
    assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
    assert snapshot_names(m.mnt) == ["keep"]
    assert store_snapshots(m.store) == ["keep"]


# ---------------------------------------------------------------- first access

def test_auto_name_today_on_first_access(clocked):
    mnt = clocked
    today = mnt.strftime("%Y-%m-%d")
    st = os.stat(mnt.path(today))
    assert stat.S_ISDIR(st.st_mode)
    assert snapshot_names(mnt.mnt) == [today]
    assert os.readlink(mnt.path("latest")) == today
    assert store_snapshots(mnt.store) == [today]
    assert os.path.isfile(mnt.path(today, "VERSION"))
    # the second access reuses it
    os.stat(mnt.path(today))
    assert store_snapshots(mnt.store) == [today]


def test_auto_name_hour_on_first_access(clocked):
    mnt = clocked
    hour = mnt.strftime("%Y-%m-%dT%H")
    assert os.path.isdir(mnt.path(hour))
    assert snapshot_names(mnt.mnt) == [hour]
    assert store_snapshots(mnt.store) == [hour]


def test_other_missing_names_are_enoent(clocked):
    mnt = clocked
    for name in ("2001-01-01", "2001-01-01T00", "nosuch", mnt.strftime("%Y-%m-%d", -86400 * 2)):
        assert _errno_of(os.stat, mnt.path(name)) == errno.ENOENT, name
    assert os.listdir(mnt.mnt) == []
    assert store_snapshots(mnt.store) == []


def test_concurrent_first_access_makes_one_snapshot(clocked):
    mnt = clocked
    today = mnt.strftime("%Y-%m-%d")
    n = 8
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = stat.S_ISDIR(os.stat(mnt.path(today)).st_mode)
        except OSError as e:
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True] * n, results
    assert snapshot_names(mnt.mnt) == [today]
    assert store_snapshots(mnt.store) == [today]


def test_auto_option_selects_formats(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite, opts=["auto=%Y"], clock_offset=clock_offset_to_hour_start())
    assert _errno_of(os.stat, m.path(m.strftime("%Y-%m-%d"))) == errno.ENOENT
    assert _errno_of(os.stat, m.path(m.strftime("%Y-%m-%dT%H"))) == errno.ENOENT
    year = m.strftime("%Y")
    assert os.path.isdir(m.path(year))
    assert snapshot_names(m.mnt) == [year]
    assert store_snapshots(m.store) == [year]


# ---------------------------------------------------------------- rmdir / rename

def test_rmdir_deletes_snapshot(mnt):
    os.mkdir(mnt.path("a"))
    os.mkdir(mnt.path("b"))
    os.rmdir(mnt.path("b"))
    assert snapshot_names(mnt.mnt) == ["a"]
    assert os.readlink(mnt.path("latest")) == "a"
    assert store_snapshots(mnt.store) == ["a"]
    assert not os.path.lexists(mnt.path("b"))
    os.rmdir(mnt.path("a"))
    assert os.listdir(mnt.mnt) == []
    assert store_snapshots(mnt.store) == []
    assert _errno_of(os.rmdir, mnt.path("a")) == errno.ENOENT


def test_rename_snapshot(mnt):
    os.mkdir(mnt.path("a"))
    data = open(mnt.path("a", "README"), "rb").read()
    os.rename(mnt.path("a"), mnt.path("renamed"))
    assert snapshot_names(mnt.mnt) == ["renamed"]
    assert os.readlink(mnt.path("latest")) == "renamed"
    assert store_snapshots(mnt.store) == ["renamed"]
    assert open(mnt.path("renamed", "README"), "rb").read() == data
    assert _errno_of(os.stat, mnt.path("a")) == errno.ENOENT


def test_rename_onto_existing_is_eexist(mnt):
    os.mkdir(mnt.path("a"))
    os.mkdir(mnt.path("b"))
    a_ino = os.stat(mnt.path("a", "README")).st_ino
    b_ino = os.stat(mnt.path("b", "README")).st_ino
    assert _errno_of(os.rename, mnt.path("a"), mnt.path("b")) == errno.EEXIST
    assert snapshot_names(mnt.mnt) == ["a", "b"]
    assert store_snapshots(mnt.store) == ["a", "b"]
    assert os.stat(mnt.path("a", "README")).st_ino == a_ino
    assert os.stat(mnt.path("b", "README")).st_ino == b_ino
    assert os.path.isfile(mnt.path("a", "VERSION")) and os.path.isfile(mnt.path("b", "VERSION"))


def test_rename_to_invalid_name_refused(mnt):
    os.mkdir(mnt.path("a"))
    for bad in (".hidden", "a\x01b"):
        _errno_of(os.rename, mnt.path("a"), mnt.path(bad))
    # `latest` is never replaced by a snapshot
    _errno_of(os.rename, mnt.path("a"), mnt.path("latest"))
    assert snapshot_names(mnt.mnt) == ["a"]
    assert os.readlink(mnt.path("latest")) == "a"
    assert store_snapshots(mnt.store) == ["a"]


def test_latest_cannot_be_removed_or_renamed(mnt):
    os.mkdir(mnt.path("a"))
    _errno_of(os.rmdir, mnt.path("latest"))
    _errno_of(os.rename, mnt.path("latest"), mnt.path("other"))
    assert sorted(os.listdir(mnt.mnt)) == ["a", "latest"]
    assert os.readlink(mnt.path("latest")) == "a"
    assert store_snapshots(mnt.store) == ["a"]


# ---------------------------------------------------------------- inside a snapshot

def test_snapshot_is_read_only(mnt):
    os.mkdir(mnt.path("s"))
    s = mnt.path("s")
    f = os.path.join(s, "README")
    d = os.path.join(s, "conf")
    content = open(f, "rb").read()
    attempts = [
        ("open w", lambda: open(f, "wb")),
        ("open a", lambda: open(f, "ab")),
        ("open r+", lambda: open(f, "r+b")),
        ("create", lambda: open(os.path.join(s, "new"), "xb")),
        ("create in subdir", lambda: os.open(os.path.join(d, "new"), os.O_CREAT | os.O_WRONLY, 0o644)),
        ("truncate", lambda: os.truncate(f, 0)),
        ("unlink", lambda: os.unlink(f)),
        ("chmod", lambda: os.chmod(f, 0o600)),
        ("chown", lambda: os.chown(f, 65534, 65534)),
        ("utime", lambda: os.utime(f, (0, 0))),
        ("setxattr", lambda: os.setxattr(f, "user.x", b"1")),
        ("mkdir", lambda: os.mkdir(os.path.join(s, "newdir"))),
        ("rmdir", lambda: os.rmdir(os.path.join(s, "htdocs"))),
        ("rename", lambda: os.rename(f, os.path.join(s, "README2"))),
        ("symlink", lambda: os.symlink("README", os.path.join(s, "lnk"))),
        ("link", lambda: os.link(f, os.path.join(s, "hard"))),
        ("mkfifo", lambda: os.mkfifo(os.path.join(s, "fifo"))),
    ]
    wrong = []
    for what, fn in attempts:
        try:
            r = fn()
            if hasattr(r, "close"):
                r.close()
            wrong.append("%s: succeeded" % what)
        except OSError as e:
            if e.errno != errno.EROFS:
                wrong.append("%s: %s" % (what, errno.errorcode.get(e.errno, e.errno)))
    assert not wrong, wrong
    assert open(f, "rb").read() == content
    assert not os.path.lexists(os.path.join(s, "new"))
    assert not os.path.lexists(os.path.join(s, "newdir"))
    assert os.path.isdir(os.path.join(s, "htdocs"))


def test_snapshot_root_dir_is_read_only(mnt):
    """The snapshot directory itself shows ENV's root: its metadata is as
    frozen as every entry below it."""
    os.mkdir(mnt.path("s"))
    s = mnt.path("s")
    before = os.stat(s)
    got = {
        "chmod": _errno_of(os.chmod, s, 0o700),
        "chown": _errno_of(os.chown, s, 65534, 65534),
        "utime": _errno_of(os.utime, s, (0, 0)),
        "setxattr": _errno_of(os.setxattr, s, "user.x", b"1"),
    }
    assert got == {k: errno.EROFS for k in got}, \
        {k: errno.errorcode.get(v, v) for k, v in got.items()}
    after = os.stat(s)
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == \
        (before.st_mode, before.st_uid, before.st_mtime_ns)


def _prepare_metadata(env):
    """Give the environment varied owners, modes and nanosecond mtimes."""
    r = lambda *p: os.path.join(env, *p)
    os.chown(r("README"), 65534, 65534)
    os.chmod(r("README"), 0o640)
    os.chown(r("plugins"), 1234, 4321)
    os.chmod(r("plugins"), 0o2750)
    with open(r("plugins", "tool.sh"), "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(r("plugins", "tool.sh"), 0o4755)
    os.chmod(r("htdocs"), 0o1777)
    with open(r("htdocs", "empty.css"), "w"):
        pass
    os.chmod(r("htdocs", "empty.css"), 0o400)
    os.symlink("../README", r("htdocs", "readme-link"))
    os.utime(r("htdocs", "readme-link"), ns=(1_500_000_000_000_000_001, 1_500_000_000_111_111_111),
             follow_symlinks=False)
    stamps = {
        ("README",): 1_600_000_000_123_456_789,
        ("plugins", "tool.sh"): 1_400_000_000_000_000_007,
        ("htdocs", "empty.css"): 1_700_000_000_999_999_999,
        ("plugins",): 1_650_000_000_500_000_000,
        ("htdocs",): 1_650_000_001_000_000_001,
        (): 1_650_000_002_000_000_002,
    }
    for parts, ns in stamps.items():
        os.utime(r(*parts), ns=(ns, ns))


def test_metadata_matches_environment(env_sqlite, mount_factory):
    _prepare_metadata(env_sqlite)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    envt = tree_entries(env_sqlite)
    snapt = tree_entries(m.path("s"))
    assert set(snapt) == set(envt)
    bad = []
    for rel, e in sorted(envt.items()):
        s = snapt[rel]
        checks = {
            "type": (stat.S_IFMT(e.st_mode), stat.S_IFMT(s.st_mode)),
            "mode": (stat.S_IMODE(e.st_mode), stat.S_IMODE(s.st_mode)),
            "uid": (e.st_uid, s.st_uid),
            "gid": (e.st_gid, s.st_gid),
        }
        if rel not in ("db/trac.db", "db"):
            checks["mtime_ns"] = (e.st_mtime_ns, s.st_mtime_ns)
        if not stat.S_ISDIR(e.st_mode) and rel != "db/trac.db":
            checks["size"] = (e.st_size, s.st_size)
        for k, (want, got) in checks.items():
            if want != got:
                bad.append("%s %s: env %r, snapshot %r" % (rel, k, want, got))
    assert not bad, "\n".join(bad)


def test_symlinks_kept_as_links(env_sqlite, mount_factory):
    links = {
        "plugins/rel": "../README",
        "plugins/abs": "/etc/passwd",
        "plugins/absdir": "/usr/share",
        "plugins/dangling": "nowhere/at/all",
        "plugins/up": "..",
        "plugins/loopa": "loopb",
        "plugins/loopb": "loopa",
        "self": ".",
    }
    for rel, target in links.items():
        os.symlink(target, os.path.join(env_sqlite, rel))
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    for rel, target in links.items():
        p = m.path("s", rel)
        assert os.path.islink(p), rel
        assert os.readlink(p) == target, rel
    # nothing behind the links was copied into the snapshot
    names = set(os.listdir(m.path("s", "plugins")))
    assert names == {"rel", "abs", "absdir", "dangling", "up", "loopa", "loopb"}
    # the store tree has real symlinks too
    for rel, target in links.items():
        assert os.readlink(os.path.join(m.store, "s", "tree", rel)) == target
    # following works like on a plain directory
    assert open(m.path("s", "plugins", "rel"), "rb").read() == \
        open(os.path.join(env_sqlite, "README"), "rb").read()
    assert _errno_of(os.stat, m.path("s", "plugins", "loopa")) == errno.ELOOP


def test_extended_attributes(env_sqlite, mount_factory):
    os.setxattr(os.path.join(env_sqlite, "README"), "user.k", b"v")
    os.setxattr(os.path.join(env_sqlite, "README"), "user.empty", b"")
    os.setxattr(os.path.join(env_sqlite, "plugins"), "user.dir", b"\x00bin\xffary")
    os.setxattr(env_sqlite, "user.root", b"r" * 3000)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    f, d = m.path("s", "README"), m.path("s", "plugins")
    assert os.getxattr(f, "user.k") == b"v"
    assert os.getxattr(f, "user.empty") == b""
    assert {"user.k", "user.empty"} <= set(os.listxattr(f))
    assert os.getxattr(d, "user.dir") == b"\x00bin\xffary"
    assert "user.dir" in os.listxattr(d)
    assert os.getxattr(m.path("s"), "user.root") == b"r" * 3000
    assert not [x for x in os.listxattr(m.path("s", "VERSION")) if x.startswith("user.")]
    assert _errno_of(os.getxattr, m.path("s", "VERSION"), "user.k") == errno.ENODATA


def test_permissions_enforced_for_others(public_dir, mount_factory, env_sqlite, tmp_path):
    assert stat.S_IMODE(os.stat(os.path.join(env_sqlite, "conf", "trac.ini")).st_mode) == 0o600
    m = start_public_mount(mount_factory, public_dir, tmp_path, env_sqlite)
    os.mkdir(m.path("s"))
    p = as_nobody(["cat", m.path("s", "conf", "trac.ini")])
    assert p.returncode != 0 and "Permission denied" in p.stderr, (p.returncode, p.stderr)
    assert "[trac]" not in p.stdout
    p = as_nobody(["cat", m.path("s", "conf", "trac.ini.sample")])
    assert p.returncode == 0, p.stderr
    assert p.stdout == open(os.path.join(env_sqlite, "conf", "trac.ini.sample")).read()
    # root still reads it
    assert "[trac]" in open(m.path("s", "conf", "trac.ini")).read()


def test_nlink_ctime_and_inode_numbers(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("a"))
    os.mkdir(m.path("b"))    # shares unchanged files with a in the store
    files = {rel: st for rel, st in tree_entries(m.path("a")).items() if stat.S_ISREG(st.st_mode)}
    assert len(files) >= 10
    for rel, st in files.items():
        assert st.st_nlink == 1, (rel, st.st_nlink)
        assert st.st_ctime_ns == st.st_mtime_ns, (rel, st.st_ctime_ns, st.st_mtime_ns)
    inos_a = {rel: st.st_ino for rel, st in tree_entries(m.path("a")).items()}
    assert len(set(inos_a.values())) == len(inos_a), "two entries of one snapshot share an inode"
    assert {rel: os.lstat(m.path("a", rel)).st_ino for rel in inos_a} == inos_a
    # a new snapshot sharing these files changes nothing the view reports for a
    os.mkdir(m.path("c"))
    after = tree_entries(m.path("a"))
    for rel, st in files.items():
        st2 = after[rel]
        assert (st2.st_ino, st2.st_nlink, st2.st_ctime_ns, st2.st_mtime_ns) == \
            (st.st_ino, st.st_nlink, st.st_ctime_ns, st.st_mtime_ns), rel
    # and the numbers survive an unmount/remount on the same store
    m.stop()
    m2 = mount_factory(env_sqlite, store=m.store)
    assert snapshot_names(m2.mnt) == ["a", "b", "c"]
    assert os.readlink(m2.path("latest")) == "c"
    assert {rel: st.st_ino for rel, st in tree_entries(m2.path("a")).items()} == inos_a


def test_manage_group_grants_snapshot_management(public_dir, mount_factory, env_sqlite, tmp_path):
    """-o manage_group=GROUP: its members may mkdir, rmdir and mv; others may not."""
    m = start_public_mount(mount_factory, public_dir, tmp_path, env_sqlite,
                           opts=["manage_group=nogroup"])
    st = os.stat(m.mnt)
    assert stat.S_IMODE(st.st_mode) == 0o775
    member = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    outsider = ["setpriv", "--reuid=nobody", "--regid=nobody", "--clear-groups"] \
        if run(["getent", "group", "nobody"], check=False).returncode == 0 else \
        ["setpriv", "--reuid=nobody", "--regid=65533", "--clear-groups"]
    env = dict(os.environ, LC_ALL="C")
    p = run(member + ["mkdir", m.path("by-member")], check=False, env=env)
    assert p.returncode == 0, p.stderr
    p = run(member + ["mv", "-T", m.path("by-member"), m.path("renamed")], check=False, env=env)
    assert p.returncode == 0, p.stderr
    p = run(outsider + ["mkdir", m.path("by-outsider")], check=False, env=env)
    assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
    p = run(outsider + ["rmdir", m.path("renamed")], check=False, env=env)
    assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
    p = run(member + ["rmdir", m.path("renamed")], check=False, env=env)
    assert p.returncode == 0, p.stderr
    assert snapshot_names(m.mnt) == []


def test_manage_group_unknown_is_refused(env_sqlite, tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    rc, out, _ = run_refused_mount(env_sqlite, mnt, tmp_path / "s", opts=["manage_group=no-such-group-xyz"],
                                   timeout=20)
    assert rc != 0
    assert out.strip() == "tracsnap: manage_group=no-such-group-xyz: no such group"
    assert not os.path.ismount(str(mnt)) and not (tmp_path / "s").exists()


def _find_listing(root):
    p = run(["find", ".", "-printf", "%y %s %m %U %G %T@ %i %p\n"], cwd=root)
    return sorted(p.stdout.splitlines())


def test_repeated_listings_and_dropped_caches_match_the_store(mnt):
    """The kernel keeps snapshot listings and the attributes that came
    with them (fs/fs_dir.c).  Whatever it has kept or dropped meanwhile,
    every listing must report what the store holds: warm, after its dentry
    cache is dropped, and warm again."""
    os.mkdir(mnt.path("s"))
    tree = os.path.join(mnt.store, "s", "tree")
    want = _find_listing(tree)
    assert len(want) > 20
    for step in ("first", "warm", "drop", "after drop", "warm again"):
        if step == "drop":
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2\n")   # dentries and inodes: the kernel forgets what it was told
            continue
        assert _find_listing(mnt.path("s")) == want, step
