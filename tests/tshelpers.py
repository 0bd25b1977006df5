"""Helpers shared by the mount-level tests (tests/mount) and scripts/bench.

One helper of each kind: the binary, the CLI runners, the daemon on a mount
point (Mount), waiting for a seal, the state of a tree, comparing a snapshot
with its environment, the fixture environments.  Plain Python, no pytest:
failures are AssertionError, which pytest reports like a failed assert and a
script can catch.  The pytest fixtures that wrap these live in
tests/mount/conftest.py.
"""
import configparser
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import tarfile
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(TESTS)
FIXTURES = os.path.join(TESTS, "fixtures")
TRACWRITER = os.path.join(TESTS, "tracwriter.py")

# Sanitizer builds print these; any of them in a daemon's or a command's
# output fails the test.
FATAL_LOG_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Segmentation fault")
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)

# A line of a daemon's log that says something went wrong.  The daemon logs
# through ts_log (snapshot/base/log.c): warnings carry "tracsnap: warning: ";
# errors (LOG_ERR) carry no level of their own, but every one of them says
# "failed" or that the store went away (fs/fs_ops.c, fs/fs_seal.c,
# fs/fs_watch.c).  Any line that is not tracsnap's own (libfuse, the C
# library) is unexpected too.  Tests that provoke such a line declare it with
# Mount.expect_log.
UNEXPECTED_LOG_LINE = re.compile(r"^tracsnap: warning: "
                                 r"|^tracsnap: .*\bfailed\b"
                                 r"|^tracsnap: store .*: removed or moved away"
                                 r"|^(?!tracsnap: )")
# "failed" also ends the lines the daemon logs at LOG_NOTICE when it refuses a
# request of the user's own (fs/fs_ops.c): a snapshot name in use or invalid,
# a rename refused.  They are answers, not faults.
USER_REFUSAL_LOG_LINE = re.compile(r"^tracsnap: snapshot .* failed: snapshot (.*: exists already|name ')"
                                   r"|^tracsnap: rename .* -> .* failed: ")

MOUNT_TIMEOUT = 10      # a daemon that must refuse has done so by then


def tracsnap_bin():
    """The binary under test: $TRACSNAP_BIN, else build/tracsnap."""
    b = os.environ.get("TRACSNAP_BIN") or os.path.join(TOP, "build", "tracsnap")
    if not os.access(b, os.X_OK):
        raise RuntimeError("tracsnap binary not found at %s: run make first" % b)
    return b


def _arg(a):
    return os.fsdecode(a) if isinstance(a, bytes) else str(a)


def run(args, check=True, **kw):
    """Run a command, capture text output, return CompletedProcess.  Bytes
    arguments are passed as they are (os.fsdecode); undecodable output is
    replaced unless errors= says otherwise."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("timeout", 120)
    kw.setdefault("errors", "replace")
    p = subprocess.run([_arg(a) for a in args], text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:%s\nstderr:%s" % (args, p.returncode, p.stdout, p.stderr))
    return p


def tracsnap(*args, check=True, **kw):
    """Run a tracsnap subcommand (snapshot, list, ...)."""
    return run([tracsnap_bin()] + list(args), check=check, **kw)


def tracsnap_lines(out):
    """The lines of an output that are tracsnap's own messages."""
    return [l for l in out.splitlines() if l.startswith("tracsnap: ")]


def cli_snapshot(env, store, name, check=True, **kw):
    """`tracsnap snapshot --store STORE ENV NAME`; the CompletedProcess, with
    .tree set to the snapshot's tree in the store."""
    p = tracsnap("snapshot", "--store", store, env, name, check=check, **kw)
    p.tree = os.path.join(str(store), str(name), "tree")
    return p


def extract_fixture(name, dest):
    """Extract tests/fixtures/<name>.tar.gz into dest; return the env path."""
    with tarfile.open(os.path.join(FIXTURES, name + ".tar.gz")) as t:
        t.extractall(dest)
    return os.path.join(dest, name)


