"""Removing a snapshot never breaks a reader; keep= prunes only after a seal
(doc/contract.md sections 2 and 5; issue 16, cases 3 and 4).

A snapshot in use through the mount (a process's working directory, an open
file or directory, a mapping below MOUNTPOINT/NAME) is not removed: rmdir
gets EBUSY, `tracsnap prune` and keep= keep it and say who uses it, and it
goes once its readers are done.  Before, rmdir went ahead under a running
tar, which then failed with "Stale file handle" and left a truncated
archive, and a shell cd'ed into the snapshot got ESTALE.

keep= counts sealed snapshots only and prunes after the seal: before, the
daemon pruned right after a snapshot appeared, and a crash before its seal
(the snapshot then discarded) left no snapshot at all.
"""
import errno
import hashlib
import os
import signal
import subprocess
import tarfile
import threading
import time

import pytest

from tshelpers import sha256_file, store_snapshots, tracsnap, wait_sealed

SEAL_TIMEOUT = 120
FOREIGN_BOOT_ID = "00000000-0000-0000-0000-000000000000"


def write_big(path, mib, salt):
    """mib MiB of data that compresses to nothing and differs per MiB and
    per file (fast: one random MiB, each copy stamped with its place)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(("%s:%08d" % (salt, i)).encode().ljust(64, b"#") + block[64:])


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def wait_log(m, text, timeout=SEAL_TIMEOUT):
    wait_for(lambda: text in m.log_text(), timeout, "%r in the daemon log:\n%s" % (text, m.log_text()))




class Throttled:
    """tar -C DIR -cf - . with its output read at about rate bytes/s into a
    file: a slow consumer, as a backup over a network is."""

    def __init__(self, directory, out, rate):
        self.out = out
        self.rate = rate
        self.done = 0
        self.proc = subprocess.Popen(["tar", "-C", directory, "-cf", "-", "."],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self._pump)
        self.thread.start()

    def _pump(self):
        chunk = 1 << 20
        t0 = time.monotonic()
        with open(self.out, "wb") as f:
            while True:
                data = self.proc.stdout.read(chunk)
                if not data:
                    break
                f.write(data)
                self.done += len(data)
                ahead = self.done / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    def stop(self):
        """End tar and the pump, if they still run."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.thread.join(60)
        self.proc.wait(timeout=10)

    def wait(self, timeout=300):
        self.thread.join(timeout)
        rc = self.proc.wait(timeout=timeout)
        return rc, self.proc.stderr.read().decode("utf-8", "replace")


def prune_last1(m):
    return tracsnap("prune", "--store", m.store, "--keep-last", "1", m.env, check=False)


def test_rmdir_and_prune_wait_for_tar(env_sqlite, mount_factory, tmp_path):
    """Case 3: tar of a 1 GiB snapshot at a throttled rate; midway rmdir gets
    EBUSY and `tracsnap prune --keep-last 1` keeps it as in use; the archive
    is complete and right; once tar is done, rmdir removes it."""
    big = os.path.join(env_sqlite, "files", "big")
    os.makedirs(big, exist_ok=True)
    for i in range(8):
        write_big(os.path.join(big, "f%d" % i), 128, "f%d" % i)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("snap"))
    wait_sealed(m.store, "snap", timeout=SEAL_TIMEOUT, daemon=m)
    os.mkdir(m.path("newer"))   # so that --keep-last 1 would remove snap
    wait_sealed(m.store, "newer", timeout=SEAL_TIMEOUT, daemon=m)
    tree = os.path.join(m.store, "snap", "tree")

    archive = str(tmp_path / "snap.tar")
    t = Throttled(m.path("snap"), archive, rate=80 << 20)   # about 13 s
    try:
        wait_for(lambda: t.done > 200 << 20 or t.proc.poll() is not None, 120, "tar to get going")
        assert t.proc.poll() is None, "tar finished before the test could remove the snapshot"

        with pytest.raises(OSError) as ei:
            os.rmdir(m.path("snap"))
        assert ei.value.errno == errno.EBUSY, ei.value
        assert os.path.isdir(tree)
        p = prune_last1(m)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        kept = [l for l in lines if l.startswith("kept snap: in use by pid %d (tar)" % t.proc.pid)]
        assert kept, p.stdout
        assert "keep newer" in lines, p.stdout
        assert os.path.isdir(tree)
        assert t.proc.poll() is None, "tar finished before the removals were tried"

        rc, err = t.wait()
        assert rc == 0, err
        assert "Stale" not in err and "Cannot" not in err, err
    finally:
        t.stop()   # after a failure: no tar left reading the mount

    # Every file of the snapshot is in the archive with its content.
    want = {}
    for root, dirs, files in os.walk(tree):
        for n in dirs + files:
            rel = os.path.relpath(os.path.join(root, n), tree)
            want["./" + rel] = os.path.join(root, n)
    listing = subprocess.run(["tar", "-tvf", archive], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    with tarfile.open(archive) as tf:
        members = {mb.name: mb for mb in tf.getmembers() if mb.name != "."}
        assert set(members) == set(want)
        for name, mb in members.items():
            if mb.isfile():
                h = hashlib.sha256()
                f = tf.extractfile(mb)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                assert h.hexdigest() == sha256_file(want[name]), name
    assert sum(1 for mb in members.values() if mb.name.startswith("./files/big/f")) == 8

    # The reader is done: rmdir goes through, and the store's copy with it.
    os.rmdir(m.path("snap"))
    assert "snap" not in store_snapshots(m.store)
    assert not [n for n in os.listdir(m.store) if n.startswith(".del-")]
    assert "rmdir snap refused: in use by pid %d (tar)" % t.proc.pid in m.log_text()


class Shell:
    """bash reading commands from a pipe, kept alive between them."""

    def __init__(self):
        self.proc = subprocess.Popen(["bash"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, LC_ALL="C"))

    def run(self, cmd):
        """Run cmd; return its output (stdout and stderr)."""
        end = "--end-%d--" % time.monotonic_ns()
        self.proc.stdin.write("%s\necho %s\n" % (cmd, end))
        self.proc.stdin.flush()
        out = []
        for line in self.proc.stdout:
            if line.rstrip("\n") == end:
                return "".join(out)
            out.append(line)
        raise AssertionError("shell ended: " + "".join(out))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def test_shell_in_snapshot_keeps_it(env_sqlite, mount_factory):
    """Case 3: a shell cd'ed into a snapshot: rmdir gets EBUSY and the shell
    goes on seeing the snapshot, never ESTALE; once it leaves, rmdir works."""
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("snap"))
    os.mkdir(m.path("snap2"))   # a sibling whose name extends it: not in use
    sh = Shell()
    try:
        assert sh.run("cd %s/snap/conf && pwd" % m.mnt).strip() == m.path("snap", "conf")
        with pytest.raises(OSError) as ei:
            os.rmdir(m.path("snap"))
        assert ei.value.errno == errno.EBUSY, ei.value
        out = sh.run("ls; ls ..; cat trac.ini >/dev/null && echo readable")
        assert "Stale" not in out, out
        assert "trac.ini" in out and "VERSION" in out and "readable" in out, out
        os.rmdir(m.path("snap2"))
        assert "in use by pid %d (bash)" % sh.proc.pid in m.log_text()
        sh.run("cd /")
        os.rmdir(m.path("snap"))
        assert not os.path.exists(os.path.join(m.store, "snap"))
    finally:
        sh.close()


