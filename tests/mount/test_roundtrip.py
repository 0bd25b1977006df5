"""Spec section 2: tar, cp -a, rsync -a, find, du and diff -r behave on a
snapshot as on a plain directory, and what they produce is a working copy of
the environment."""
import os
import shutil
import sqlite3
import stat
import sys
import threading

import pytest

from tshelpers import TOP, db_path_in, run, sqlite_ro, tree_entries, tree_state

sys.path.insert(0, os.path.join(TOP, "tests"))
from tracwriter import attachment_relpath  # noqa: E402

JOURNALS = ("-journal", "-wal", "-shm", "-stmtjrnl")
BIG = 16 * 1024 * 1024


def enlarge(env):
    """Make the environment big enough that tar is still reading while another
    snapshot is taken, and give it what a real one has: symlinks (one pointing
    outside), an old mtime, an unusual mode."""
    bulk = os.path.join(env, "htdocs", "bulk")
    os.makedirs(bulk)
    for i in range(200):
        with open(os.path.join(bulk, "f%03d.css" % i), "wb") as f:
            f.write(os.urandom(8192))
    with open(os.path.join(env, "htdocs", "big.bin"), "wb") as f:
        for _ in range(BIG // (1 << 20)):
            f.write(os.urandom(1 << 20))
    os.symlink("../README", os.path.join(env, "htdocs", "readme-link"))
    os.symlink("/etc/hostname", os.path.join(env, "plugins", "outside-link"))
    old = os.path.join(env, "templates", "site_head.html.sample")
    os.utime(old, ns=(981173106_123456789, 981173106_123456789))
    os.chmod(os.path.join(env, "htdocs", "bulk", "f007.css"), 0o640)
    os.chmod(bulk, 0o750)
    # Directories changed a moment ago would differ from a copy made within the
    # same second only in nanoseconds, which rsync does not correct for
    # directories: give them the past mtimes a live environment has.
    for d in (bulk, os.path.join(env, "htdocs"), os.path.join(env, "plugins")):
        os.utime(d, ns=(1700000000_123456789, 1700000000_123456789))


def tree(path, content=True):
    """rel -> metadata, owners (and sha1 of regular files) of every entry,
    root included."""
    return tree_state(path, content="sha1" if content else None, owners=True, top=True)


def diff_trees(a, b, ignore=()):
    problems = []
    for rel in sorted(set(a) | set(b)):
        if rel in ignore:
            continue
        if rel not in a or rel not in b:
            problems.append("%s only in %s" % (rel, "first" if rel in a else "second"))
        elif a[rel] != b[rel]:
            diffs = dict((k, (a[rel].get(k), b[rel].get(k)))
                         for k in set(a[rel]) | set(b[rel]) if a[rel].get(k) != b[rel].get(k))
            problems.append("%s differs: %s" % (rel, diffs))
    return problems


def view_meta(path):
    """What tar looks at to decide a file "changed as we read it", and more."""
    return {rel: (st.st_ino, st.st_nlink, st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_mode)
            for rel, st in tree_entries(path).items()}


def check_snapshot_equals_env(env, snap):
    e = tree(env)
    s = tree(snap)
    problems = diff_trees({k: v for k, v in e.items() if not k.endswith(JOURNALS)}, s,
                          ignore={".", "db", "db/trac.db"})
    assert not problems, "snapshot differs from the environment:\n" + "\n".join(problems[:30])
    assert "db/trac.db" in s


def check_working_env(d):
    """A copy of a snapshot is a working Trac environment."""
    with open(os.path.join(d, "VERSION")) as f:
        assert f.readline().strip() == "Trac Environment Version 1"
    assert stat.S_IMODE(os.lstat(os.path.join(d, "conf", "trac.ini")).st_mode) == 0o600
    db = db_path_in(d)
    p = run(["sqlite3", "-readonly", db, "PRAGMA integrity_check; SELECT count(*) FROM ticket;"])
    assert p.stdout.split() == ["ok", "30"], (p.stdout, p.stderr)
    c = sqlite_ro(db)
    try:
        rows = c.execute("SELECT type, id, filename, size FROM attachment").fetchall()
    finally:
        c.close()
    assert len(rows) == 6
    for typ, rid, fn, size in rows:
        p = os.path.join(d, attachment_relpath(typ, rid, fn))
        assert os.path.isfile(p), "attachment %s:%s:%s has no file" % (typ, rid, fn)
        assert os.path.getsize(p) == size
    # writable like the original: Trac could run on it
    c = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        c.execute("BEGIN")
        c.execute("INSERT INTO ticket (summary) VALUES ('written in the copy')")
        c.execute("COMMIT")
        assert c.execute("SELECT count(*) FROM ticket").fetchone()[0] == 31
    finally:
        c.close()


def test_tar_roundtrip_while_another_snapshot_is_taken(env_sqlite, mount_factory, tmp_path):
    enlarge(env_sqlite)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("A"))
    A = m.path("A")
    check_snapshot_equals_env(env_sqlite, A)
    before = view_meta(A)

    # Other snapshots share A's unchanged files (hard links in the store) while
    # tar reads A, again and again.
    errors = []

    def others():
        try:
            for i in range(4):
                with open(os.path.join(env_sqlite, "log", "trac.log"), "a") as f:
                    f.write("line %d\n" % i)
                with open(os.path.join(env_sqlite, "htdocs", "new%d.txt" % i), "w") as f:
                    f.write("new %d\n" % i)
                os.mkdir(m.path("B%d" % i))
        except Exception as e:       # reported by the main thread
            errors.append(repr(e))

    arch = str(tmp_path / "a.tar")
    t = threading.Thread(target=others)
    t.start()
    runs = 0
    try:
        while t.is_alive() or runs < 3:
            p = run(["tar", "--format=posix", "-cf", arch, "-C", A, "."], check=False)
            runs += 1
            assert "changed as we read" not in p.stderr, p.stderr
            assert p.returncode == 0 and p.stderr == "", \
                "tar exited %d: %s" % (p.returncode, p.stderr)
    finally:
        t.join()
    print("tar ran %d times while 4 other snapshots were taken" % runs)
    assert not errors, errors
    after = view_meta(A)
    changed = dict((k, (before.get(k), after.get(k))) for k in set(before) | set(after)
                   if before.get(k) != after.get(k))
    assert not changed, ("what A reports (ino, nlink, ctime, mtime, size, mode) changed when "
                         "later snapshots were taken: %s" % dict(list(changed.items())[:10]))

    dest = tmp_path / "untar"
    dest.mkdir()
    run(["tar", "-xpf", arch, "-C", str(dest)])
    p = run(["diff", "-r", "--no-dereference", A, str(dest)], check=False)
    assert p.returncode == 0, "diff -r: %s %s" % (p.stdout[:2000], p.stderr)
    problems = diff_trees(tree(A), tree(str(dest)))
    assert not problems, "tar copy differs from the snapshot:\n" + "\n".join(problems[:30])
    # the later snapshots saw the changes, A did not
    assert not os.path.exists(os.path.join(A, "htdocs", "new0.txt"))
    assert os.path.isfile(m.path("B3", "htdocs", "new3.txt"))