# A shell starts a background job with SIGINT ignored, and a daemon started
# from it would inherit that: libfuse sets its handler only over the default
# action, so SIGINT would not stop it.  env(1) gives the daemon the default
# action back, as when the tests run from a terminal (it execs: same pid).
# Found now: some tests run the daemon with a PATH of their own.
DEFAULT_SIGNALS = [shutil.which("env") or "/usr/bin/env", "--default-signal=INT"]


def daemon_cmd(env, mnt, store, opts=(), args=(), prefix=()):
    """The command line of a foreground daemon (its log goes to stderr)."""
    o = ["store=" + str(store)] + list(opts)
    return DEFAULT_SIGNALS + list(prefix) + [tracsnap_bin(), "-f"] + list(args) + \
        ["-o", ",".join(o), str(env), str(mnt)]


def daemon_env(clock_offset=None):
    """The daemon's environment; clock_offset (seconds, signed) shifts the
    clock it names auto snapshots by (TRACSNAP_TEST_CLOCK_OFFSET)."""
    e = dict(os.environ)
    if clock_offset is not None:
        e["TRACSNAP_TEST_CLOCK_OFFSET"] = str(int(clock_offset))
    return e


def run_refused_mount(env, mnt, store, opts=(), timeout=MOUNT_TIMEOUT):
    """Start the daemon in the foreground, expecting it to refuse: return
    (returncode, output, seconds) once it exits.  Still running after
    `timeout` (it mounted instead): unmount, stop it and fail.  A crash (a
    signal, a sanitizer report) fails too."""
    cmd = daemon_cmd(env, mnt, store, opts)
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True, errors="replace")
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.path.ismount(str(mnt)):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stderr=subprocess.DEVNULL)
        try:
            out, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        raise AssertionError("daemon still running after %ds instead of refusing %s:\n%s"
                             % (timeout, cmd, out))
    finally:
        if os.path.isdir(str(mnt)) and os.path.ismount(str(mnt)):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stderr=subprocess.DEVNULL)
    assert p.returncode >= 0, "daemon killed by signal %d:\n%s" % (-p.returncode, out)
    for m in FATAL_LOG_MARKERS:
        assert m not in out, "daemon output contains %r:\n%s" % (m, out)
    return p.returncode, out, time.time() - t0