def test_keep_crash_before_seal_leaves_a_snapshot(env_sqlite, mount_factory):
    """Case 4: keep=last:1; a sealed; b made, the daemon killed before b is
    sealed, then a reboot (b's marker holds another boot id): a is still
    there.  Before, the daemon pruned a right after b appeared."""
    m = mount_factory(env_sqlite, opts=["keep=last:1"])
    os.mkdir(m.path("a"))
    wait_sealed(m.store, "a", timeout=SEAL_TIMEOUT, daemon=m)
    write_big(os.path.join(env_sqlite, "files", "big"), 300, "b")
    os.mkdir(m.path("b"))
    a_then = os.path.isdir(os.path.join(m.store, "a"))
    m.kill(signal.SIGKILL)
    subprocess.run(["fusermount3", "-u", "-z", m.mnt], stderr=subprocess.DEVNULL)
    marker = os.path.join(m.store, "b", "unsealed")
    assert os.path.exists(marker), "b was sealed before the kill: the test needs a slower seal"
    assert a_then, "a was pruned while b was not sealed"
    with open(marker, "w") as f:
        f.write(FOREIGN_BOOT_ID + "\n")
    p = tracsnap("list", "--store", m.store, m.env)
    names = [l.split(None, 5)[5] for l in p.stdout.splitlines()[1:]]
    assert names == ["a"], p.stdout


def test_keep_prunes_after_seal(env_sqlite, mount_factory):
    """keep=last:1: while b is being sealed a stays; once b is sealed, a is
    pruned and the log says so."""
    m = mount_factory(env_sqlite, opts=["keep=last:1"])
    os.mkdir(m.path("a"))
    wait_sealed(m.store, "a", timeout=SEAL_TIMEOUT, daemon=m)
    write_big(os.path.join(env_sqlite, "files", "big"), 200, "b")
    os.mkdir(m.path("b"))
    a_then = os.path.isdir(os.path.join(m.store, "a"))
    b_unsealed = os.path.exists(os.path.join(m.store, "b", "unsealed"))
    if b_unsealed:
        assert a_then, "a was pruned while b was not sealed"
    wait_sealed(m.store, "b", timeout=SEAL_TIMEOUT, daemon=m)
    wait_log(m, "pruned a")
    assert store_snapshots(m.store) == ["b"]


def test_keep_skips_snapshot_in_use_and_retries(env_sqlite, mount_factory, monkeypatch):
    """keep= leaves a snapshot in use alone, says so, and prunes it once its
    reader is gone (the retry timer, shortened here)."""
    monkeypatch.setenv("TRACSNAP_TEST_PRUNE_RETRY", "1")
    m = mount_factory(env_sqlite, opts=["keep=last:1"])
    os.mkdir(m.path("a"))
    wait_sealed(m.store, "a", timeout=SEAL_TIMEOUT, daemon=m)
    sh = Shell()
    try:
        sh.run("cd %s/a" % m.mnt)
        os.mkdir(m.path("b"))
        wait_sealed(m.store, "b", timeout=SEAL_TIMEOUT, daemon=m)
        wait_log(m, "kept a: in use by pid %d (bash)" % sh.proc.pid)
        assert "a" in store_snapshots(m.store)
        out = sh.run("ls")
        assert "VERSION" in out and "Stale" not in out, out
        sh.run("cd /")
    finally:
        sh.close()
    wait_log(m, "pruned a", timeout=30)
    assert store_snapshots(m.store) == ["b"]