def test_cp_a_gives_working_environment(env_sqlite, mount_factory, tmp_path):
    enlarge(env_sqlite)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("snap"))
    S = m.path("snap")
    dest = tmp_path / "restored"
    dest.mkdir()
    p = run(["cp", "-a", S + "/.", str(dest) + "/"], check=False)
    assert p.returncode == 0 and p.stderr == "", "cp -a: %s" % p.stderr
    p = run(["diff", "-r", "--no-dereference", S, str(dest)], check=False)
    assert p.returncode == 0, "diff -r: %s %s" % (p.stdout[:2000], p.stderr)
    problems = diff_trees(tree(S), tree(str(dest)))
    assert not problems, "cp -a copy differs from the snapshot:\n" + "\n".join(problems[:30])
    assert os.readlink(str(dest / "plugins" / "outside-link")) == "/etc/hostname"
    assert not [f for f in os.listdir(str(dest / "db")) if f != "trac.db"]
    check_working_env(str(dest))


def test_rsync_a(env_sqlite, mount_factory, tmp_path):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed")
    enlarge(env_sqlite)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("snap"))
    S = m.path("snap")
    dest = tmp_path / "rsynced"
    p = run(["rsync", "-a", S + "/", str(dest) + "/"], check=False)
    assert p.returncode == 0 and p.stderr == "", "rsync -a: %s" % p.stderr
    problems = diff_trees(tree(S), tree(str(dest)))
    assert not problems, "rsync copy differs from the snapshot:\n" + "\n".join(problems[:30])
    # a second run finds nothing to do: what the view reports is stable
    p = run(["rsync", "-a", "-i", S + "/", str(dest) + "/"])
    assert p.stdout.strip() == "", "second rsync -a transferred:\n%s" % p.stdout[:2000]
    check_working_env(str(dest))


def test_find_and_du(env_sqlite, mount_factory, tmp_path):
    enlarge(env_sqlite)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("snap"))
    os.mkdir(m.path("snap2"))
    S = m.path("snap")
    n = len(tree(S, content=False))
    p = run(["find", S], check=False)
    assert p.returncode == 0 and p.stderr == "", "find: %s" % p.stderr
    assert len(p.stdout.splitlines()) == n
    p = run(["find", m.mnt, "-type", "f", "-name", "trac.db"], check=False)
    assert p.returncode == 0 and p.stderr == "", "find on the mount: %s" % p.stderr
    assert sorted(p.stdout.split()) == sorted([db_path_in(S), db_path_in(m.path("snap2"))]), \
        "find must list each snapshot's database once and not follow latest: %s" % p.stdout
    p = run(["du", "-sk", S], check=False)
    assert p.returncode == 0 and p.stderr == "", "du: %s" % p.stderr
    kib = int(p.stdout.split()[0])
    assert kib >= BIG // 1024, "du says %d KiB for a tree holding a %d KiB file (st_blocks?)" \
        % (kib, BIG // 1024)
    p = run(["du", "-sb", S], check=False)
    assert p.returncode == 0 and p.stderr == "", "du -sb: %s" % p.stderr
    assert int(p.stdout.split()[0]) >= BIG
    p = run(["du", "-s", m.mnt], check=False)
    assert p.returncode == 0 and p.stderr == "", "du on the mount: %s" % p.stderr