class Mount:
    """One tracsnap daemon in the foreground on one mount point, its output
    (stdout and stderr) appended to logpath.

    Strict by default: check() fails when any daemon run of this Mount ended
    with a status other than 0, or when its log holds an unexpected line
    (UNEXPECTED_LOG_LINE) or a sanitizer report.  A test that stops the
    daemon on purpose says so: kill(sig) sends a signal and accepts the
    death by it; expect_exit(code) accepts another status.  A test that
    provokes a warning or error line declares it with expect_log(regex).

    clock_offset: seconds added to the clock the daemon names auto snapshots
    by (TRACSNAP_TEST_CLOCK_OFFSET); prefix: a command to run the daemon
    under (valgrind ...); stop_timeout: seconds stop() lets the daemon
    finish after its unmount before it kills it (scripts/bench allows 15:
    its daemons may still be sealing)."""

    def __init__(self, env, mnt, store, opts=(), args=(), logpath=None, clock_offset=None,
                 prefix=(), mount_timeout=15, stop_timeout=10):
        self.env, self.mnt, self.store = str(env), str(mnt), str(store)
        self.opts = list(opts)
        self.args = list(args)
        self.logpath = logpath or (self.mnt.rstrip("/") + ".log")
        self.clock_offset = clock_offset
        self.prefix = list(prefix)
        self.mount_timeout = mount_timeout
        self.stop_timeout = stop_timeout
        self.proc = None
        self.log = None
        self.procs = []                 # every daemon run, for check()
        self.ok_status = {0}
        self.ok_log = []
        self.forced = []                # runs stop() had to kill

    # -- expectations

    def expect_exit(self, *codes):
        """Accept these exit statuses (negative: death by that signal)."""
        self.ok_status.update(codes)
        return self

    def expect_log(self, *regexes):
        """Accept log lines matching any of these regexes (re.search)."""
        self.ok_log.extend(re.compile(r) for r in regexes)
        return self

    def kill(self, sig=signal.SIGKILL, wait=True):
        """Send sig to the daemon on purpose: its death by sig is expected."""
        self.ok_status.add(-int(sig))
        self.proc.send_signal(sig)
        if wait:
            self.proc.wait(timeout=10)
        return self

    # -- life

    def start(self, wait=True):
        os.makedirs(self.mnt, exist_ok=True)
        if self.log is not None:       # a restart: the last run has ended
            self.log.close()
        cmd = daemon_cmd(self.env, self.mnt, self.store, self.opts, self.args, self.prefix)
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=daemon_env(self.clock_offset))
        self.procs.append(self.proc)
        if wait:
            self.wait_mounted()
        return self

    def wait_mounted(self, timeout=None):
        timeout = timeout or self.mount_timeout
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

    def strftime(self, fmt, delta=0):
        """fmt of the daemon's local time (its clock_offset applied), delta
        seconds from now: the auto names it makes."""
        return time.strftime(fmt, time.localtime(time.time() + (self.clock_offset or 0) + delta))

    def stop(self):
        """Unmount and end the daemon; never raises (check() judges)."""
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
            deadline = time.time() + 10
            while os.path.ismount(self.mnt) and time.time() < deadline:
                time.sleep(0.05)
            if os.path.ismount(self.mnt):
                subprocess.run(["fusermount3", "-u", "-z", self.mnt], stderr=subprocess.DEVNULL)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.forced.append(self.proc)
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
        if self.log is not None:
            self.log.close()
            self.log = None

    # -- the verdict

    def unexpected_log_lines(self):
        """Lines of the log that say something went wrong and that the test
        did not declare."""
        out = []
        for line in self.log_text().splitlines():
            if not line.strip():
                continue
            if any(m in line for m in FATAL_LOG_MARKERS):
                out.append(line)
            elif UNEXPECTED_LOG_LINE.search(line) and not USER_REFUSAL_LOG_LINE.search(line) \
                    and not any(r.search(line) for r in self.ok_log):
                out.append(line)
        return out

    def check(self):
        """Fail unless every daemon run ended as expected and the log holds
        no unexpected line.  Call after stop()."""
        text = self.log_text()
        for p in self.procs:
            rc = p.poll()
            assert p not in self.forced, \
                "daemon (pid %d) did not exit within %d s of its unmount:\n%s" \
                % (p.pid, self.stop_timeout, text)
            assert rc is None or -rc not in CRASH_SIGNALS or rc in self.ok_status, \
                "daemon died of signal %d:\n%s" % (-rc, text)
            assert rc is None or rc in self.ok_status, \
                "daemon (pid %d) exited with status %d (expected %s):\n%s" \
                % (p.pid, rc, sorted(self.ok_status), text)
        bad = self.unexpected_log_lines()
        assert not bad, "unexpected lines in the daemon log %s:\n%s\n--- whole log:\n%s" \
            % (self.logpath, "\n".join(bad), text)

    check_log_clean = check


def clock_offset_to_hour_start(into=10):
    """A clock_offset that puts the daemon's clock `into` seconds past the
    start of the current local hour: the auto names it makes (strftime of
    its local time) then stay the same for the next hour less `into`
    seconds, wherever the wall clock stands in its hour."""
    now = time.time()
    lt = time.localtime(now)
    return int(round(into - (lt.tm_min * 60 + lt.tm_sec + now % 1)))


