"""Shared fixtures for tracsnap's mount-level tests.

Every test runs the real daemon on a real mount point and checks the result
with ordinary tools.  Mounts and daemons are torn down even when a test fails:
`fusermount3 -u`, then a lazy unmount, then SIGKILL.
"""
import os
import shutil
import signal
import sqlite3
import subprocess
import tarfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(TOP, "tests", "fixtures")

# Sanitizer builds print these; any of them in a daemon log fails the test.
FATAL_LOG_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation fault")
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)


def tracsnap_bin():
    b = os.environ.get("TRACSNAP_BIN") or os.path.join(TOP, "build", "tracsnap")
    if not os.access(b, os.X_OK):
        pytest.exit("tracsnap binary not found at %s: run make first" % b, 2)
    return b


def run(args, check=True, **kw):
    """Run a command, capture text output, return CompletedProcess."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("timeout", 120)
    p = subprocess.run(args, text=True, errors="replace", **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:%s\nstderr:%s" % (args, p.returncode, p.stdout, p.stderr))
    return p


def tracsnap(*args, check=True, **kw):
    """Run a tracsnap subcommand (snapshot, list, ...)."""
    return run([tracsnap_bin()] + [str(a) for a in args], check=check, **kw)


def extract_fixture(name, dest):
    """Extract tests/fixtures/<name>.tar.gz into dest; return the env path."""
    with tarfile.open(os.path.join(FIXTURES, name + ".tar.gz")) as t:
        t.extractall(dest)
    return os.path.join(dest, name)


def fs_tree_state(path):
    """Map relpath -> (type, mode, size, mtime_ns, content-or-link) of a tree,
    to prove that the live environment was not changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, path)
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d", st.st_mode, st.st_mtime_ns)
            else:
                with open(p, "rb") as f:
                    data = f.read()
                out[rel] = ("f", st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


class Mount:
    """One tracsnap daemon in the foreground on one mount point."""

    def __init__(self, env, mnt, store, opts=(), args=(), logpath=None):
        self.env, self.mnt, self.store = str(env), str(mnt), str(store)
        self.opts = list(opts)
        self.args = list(args)
        self.logpath = logpath or (self.mnt.rstrip("/") + ".log")
        self.proc = None

    def start(self, wait=True):
        os.makedirs(self.mnt, exist_ok=True)
        o = ["store=" + self.store] + self.opts
        cmd = [tracsnap_bin(), "-f"] + self.args + ["-o", ",".join(o), self.env, self.mnt]
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if wait:
            self.wait_mounted()
        return self

    def wait_mounted(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.ismount(self.mnt):
                return
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited %d before mounting:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            time.sleep(0.05)
        raise AssertionError("mount did not appear within %ds:\n%s" % (timeout, self.log_text()))

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def stop(self):
        """Unmount and end the daemon; never raises."""
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
            deadline = time.time() + 10
            while os.path.ismount(self.mnt) and time.time() < deadline:
                time.sleep(0.05)
            if os.path.ismount(self.mnt):
                subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def check_log_clean(self):
        text = self.log_text()
        for m in FATAL_LOG_MARKERS:
            assert m not in text, "daemon log contains %r:\n%s" % (m, text)
        # A crash after the test's own checks (in a background thread, say)
        # writes nothing to the log without a sanitizer: its exit tells.
        rc = self.proc.returncode if self.proc is not None else None
        assert rc is None or -rc not in CRASH_SIGNALS, \
            "daemon died of signal %d:\n%s" % (-rc, text)


@pytest.fixture
def env_sqlite(tmp_path):
    """A fresh copy of the SQLite fixture environment made by real Trac."""
    return extract_fixture("trac-env-sqlite", str(tmp_path / "envs"))


@pytest.fixture
def mount_factory(tmp_path):
    """mount_factory(env, store=None, opts=(), args=(), mnt=None) -> started Mount.
    All mounts are stopped at teardown, also after failures."""
    mounts = []

    def make(env, store=None, opts=(), args=(), mnt=None, start=True):
        n = len(mounts)
        m = Mount(env, mnt or str(tmp_path / ("mnt%d" % n)), store or str(tmp_path / ("store%d" % n)),
                  opts=opts, args=args)
        mounts.append(m)
        if start:
            m.start()
        return m

    yield make
    for m in mounts:
        m.stop()
    for m in mounts:
        m.check_log_clean()


@pytest.fixture
def mnt(env_sqlite, mount_factory):
    """The SQLite fixture environment, mounted with default options."""
    return mount_factory(env_sqlite)


def db_path_in(snapdir):
    return os.path.join(snapdir, "db", "trac.db")


def sqlite_ro(path):
    """Open a database read-only and immutable, as on the read-only mount."""
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True)


# ---------------------------------------------------------------------------
# Helpers for test_view.py, test_content.py and test_errors.py.

import configparser  # noqa: E402
import tempfile  # noqa: E402

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def as_nobody(args, **kw):
    """Run a command as user nobody (for allow_other / permission checks)."""
    kw.setdefault("env", dict(os.environ, LC_ALL="C"))
    return run(NOBODY + [str(a) for a in args], check=False, **kw)


def snapshot_names(mntpath):
    """Names listed at the root of a mount, without the `latest` symlink."""
    return sorted(n for n in os.listdir(mntpath) if n != "latest")


def store_entries(store):
    """Every entry of a store directory (hidden ones included); [] if absent."""
    try:
        return sorted(os.listdir(store))
    except FileNotFoundError:
        return []


def store_snapshots(store):
    """Snapshot directories of a store (entries not starting with '.')."""
    return [n for n in store_entries(store) if not n.startswith(".")]


def tree_entries(root):
    """Map relpath ('.' for root) -> os.lstat result of every entry of a tree;
    symlinks are not followed."""
    out = {".": os.lstat(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def set_trac_database(env, value):
    """Rewrite the [trac] database line of ENV/conf/trac.ini in place (the
    file keeps its inode and its mode 0600)."""
    ini = os.path.join(env, "conf", "trac.ini")
    with open(ini) as f:
        lines = f.read().split("\n")
    section, done = None, False
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
        elif section == "trac" and s.split("=", 1)[0].strip() == "database":
            lines[i] = "database = " + value
            done = True
            break
    assert done, "no [trac] database line in " + ini
    with open(ini, "r+") as f:
        f.write("\n".join(lines))
        f.truncate()


def read_trac_database(env):
    cp = configparser.RawConfigParser()
    cp.read(os.path.join(env, "conf", "trac.ini"))
    return cp.get("trac", "database")


@pytest.fixture
def public_dir():
    """A 0755 directory outside pytest's private (0700) tmp tree, for mount
    points that user nobody must reach.  Anything still mounted below it at
    teardown is lazily unmounted before removal."""
    d = tempfile.mkdtemp(prefix="tracsnap-pub-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    for n in os.listdir(d):
        p = os.path.join(d, n)
        if os.path.ismount(p):
            subprocess.run(["fusermount3", "-u", "-z", p], stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)


def start_public_mount(mount_factory, public_dir, logdir, env, opts=()):
    """Mount env with allow_other on a mount point nobody can reach; the log
    stays in logdir (tmp_path) so teardown can still check it."""
    m = mount_factory(env, mnt=os.path.join(public_dir, "mnt"),
                      opts=["allow_other"] + list(opts), start=False)
    m.logpath = os.path.join(str(logdir), "public-mnt.log")
    m.start()
    return m


def wait_sealed(store, name, timeout=60):
    """Wait until the daemon has sealed snapshot NAME (its `unsealed` marker
    is gone): only then does its manifest carry every hash."""
    marker = os.path.join(store, name, "unsealed")
    deadline = time.monotonic() + timeout
    while os.path.lexists(marker):
        assert time.monotonic() < deadline, "snapshot %s not sealed within %d s" % (name, timeout)
        time.sleep(0.02)
