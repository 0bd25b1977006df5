"""Issue 6, faults: the daemon meets a full store, kill -9, SIGTERM and
unmount during a snapshot, Trac's write lock held too long, and an environment
or store that changes or disappears under it.

Each test ends with the same checks (`assert_sound`): older snapshots intact
(`tracsnap verify` exits 0), no partial snapshot listed, no store lock held,
the live environment unchanged where the test did not change it.
"""
import fcntl
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from tshelpers import extract_fixture, tree_state, run, snapshot_names, store_entries, tracsnap

BIG_FILES = 24
BIG_SIZE = 12 << 20          # 24 x 12 MiB = 288 MiB: a snapshot takes a few seconds


def leftovers(store):
    return [n for n in store_entries(store) if n.startswith(".tmp-") or n.startswith(".del-")]


def assert_lock_free(store, within=60):
    """No writer holds the store lock for good.  A mounted daemon takes it
    now and then by itself (sealing the last snapshot, building the stage
    after it), so the lock must come free within `within` seconds, not at
    once; a stuck holder still fails."""
    lock = os.path.join(store, ".lock")
    if not os.path.exists(lock):
        return
    deadline = time.monotonic() + within
    fd = os.open(lock, os.O_RDONLY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises when a writer holds it
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "store lock still held after %d s" % within
                time.sleep(0.05)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def assert_verify(env, store):
    p = tracsnap("verify", "--store", store, env, check=False, timeout=600)
    assert p.returncode == 0, "verify failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr)


def assert_sound(env, store, mnt=None, env_before=None, expect=None):
    """The end state every fault test must leave."""
    assert_lock_free(store)
    snaps = sorted(n for n in store_entries(store) if not n.startswith("."))
    for n in snaps:
        assert os.path.isfile(os.path.join(store, n, "manifest")), "partial snapshot %s" % n
    if expect is not None:
        assert set(expect) <= set(snaps), (expect, snaps)
    if mnt is not None:
        assert snapshot_names(mnt.mnt) == snaps
    if snaps:
        assert_verify(env, store)
    if env_before is not None:
        assert tree_state(env) == env_before, "the live environment changed"
    return snaps


def fs_tree_state_light(path):
    """The big environment's state without reading its 288 MiB: an entry
    replaced shows in its inode."""
    return tree_state(path, content=None, inode=True, dir_size=True)


@pytest.fixture(scope="module")
def big_env_master(tmp_path_factory):
    """The SQLite fixture plus ~288 MiB of random attachments, made once."""
    d = str(tmp_path_factory.mktemp("bigenv"))
    env = extract_fixture("trac-env-sqlite", d)
    big = os.path.join(env, "files", "big")
    os.makedirs(big)
    rnd = random.Random(6)
    block = rnd.randbytes(1 << 20)
    for i in range(BIG_FILES):
        with open(os.path.join(big, "f%02d.bin" % i), "wb") as f:
            for j in range(BIG_SIZE >> 20):
                # distinct content per block so nothing compresses or dedups
                f.write(bytes([i, j]) + block[2:])
    return env


@pytest.fixture
def big_env(big_env_master, tmp_path):
    env = str(tmp_path / "bigenv")
    shutil.copytree(big_env_master, env, symlinks=True)
    return env


def sealed_seconds(m, store, name, timeout=120):
    """mkdir, then wait until the daemon has sealed it: the whole life of a
    snapshot (copy, then hashing and sync in the background)."""
    t0 = time.monotonic()
    os.mkdir(m.path(name))
    marker = os.path.join(store, name, "unsealed")
    while os.path.exists(marker):
        assert time.monotonic() - t0 < timeout, "%s not sealed after %d s" % (name, timeout)
        time.sleep(0.005)
    return time.monotonic() - t0


def mkdir_bg(path):
    """mkdir in a child process (a daemon killed under it must not hang us)."""
    return subprocess.Popen(["mkdir", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# -- store full -------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    d = str(tmp_path / "small")
    os.makedirs(d)
    run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", d])
    try:
        yield d
    finally:
        for _ in range(50):
            if subprocess.run(["umount", d], stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", d])


def test_store_full(env_sqlite, mount_factory, small_tmpfs):
    store = os.path.join(small_tmpfs, "store")
    m = mount_factory(env_sqlite, store=store)
    # The stage, refreshed after the filler appears, does not fit either.
    m.expect_log(r"snapshot second \(mkdir\) failed: store .*: no space left",
                 r"^tracsnap: warning: (refreshing the stage|staging the next snapshot) failed: "
                 r".*filler\.bin: write to the store failed: No space left on device")
    os.mkdir(m.path("first"))                  # the fixture fits
    # a file that does not fit in what is left
    filler = os.path.join(env_sqlite, "files", "filler.bin")
    with open(filler, "wb") as f:
        f.write(os.urandom(8 << 20))
    before = tree_state(env_sqlite)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path("second"))
    assert ei.value.errno == 28, ei.value      # ENOSPC
    assert tree_state(env_sqlite) == before
    log = m.log_text()
    assert "snapshot second (mkdir) failed: store %s: no space left" % os.path.realpath(store) in log, log
    assert leftovers(store) == []              # the failing writer cleaned up
    assert snapshot_names(m.mnt) == ["first"]
    # space freed: the next snapshot works
    os.unlink(filler)
    os.mkdir(m.path("third"))
    assert snapshot_names(m.mnt) == ["first", "third"]
    assert_sound(env_sqlite, store, m, expect=["first", "third"])


# -- kill -9 ----------------------------------------------------------------------------


def test_kill9_during_snapshots(big_env, mount_factory, tmp_path):
    seed = int(os.environ.get("TRACSNAP_FAULT_SEED", time.time_ns() % 1000000))
    print("seed", seed)
    rnd = random.Random(seed)
    store = str(tmp_path / "store")
    before = fs_tree_state_light(big_env)
    m = mount_factory(big_env, store=store)
    # The kills land anywhere in a snapshot's life: while it is copied, and
    # after it appeared while the daemon seals it.
    dur = sealed_seconds(m, store, "base")     # the first one copies everything
    os.rmdir(m.path("base"))                   # so that each later one copies all again
    print("full snapshot, sealed, takes %.2f s" % dur)
    assert dur > 0.3, "environment too small to kill mid-snapshot (%.2f s)" % dur
    complete, mid_copy = [], 0
    for i in range(20):
        name = "k%02d" % i
        p = mkdir_bg(m.path(name))
        if i == 0:
            wait_tmp_appears(store)        # one kill surely lands while copying
        else:
            time.sleep(rnd.uniform(0, dur * 0.8))
        m.kill(signal.SIGKILL)
        # A dead daemon renames nothing: a copy left in the store proves that
        # this kill landed while a snapshot was copied.
        if any(n.startswith(".tmp-") for n in store_entries(store)):
            mid_copy += 1
        p.wait(timeout=30)
        subprocess.run(["fusermount3", "-u", "-z", m.mnt], stderr=subprocess.DEVNULL)
        if p.returncode == 0:
            complete.append(name)
        m.start()
        listed = snapshot_names(m.mnt)
        # only complete snapshots: each has its manifest; a finished mkdir is there
        for n in listed:
            assert os.path.isfile(os.path.join(store, n, "manifest")), (i, n)
        if p.returncode == 0:
            assert name in listed, (name, listed)
        # the killed writer's work was removed when the daemon started again
        assert leftovers(store) == [], (i, store_entries(store))
        # and what it had not sealed, the new daemon seals (same boot)
        for n in listed:
            deadline = time.monotonic() + 60
            while os.path.exists(os.path.join(store, n, "unsealed")):
                assert time.monotonic() < deadline, (i, n, "never sealed", m.log_text())
                time.sleep(0.01)
            assert [f for f in os.listdir(os.path.join(store, n))
                    if f.startswith("manifest.")] == [], (i, n)
        if listed:
            assert_verify(big_env, store)
        for n in listed:
            os.rmdir(m.path(n))
        assert leftovers(store) == [], (i, store_entries(store))
    print("complete before the kill: %d of 20, killed while copying: %d" % (len(complete), mid_copy))
    assert mid_copy >= 1, "no kill landed while a snapshot was copied"
    os.mkdir(m.path("after"))
    assert leftovers(store) == []
    assert_sound(big_env, store, m, expect=["after"])
    assert fs_tree_state_light(big_env) == before


# -- SIGTERM and unmount during a snapshot --------------------------------------------


def wait_gone(m, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if m.proc.poll() is not None and not os.path.ismount(m.mnt):
            return time.monotonic() - (deadline - timeout)
        time.sleep(0.05)
    raise AssertionError("daemon still running %.0f s after the stop request:\n%s"
                         % (timeout, m.log_text()))


def wait_tmp_appears(store, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(n.startswith(".tmp-") for n in store_entries(store)):
            return
        time.sleep(0.01)
    raise AssertionError("no snapshot started: %s" % store_entries(store))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_snapshot(big_env, mount_factory, tmp_path, sig):
    store = str(tmp_path / "store")
    before = fs_tree_state_light(big_env)
    m = mount_factory(big_env, store=store)
    os.mkdir(m.path("old"))
    # the old one stays; touch every big file so that the next one copies all again
    for n in os.listdir(os.path.join(big_env, "files", "big")):
        os.utime(os.path.join(big_env, "files", "big", n))
    before = fs_tree_state_light(big_env)
    m.expect_log(r"snapshot cut \(mkdir\) failed: snapshot cut: cancelled \(tracsnap is stopping\)")
    p = mkdir_bg(m.path("cut"))
    wait_tmp_appears(store)          # copying has begun: the signal lands mid-copy
    m.proc.send_signal(sig)
    took = wait_gone(m, 10)
    p.wait(timeout=10)
    log = m.log_text()
    assert p.returncode != 0, log
    assert "cancelled (tracsnap is stopping)" in log, log
    assert m.proc.returncode == 0, log   # a stop asked for is a clean end
    assert leftovers(store) == [], (store_entries(store), log)   # removed by the daemon itself
    print("stopped %.2f s after the signal" % took)
    assert_sound(big_env, store, None, expect=["old"])
    assert "cut" not in store_entries(store)
    assert fs_tree_state_light(big_env) == before


def test_unmount_during_snapshot(big_env, mount_factory, tmp_path):
    """fusermount3 -u while a mkdir is in progress: the kernel refuses (EBUSY,
    the mkdir holds the mount) and the snapshot completes; a lazy unmount is
    accepted, and then the daemon cancels the snapshot and exits cleanly."""
    store = str(tmp_path / "store")
    m = mount_factory(big_env, store=store)
    # Whether the lazy unmount catches b's copy depends on the copy's pace.
    m.expect_log(r"^tracsnap: snapshot b \(mkdir\) failed: snapshot b: cancelled \(tracsnap is stopping\)")
    p = mkdir_bg(m.path("a"))
    wait_tmp_appears(store)
    r = subprocess.run(["fusermount3", "-u", m.mnt], stderr=subprocess.PIPE, text=True)
    print("fusermount3 -u during mkdir: rc %d %s" % (r.returncode, r.stderr.strip()))
    if r.returncode != 0:
        assert "busy" in r.stderr.lower(), r.stderr
        p.wait(timeout=60)
        assert p.returncode == 0, p.stderr.read()
        assert snapshot_names(m.mnt) == ["a"]
    else:
        p.wait(timeout=30)
    for n in os.listdir(os.path.join(big_env, "files", "big")):
        os.utime(os.path.join(big_env, "files", "big", n))
    p = mkdir_bg(m.path("b"))
    wait_tmp_appears(store)
    time.sleep(0.2)
    subprocess.run(["fusermount3", "-u", "-z", m.mnt], check=True)
    wait_gone(m, 10)
    p.wait(timeout=10)
    assert m.proc.returncode == 0, m.log_text()
    assert leftovers(store) == [], store_entries(store)
    snaps = assert_sound(big_env, store)
    assert "b" not in snaps or os.path.isfile(os.path.join(store, "b", "manifest"))


# -- Trac's write lock held too long ---------------------------------------------------


def test_trac_lock_held(env_sqlite, mount_factory):
    before_snap = None
    m = mount_factory(env_sqlite, opts=["lock_timeout=2"])
    m.expect_log(r"snapshot blocked \(mkdir\) failed: could not take the write lock on .* within 2 s")
    os.mkdir(m.path("ok"))
    before_snap = tree_state(env_sqlite)
    holder = sqlite3.connect(os.path.join(env_sqlite, "db", "trac.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.monotonic()
        with pytest.raises(OSError) as ei:
            os.mkdir(m.path("blocked"))
        took = time.monotonic() - t0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ei.value.errno == 16, ei.value        # EBUSY
    assert 1.5 < took < 30, took
    log = m.log_text()
    assert "snapshot blocked (mkdir) failed: could not take the write lock on" in log, log
    assert "within 2 s" in log, log
    assert leftovers(m.store) == []
    os.mkdir(m.path("after"))                   # the lock is free again: it works
    assert_sound(env_sqlite, m.store, m, before_snap, expect=["ok", "after"])


# -- the environment changes under the engine -----------------------------------------


def test_env_changes_during_precopy(big_env, mount_factory, tmp_path):
    store = str(tmp_path / "store")
    m = mount_factory(big_env, store=store)
    d = os.path.join(big_env, "files", "churn")
    os.makedirs(d)
    stop = threading.Event()
    errors = []

    def churn():
        rnd = random.Random(1)
        i = 0
        try:
            while not stop.is_set():
                i += 1
                p = os.path.join(d, "n%05d" % i)
                with open(p, "wb") as f:
                    f.write(os.urandom(rnd.randrange(1, 100000)))
                if i % 3 == 0:
                    os.rename(p, p + ".renamed")
                if i % 5 == 0 and os.path.exists(os.path.join(d, "n%05d" % (i - 4))):
                    os.unlink(os.path.join(d, "n%05d" % (i - 4)))
                # bounded: at most ~300 churn files live (~15 MB), whatever the pace
                for old in ("n%05d" % (i - 300), "n%05d.renamed" % (i - 300)):
                    if os.path.exists(os.path.join(d, old)):
                        os.unlink(os.path.join(d, old))
                time.sleep(0.001)
                if i % 50 == 0:
                    sub = os.path.join(d, "sub%d" % i)
                    os.makedirs(sub)
                    open(os.path.join(sub, "x"), "w").write("x")
                    if i % 100 == 0:
                        shutil.rmtree(sub)
                    else:
                        os.rename(sub, sub + "-moved")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    th = threading.Thread(target=churn)
    th.start()
    try:
        for k in range(3):
            for n in os.listdir(os.path.join(big_env, "files", "big")):
                os.utime(os.path.join(big_env, "files", "big", n))
            os.mkdir(m.path("c%d" % k))
    finally:
        stop.set()
        th.join()
    assert not errors, errors
    assert_sound(big_env, store, m, expect=["c0", "c1", "c2"])
    for k in range(3):
        # what the snapshot holds of the churn directory is self-consistent
        snap_churn = os.path.join(store, "c%d" % k, "tree", "files", "churn")
        assert os.path.isdir(snap_churn)


def test_env_replaced_by_symlink_is_refused(env_sqlite, mount_factory, tmp_path):
    """The environment's owner can rename ENV away and leave a symlink to a
    tree of root's at its path (doc/security.md): neither a mkdir nor the
    daemon's stage refresh follows it; the mkdir fails with EIO and a log line,
    and nothing of the link's target reaches the store."""
    m = mount_factory(env_sqlite)
    m.expect_log(r"%s: now a symlink, not the environment; refused" % re.escape(env_sqlite))
    os.mkdir(m.path("one"))
    target = tmp_path / "roots"
    shutil.copytree(env_sqlite, str(target), symlinks=True)
    (target / "files" / "root-only").write_text("secret\n")
    os.rename(env_sqlite, env_sqlite + ".away")
    os.symlink(str(target), env_sqlite)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path("via-link"))
    assert ei.value.errno == 5, ei.value        # EIO
    assert "%s: now a symlink, not the environment; refused" % env_sqlite in m.log_text()
    assert not os.path.exists(os.path.join(m.store, "via-link"))
    for dirpath, dirnames, filenames in os.walk(m.store):
        assert "root-only" not in filenames, dirpath
    os.unlink(env_sqlite)
    os.rename(env_sqlite + ".away", env_sqlite)
    os.mkdir(m.path("back"))


def test_env_removed_and_replaced(env_sqlite, mount_factory, tmp_path):
    """Decision: the daemon snapshots whatever Trac environment is at ENV's
    path when the snapshot starts (a restore replaces ENV by rename); no
    environment there is EIO with a log line naming it."""
    m = mount_factory(env_sqlite)
    m.expect_log(r"%s: the environment is gone" % re.escape(env_sqlite),
                 r"%s: not a Trac environment \(VERSION missing\)" % re.escape(env_sqlite))
    os.mkdir(m.path("one"))
    moved = env_sqlite + ".away"
    os.rename(env_sqlite, moved)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path("gone"))
    assert ei.value.errno == 5, ei.value        # EIO
    assert "%s: the environment is gone" % env_sqlite in m.log_text()
    # replaced by something that is not a Trac environment
    os.makedirs(env_sqlite)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path("notenv"))
    assert ei.value.errno == 5
    assert "%s: not a Trac environment (VERSION missing)" % env_sqlite in m.log_text()
    os.rmdir(env_sqlite)
    # replaced by a (different) Trac environment: it is the one snapshotted
    shutil.copytree(moved, env_sqlite, symlinks=True)
    with open(os.path.join(env_sqlite, "README"), "a") as f:
        f.write("replaced\n")
    os.mkdir(m.path("two"))
    with open(m.path("two", "README")) as f:
        assert f.read().endswith("replaced\n")
    assert leftovers(m.store) == []
    assert_sound(env_sqlite, m.store, m, expect=["one", "two"])


def test_store_removed_while_mounted(env_sqlite, mount_factory, tmp_path):
    store = str(tmp_path / "store")
    before = tree_state(env_sqlite)
    m = mount_factory(env_sqlite, store=store)
    # The store gone, the daemon says so once, then refuses every change
    # (the stage's refresh included) with the same words.
    # The removal may come while "one" is being sealed: files then vanish
    # from a snapshot that is still there, and the sealer says so (it
    # cannot tell that from damage, nor need it: the store is going).
    m.expect_log(r"store %s: removed or moved away while mounted" % re.escape(os.path.realpath(store)),
                 r"failed: store %s: removed or moved away while in use" % re.escape(os.path.realpath(store)),
                 r"sealing failed: snapshot one: .*: missing from the store before it was sealed")
    os.mkdir(m.path("one"))
    # The sealer and the stager may still be writing into it: what they
    # add while the tree is being removed is removed in the next round.
    deadline = time.monotonic() + 10
    while os.path.exists(store):
        assert time.monotonic() < deadline, "the store could not be removed"
        shutil.rmtree(store, ignore_errors=True)
    time.sleep(0.5)
    assert "store %s: removed or moved away while mounted" % os.path.realpath(store) in m.log_text()
    for op in (lambda: os.mkdir(m.path("two")), lambda: os.rmdir(m.path("one")),
               lambda: os.listdir(m.path("one"))):
        with pytest.raises(OSError) as ei:
            op()
        assert ei.value.errno in (5, 2), ei.value   # EIO, or ENOENT for what is gone
    assert snapshot_names(m.mnt) == []
    assert "removed or moved away while in use" in m.log_text()
    assert m.proc.poll() is None, "daemon died"
    assert not os.path.exists(store), "a store was re-created"
    assert tree_state(env_sqlite) == before
