"""Under Trac's lock a snapshot looks only at what changed (issue 17;
doc/contract.md section 4; snapshot/take/snap_changes.c,
fs/daemon/daemon_journal.c).

The daemon's inotify watch on every directory of the environment tells
the snapshot what changed since its last full pass.  These tests make the
changes at the worst moment for that scheme: after `mkdir MNT/NAME` has
begun and while it waits for Trac's write lock (held here with BEGIN
IMMEDIATE, as a Trac writer holds it), so that no stat pass before the lock
can have seen them.  Every kind of change must still be in the snapshot,
and the daemon's log says how few entries it looked at under the lock.
"""
import os
import re
import sqlite3
import threading
import time

from tshelpers import assert_same_files, wait_sealed, wait_stage

CHECKED = re.compile(r"snapshot (\S+): .*, (\d+) entries checked under the lock")


def inotify_watches(pid):
    """How many inotify watches process pid holds (/proc/PID/fdinfo)."""
    n = 0
    fddir = "/proc/%d/fd" % pid
    for fd in os.listdir(fddir):
        try:
            if os.readlink(os.path.join(fddir, fd)) != "anon_inode:inotify":
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                n += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return n


def env_dirs(env):
    return sum(1 for _ in os.walk(env))


def wait_watched(m, env, timeout=30):
    """Until the stager watches every directory of env."""
    want = env_dirs(env)
    deadline = time.monotonic() + timeout
    while inotify_watches(m.proc.pid) < want:
        assert time.monotonic() < deadline, "the daemon never watched all %d directories" % want
        time.sleep(0.05)


def staged_and_watched(mount_factory, env):
    """A mount of env with snapshot a sealed and staged, and every directory
    watched: the next mkdir can use the watch.  Watched before a too: the
    daemon watches ENV from its start, and an a taken before that is done is
    not known to be the environment, so the stage built from it is clean only
    after the refresh that follows (seen once under AddressSanitizer)."""
    m = mount_factory(env)
    wait_watched(m, env)
    os.mkdir(m.path("a"))
    wait_sealed(m.store, "a")
    wait_stage(m.store, "a")
    wait_watched(m, env)
    return m


def first_attachment_dir(env):
    base = os.path.join(env, "files", "attachments")
    for dirpath, dirs, files in sorted(os.walk(base)):
        if files:
            return dirpath, sorted(files)
    raise AssertionError("no attachment in %s" % env)


def take_while_locked(m, env, name, change):
    """mkdir MNT/NAME while a Trac writer holds the lock; change() runs once
    the snapshot has begun and waits for it; then the lock is let go."""
    holder = sqlite3.connect(os.path.join(env, "db", "trac.db"), timeout=10, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    done = {}

    def mk():
        try:
            os.mkdir(m.path(name))
            done["ok"] = True
        except OSError as e:
            done["err"] = e

    t = threading.Thread(target=mk)
    t.start()
    try:
        # The snapshot's tree in the making shows it has begun; its full
        # pass over a staged fixture takes milliseconds, then it waits.
        deadline = time.monotonic() + 30
        while not [e for e in os.listdir(m.store) if e.startswith(".tmp-")]:
            assert time.monotonic() < deadline and t.is_alive(), "the snapshot did not begin"
            time.sleep(0.01)
        time.sleep(1.0)
        assert t.is_alive(), "the snapshot did not wait for Trac's lock"
        change()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        t.join(60)
    assert done.get("ok"), done


def test_changes_made_while_waiting_for_the_lock(env_sqlite, mount_factory):
    """Rewritten with the mtime put back, new in a new directory, removed, a
    directory renamed, chmod, and a write to a file still open: all in."""
    env = env_sqlite
    m = staged_and_watched(mount_factory, env)
    attdir, files = first_attachment_dir(env)
    rewritten = os.path.join(attdir, files[0])
    wiki = os.path.join(env, "files", "attachments", "wiki")
    log = open(os.path.join(env, "log", "trac.log"), "ab")

    def change():
        st = os.stat(rewritten)
        with open(rewritten, "r+b") as f:
            b = f.read(1)
            f.seek(0)
            f.write(bytes([b[0] ^ 0xff]))
        os.utime(rewritten, ns=(st.st_atime_ns, st.st_mtime_ns))
        newdir = os.path.join(env, "files", "attachments", "ticket", "fff", "new-resource")
        os.makedirs(newdir)
        with open(os.path.join(newdir, "made-under-the-wait.txt"), "w") as f:
            f.write("made while the snapshot waited\n")
        os.unlink(os.path.join(env, "README"))
        if os.path.isdir(wiki):
            os.rename(wiki, wiki + "-renamed")
        os.chmod(os.path.join(env, "VERSION"), 0o600)
        log.write(b"a line written while the snapshot waited\n")
        log.flush()

    try:
        take_while_locked(m, env, "b", change)
    finally:
        log.close()
    wait_sealed(m.store, "b")
    snap = os.path.join(m.store, "b", "tree")
    assert_same_files(env, snap)
    assert os.stat(os.path.join(snap, "VERSION")).st_mode & 0o777 == 0o600
    assert not os.path.exists(os.path.join(snap, "README"))
    # the subset: far fewer entries than the environment holds
    lines = [mo for mo in CHECKED.finditer(m.log_text()) if mo.group(1) == "b"]
    assert lines, m.log_text()
    total = sum(len(d) + len(f) for _, d, f in os.walk(env))
    assert int(lines[-1].group(2)) < total / 2, (lines[-1].group(0), total)


def test_nothing_changed_nothing_looked_at(env_sqlite, mount_factory):
    """A second snapshot with the environment untouched looks at nothing
    under the lock: the stage built from the first is the environment, taken
    as it is (snapshot/take/snap_fast.c); and it is the environment all the
    same."""
    env = env_sqlite
    m = staged_and_watched(mount_factory, env)
    os.mkdir(m.path("b"))
    wait_sealed(m.store, "b")
    assert_same_files(env, os.path.join(m.store, "b", "tree"))
    assert "snapshot b: the stage as it was" in m.log_text(), m.log_text()


def test_first_snapshot_uses_the_watch(env_sqlite, mount_factory):
    """With no snapshot yet to stage, the daemon watches the environment's
    directories from its start: the first snapshot looks under Trac's lock
    only at what changed during its copy, not at every entry."""
    env = env_sqlite
    m = mount_factory(env)
    wait_watched(m, env)
    os.mkdir(m.path("a"))
    wait_sealed(m.store, "a")
    assert_same_files(env, os.path.join(m.store, "a", "tree"))
    lines = [mo for mo in CHECKED.finditer(m.log_text()) if mo.group(1) == "a"]
    assert lines and int(lines[-1].group(2)) <= 5, m.log_text()