def wait_sealed(store, name, timeout=60, poll=0.02, daemon=None):
    """Wait until the daemon has sealed snapshot NAME: its `unsealed` marker
    is gone and its manifest has no `unsealed` line; only then does the
    manifest carry every hash.  Returns time.monotonic() of the look that
    found the marker gone: scripts/bench times the seal with it, looking
    every 5 ms (poll).  daemon: the Mount that seals; its daemon exiting
    first fails at once (a bench waits up to an hour), with its log."""
    marker = os.path.join(str(store), name, "unsealed")
    manifest = os.path.join(str(store), name, "manifest")
    deadline = time.monotonic() + timeout
    while True:
        if not os.path.lexists(marker):
            now = time.monotonic()
            with open(manifest) as f:
                if not any(l.startswith("unsealed\t") for l in f):
                    return now
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError("daemon exited %d before snapshot %s was sealed:\n%s"
                                 % (daemon.proc.returncode, name, daemon.log_text()))
        assert time.monotonic() < deadline, "snapshot %s not sealed within %d s" % (name, timeout)
        time.sleep(poll)


def tree_entries(root):
    """Map relpath ('.' for root) -> os.lstat result of every entry of a tree;
    symlinks are not followed."""
    root = str(root)
    out = {".": os.lstat(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def _digest(path, algo):
    import hashlib
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def tree_state(root, content="bytes", owners=False, inode=False, ctime=False, mtime=True,
               dir_size=False, top=False):
    """Map relpath -> dict of what a tree holds, to compare a tree before and
    after (the live environment untouched, a restore complete, a copy equal).
    Symlinks are not followed.  Every entry: type ('f', 'd', 'l', 'o' for
    others), st_mode; regular files: size and content; symlinks: target
    (their own times are not kept: a copy cannot set them everywhere);
    directories and files: mtime_ns.

    content: "bytes" (the data itself), "sha1" (its hash, for large trees) or
    None; owners: uid and gid; inode: st_ino (an entry replaced by another);
    ctime: ctime_ns (any change, even one that puts the times back);
    mtime: False where a test itself touches directories; dir_size: the
    size of directories too; top: include the root itself as '.'."""
    out = {}
    for rel, st in tree_entries(root).items():
        if rel == "." and not top:
            continue
        p = os.path.join(str(root), rel)
        fmt = stat.S_IFMT(st.st_mode)
        rec = {"type": {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l"}.get(fmt, "o"),
               "mode": st.st_mode}
        if owners:
            rec["uid"], rec["gid"] = st.st_uid, st.st_gid
        if inode:
            rec["ino"] = st.st_ino
        if ctime:
            rec["ctime_ns"] = st.st_ctime_ns
        if fmt == stat.S_IFLNK:
            rec["link"] = os.readlink(p)
        elif mtime:
            rec["mtime_ns"] = st.st_mtime_ns
        if fmt == stat.S_IFREG or (fmt == stat.S_IFDIR and dir_size):
            rec["size"] = st.st_size
        if fmt == stat.S_IFREG and content == "bytes":
            with open(p, "rb") as f:
                rec["data"] = f.read()
        elif fmt == stat.S_IFREG and content:
            rec[content] = _digest(p, content)
        out[rel] = rec
    return out


def assert_same_files(env, snap, skip=("db/trac.db",)):
    """Same set of entries; same bytes for regular files, same targets for
    links, directories for directories.  The database (skip) is copied
    through SQLite, not byte for byte."""
    envt = {k: v for k, v in tree_entries(env).items() if k not in skip}
    snapt = {k: v for k, v in tree_entries(snap).items() if k not in skip}
    missing = sorted(set(envt) - set(snapt))
    extra = sorted(set(snapt) - set(envt))
    assert not missing and not extra, "missing %s, extra %s" % (missing, extra)
    for rel, st in envt.items():
        e, s = os.path.join(str(env), rel), os.path.join(str(snap), rel)
        if stat.S_ISLNK(st.st_mode):
            assert stat.S_ISLNK(snapt[rel].st_mode), rel
            assert os.readlink(s) == os.readlink(e), rel
        elif stat.S_ISREG(st.st_mode):
            assert stat.S_ISREG(snapt[rel].st_mode), rel
            with open(e, "rb") as f1, open(s, "rb") as f2:
                assert f1.read() == f2.read(), rel
        else:
            assert stat.S_ISDIR(snapt[rel].st_mode), rel


# -- databases

def db_path_in(snapdir):
    return os.path.join(snapdir, "db", "trac.db")


def sqlite_ro(path):
    """Open a database read-only and immutable, as on the read-only mount."""
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True)


# -- environments, stores and mounts

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


def trac_ini(env):
    return os.path.join(str(env), "conf", "trac.ini")


def rewrite_trac_ini(env, fn):
    """Replace ENV/conf/trac.ini's bytes by fn(bytes) in place (same inode
    and mode)."""
    with open(trac_ini(env), "rb") as f:
        data = f.read()
    with open(trac_ini(env), "r+b") as f:
        f.write(fn(data))
        f.truncate()


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


def move_db_outside(env, dest):
    """Move ENV's SQLite database into directory dest (which exists) and
    point trac.ini at it, as an administrator keeping trac.db elsewhere
    would; returns the database's new path."""
    db = os.path.join(str(dest), "trac.db")
    shutil.move(os.path.join(env, "db", "trac.db"), db)
    set_trac_database(env, "sqlite:" + db)
    return db


def sha256_file(path):
    """Hex SHA-256 of a file's content, read in chunks (snapshots hold
    files of hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


STAGE_TIMEOUT = 30


def stage_base(store):
    """Name of the snapshot STORE/.stage was made from, or None."""
    try:
        with open(os.path.join(store, ".stage", "base")) as f:
            return f.read().split("\n")[0]
    except FileNotFoundError:
        return None


def wait_stage(store, name, timeout=STAGE_TIMEOUT):
    """Wait until the daemon has staged snapshot name."""
    deadline = time.monotonic() + timeout
    while stage_base(store) != name:
        assert time.monotonic() < deadline, \
            "no stage of %s within %d s (now: %r)" % (name, timeout, stage_base(store))
        time.sleep(0.02)


def stage_manifest(store):
    try:
        with open(os.path.join(store, ".stage", "manifest")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_staged_file(store, rel):
    """Until STORE/.stage lists rel (refreshed, and not being refreshed)."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    while not ("\t%s\n" % rel in stage_manifest(store) and stage_base(store)):
        assert time.monotonic() < deadline, "%s not staged within %d s" % (rel, STAGE_TIMEOUT)
        time.sleep(0.02)


def wait_refreshed(store):
    """Until the stage has a manifest of its own, and so its directories
    watched: a refresh wrote one, or the build linked its snapshot's when
    that was the environment (snapshot/take/stage.h)."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    while not (stage_manifest(store) and stage_base(store)):
        assert time.monotonic() < deadline, "the stage was never refreshed"
        time.sleep(0.02)


def read_trac_database(env):
    cp = configparser.RawConfigParser()
    cp.read(os.path.join(env, "conf", "trac.ini"))
    return cp.get("trac", "database")


def start_public_mount(mount_factory, public_dir, logdir, env, opts=(), **kw):
    """Mount env with allow_other on a mount point nobody can reach; the log
    stays in logdir (tmp_path) so teardown can still check it."""
    m = mount_factory(env, mnt=os.path.join(public_dir, "mnt"),
                      opts=["allow_other"] + list(opts), start=False, **kw)
    m.logpath = os.path.join(str(logdir), "public-mnt.log")
    m.start()
    return m


def fs_used(path, settle_s=15.0):
    """The used bytes of path's filesystem once they stop moving (unchanged
    for 1 s, at most settle_s): XFS frees an unlinked inode's blocks in the
    background (inodegc), after sync(2) has returned, and a copy replaced by
    a hard link is freed so."""
    def now():
        os.sync()
        st = os.statvfs(path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize
    deadline = time.monotonic() + settle_s
    last, same = now(), 0
    while same < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        cur = now()
        same = same + 1 if cur == last else 0
        last = cur
    return last
