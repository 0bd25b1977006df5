"""Bad input (issue 6): every case is a clear refusal or a correct result,
never a crash or a hang, and nothing is written where it must not be.

Each refusal asserts: non-zero exit (a sysexits(3) code), exactly one
`tracsnap: ` line naming the path or setting and the cause, an answer within
a timeout, no store created (or no snapshot left in an existing one),
nothing mounted, and the environment unchanged (tree_state before/after).

Cases already covered elsewhere and not repeated here (they count toward the
issue's 30): test_errors.py (env missing, env is a file, VERSION missing,
VERSION wrong first line, trac.ini missing, no [trac] section, no database
key, `sqlite:` and `postgres:trac`, mysql, unreachable postgres, database file
missing, store inside ENV, store via `..`, store under the mount point, mount
point missing, snapshot of a bad env, existing snapshot name) and
test_view.py (mkdir .hidden, latest, \\x01, \\n, \\t, \\x7f, 256 bytes, EEXIST,
invalid rename targets, symlinks kept as links incl. loops, /etc/passwd, `..`).
"""
import errno
import os
import shutil
import sqlite3
import stat
import subprocess
import time

import pytest

from tshelpers import (FATAL_LOG_MARKERS, run_refused_mount, set_trac_database, snapshot_names,
                       rewrite_trac_ini, store_entries, store_snapshots, trac_ini, tracsnap, tracsnap_lines,
                       tree_state)

TIMEOUT = 20          # no case may take longer than this: a hang is a failure
MOUNT_TIMEOUT = 10


def run_cli(args, timeout=TIMEOUT):
    """Run `tracsnap ARGS`; return (rc, stdout, stderr).  A hang fails."""
    p = tracsnap(*args, check=False, timeout=timeout, stdin=subprocess.DEVNULL,
                 errors="surrogateescape")
    for marker in FATAL_LOG_MARKERS:
        assert marker not in p.stderr, p.stderr
    assert p.returncode >= 0, "killed by signal %d:\n%s" % (-p.returncode, p.stderr)
    return p.returncode, p.stdout, p.stderr


def run_mount(env, mnt, store, opts=()):
    """Start the daemon expecting a refusal; return (rc, output).  Still
    running after MOUNT_TIMEOUT (it mounted): fail."""
    rc, out, _ = run_refused_mount(env, mnt, store, opts, timeout=MOUNT_TIMEOUT)
    return rc, out


def check_one_line(rc, out, must_name, sysexits=True):
    assert rc != 0, "exit 0:\n" + out
    if sysexits:
        assert 64 <= rc <= 78, "exit %d is not a sysexits(3) code:\n%s" % (rc, out)
    lines = tracsnap_lines(out)
    assert len(lines) == 1, "expected exactly one 'tracsnap: ' line, got:\n" + out
    for text in must_name:
        assert text in lines[0], "%r not in %r" % (text, lines[0])
    return lines[0]


def db_path(env):
    return os.path.join(env, "db", "trac.db")


def fixture_db_bytes(env):
    with open(db_path(env), "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------
# Bad environments: each refused by the daemon and by `tracsnap snapshot`.
# A setup function breaks the env and returns the texts the line must name.

def _version_empty(env):
    open(os.path.join(env, "VERSION"), "w").close()
    return [env, "VERSION"]


def _version_binary(env):
    with open(os.path.join(env, "VERSION"), "wb") as f:
        f.write(b"\x00\xff\xfeTrac\x00Environment\x80\n" + os.urandom(200))
    return [env, "VERSION"]


def _version_is_dir(env):
    os.unlink(os.path.join(env, "VERSION"))
    os.mkdir(os.path.join(env, "VERSION"))
    return [env, "VERSION"]


def _version_version2(env):
    with open(os.path.join(env, "VERSION"), "w") as f:
        f.write("Trac Environment Version 2\n")
    return [env, "VERSION"]


def _ini_unreadable_dir(env):
    # trac.ini is a directory: unreadable whoever we are (root reads 0000 files)
    os.unlink(trac_ini(env))
    os.mkdir(trac_ini(env))
    return ["trac.ini"]


def _ini_dangling_symlink(env):
    os.unlink(trac_ini(env))
    os.symlink("nowhere.ini", trac_ini(env))
    return ["trac.ini"]


def _ini_not_utf8(env):
    # The [trac] section name itself is mangled by invalid bytes.
    rewrite_trac_ini(env, lambda d: d.replace(b"[trac]\n", b"[tr\xffac]\n"))
    return ["trac.ini"]


def _ini_empty(env):
    rewrite_trac_ini(env, lambda d: b"")
    return ["trac.ini"]


def _ini_binary(env):
    rewrite_trac_ini(env, lambda d: bytes(range(256)) * 64)
    return ["trac.ini"]


def _ini_empty_database(env):
    set_trac_database(env, "")
    return ["trac.ini", "database"]


def _uri(value, *names):
    def setup(env):
        set_trac_database(env, value)
        return ["database"] + list(names)
    setup.__name__ = "uri " + value
    return setup


def _db_random_bytes(env):
    with open(db_path(env), "wb") as f:
        f.write(os.urandom(64 * 1024))
    return ["trac.db"]


def _db_empty_file(env):
    open(db_path(env), "wb").close()
    return ["trac.db"]


def _db_is_dir(env):
    os.unlink(db_path(env))
    os.mkdir(db_path(env))
    return ["trac.db"]


def _db_dangling_symlink(env):
    os.unlink(db_path(env))
    os.symlink("gone.db", db_path(env))
    return ["trac.db"]


def _db_text_file(env):
    with open(db_path(env), "w") as f:
        f.write("this is not a database\n" * 1000)
    return ["trac.db"]


def _db_no_trac_tables(env):
    # a valid SQLite file that is not Trac's: no `system` table
    os.unlink(db_path(env))
    c = sqlite3.connect(db_path(env))
    c.execute("create table other(x)")
    c.commit()
    c.close()
    return ["trac.db"]


BAD_ENVS = [
    _version_empty, _version_binary, _version_is_dir, _version_version2,
    _ini_unreadable_dir, _ini_dangling_symlink, _ini_not_utf8, _ini_empty, _ini_binary,
    _ini_empty_database,
    _uri("sqlite://"),          # the path is "/", a directory
    _uri("postgres://u@h:abc/db", "abc"),
    _uri("postgres://", "postgres"),
    _uri("postgresql://u@h/", "postgres"),
    _uri("oracle://u@h/db", "oracle"),
    _uri("file:db/trac.db", "file"),
    _uri("db/trac.db", "db/trac.db"),
    _uri("sqlite:db/trac.db?timeout=abc", "timeout"),
    _uri("sqlite:db/../../../outside.db", "outside.db"),
    _db_is_dir, _db_dangling_symlink,
]

# Files that exist but are not SQLite databases: the daemon may accept the
# mount (the database is opened for each snapshot) and must then fail every
# mkdir leaving nothing; the command refuses in one line.
NOT_SQLITE = [_db_random_bytes, _db_text_file]


def _case_id(fn):
    return fn.__name__.lstrip("_")


# An empty 0-byte trac.db is a valid (empty) SQLite database to SQLite; a
# database without Trac's tables is one too.  Both must be refused or, at the
# very least, snapshot cleanly; see test_db_valid_sqlite_not_trac.


@pytest.mark.parametrize("setup", BAD_ENVS, ids=_case_id)
def test_bad_env_refused_by_daemon(env_sqlite, tmp_path, setup):
    must = setup(env_sqlite)
    before = tree_state(env_sqlite)
    mnt, store = tmp_path / "mnt", tmp_path / "store"
    mnt.mkdir()
    t0 = time.time()
    rc, out = run_mount(env_sqlite, mnt, store)
    assert time.time() - t0 < MOUNT_TIMEOUT
    check_one_line(rc, out, must)
    assert not os.path.ismount(str(mnt))
    assert not os.path.exists(str(store)), "store created: %s" % store_entries(str(store))
    assert tree_state(env_sqlite) == before


@pytest.mark.parametrize("setup", NOT_SQLITE, ids=_case_id)
def test_not_sqlite_db_daemon(env_sqlite, tmp_path, mount_factory, setup):
    must = setup(env_sqlite)
    before = tree_state(env_sqlite)
    m = mount_factory(env_sqlite, start=False)
    m.start(wait=False)
    deadline = time.time() + MOUNT_TIMEOUT
    while time.time() < deadline and not os.path.ismount(m.mnt) and m.proc.poll() is None:
        time.sleep(0.05)
    if m.proc.poll() is not None:
        check_one_line(m.proc.returncode, m.log_text(), must)
        m.expect_exit(m.proc.returncode)          # a sysexits code: checked above
        assert not os.path.exists(m.store)
    else:
        assert os.path.ismount(m.mnt)
        m.expect_log(r"^tracsnap: snapshot s \(mkdir\) failed: .*trac\.db")
        t0 = time.time()
        with pytest.raises(OSError):
            os.mkdir(m.path("s"))
        assert time.time() - t0 < TIMEOUT
        assert snapshot_names(m.mnt) == []
        assert store_snapshots(m.store) == []
        assert not [n for n in store_entries(m.store) if n.startswith(".tmp-")]
        bad = [l for l in tracsnap_lines(m.log_text()) if "trac.db" in l]
        assert len(bad) == 1, m.log_text()
    assert tree_state(env_sqlite) == before


@pytest.mark.parametrize("setup", BAD_ENVS + NOT_SQLITE, ids=_case_id)
def test_bad_env_refused_by_snapshot_command(env_sqlite, tmp_path, setup):
    must = setup(env_sqlite)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s1"])
    check_one_line(rc, out + err, must)
    assert not os.path.exists(str(store)) or store_snapshots(str(store)) == [], store_entries(str(store))
    assert not [n for n in store_entries(str(store)) if n.startswith(".tmp-")]
    assert tree_state(env_sqlite) == before


@pytest.mark.parametrize("cmd", ["list", "verify", "prune"])
@pytest.mark.parametrize("setup", [_version_empty, _ini_not_utf8, _uri("oracle://u@h/db", "oracle")],
                         ids=_case_id)
def test_bad_env_refused_by_other_commands(env_sqlite, tmp_path, setup, cmd):
    must = setup(env_sqlite)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    extra = ["--keep-last", "1"] if cmd == "prune" else []
    rc, out, err = run_cli([cmd, "--store", store] + extra + [env_sqlite])
    check_one_line(rc, out + err, must)
    assert not os.path.exists(str(store))
    assert tree_state(env_sqlite) == before


def test_db_corrupt_pages(env_sqlite, tmp_path):
    """Valid header, garbage pages in the middle.  Decision: tracsnap copies
    the database through SQLite's backup API, which copies pages without
    checking them; so the snapshot may succeed and then hold the same corrupt
    database (what hotcopy would do too).  If it fails, it says so in one line
    naming the database and leaves nothing behind.  Never a crash or hang."""
    data = bytearray(fixture_db_bytes(env_sqlite))
    assert len(data) > 8 * 4096
    mid = len(data) // 2
    data[mid:mid + 3 * 4096] = os.urandom(3 * 4096)
    with open(db_path(env_sqlite), "wb") as f:
        f.write(data)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "c"])
    if rc == 0:
        assert store_snapshots(str(store)) == ["c"]
        copy = os.path.join(str(store), "c", "tree", "db", "trac.db")
        with open(copy, "rb") as f:
            head = f.read(16)
        assert head == b"SQLite format 3\x00"
        # the manifest round-trips
        rc2, out2, err2 = run_cli(["verify", "--store", store, env_sqlite])
        assert rc2 == 0, out2 + err2
    else:
        check_one_line(rc, out + err, ["trac.db"])
        assert store_snapshots(str(store)) == []
        assert not [n for n in store_entries(str(store)) if n.startswith(".tmp-")]
    assert tree_state(env_sqlite) == before


def test_db_truncated_half(env_sqlite, tmp_path):
    """Half of the database file: SQLite reports it malformed when the copy
    reads the missing pages, or the copy keeps the same damage.  Same rules as
    the corrupt case."""
    data = fixture_db_bytes(env_sqlite)
    with open(db_path(env_sqlite), "r+b") as f:
        f.truncate(len(data) // 2)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "t"])
    if rc == 0:
        assert store_snapshots(str(store)) == ["t"]
    else:
        check_one_line(rc, out + err, ["trac.db"])
        assert store_snapshots(str(store)) == []
        assert not [n for n in store_entries(str(store)) if n.startswith(".tmp-")]
    assert tree_state(env_sqlite) == before


# ---------------------------------------------------------------------------
# Inputs that must be handled correctly (snapshot succeeds).

def test_env_is_symlink_to_env(env_sqlite, tmp_path, mount_factory):
    link = str(tmp_path / "envlink")
    os.symlink(env_sqlite, link)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, link, "s"])
    assert rc == 0, out + err
    assert os.path.isfile(os.path.join(str(store), "s", "tree", "VERSION"))
    m = mount_factory(link)
    os.mkdir(m.path("m"))
    assert os.path.isfile(m.path("m", "db", "trac.db"))


def test_store_inside_env_via_symlink(env_sqlite, tmp_path):
    """A store path that reaches into ENV through a symlink is still inside."""
    os.mkdir(os.path.join(env_sqlite, "snaps"))
    link = str(tmp_path / "storelink")
    os.symlink(os.path.join(env_sqlite, "snaps"), link)
    before = tree_state(env_sqlite)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc, out = run_mount(env_sqlite, mnt, link)
    check_one_line(rc, out, ["store"])
    assert not os.path.ismount(str(mnt))
    rc, out, err = run_cli(["snapshot", "--store", link, env_sqlite, "s"])
    check_one_line(rc, out + err, ["store"])
    assert tree_state(env_sqlite) == before


def test_store_contains_env_cli(tmp_path, env_sqlite):
    """STORE an ancestor of ENV (here ENV's parent, and /): the env would be
    listed as a snapshot and `prune` would delete the live environment (it
    did: `prune --keep-last 1` printed "remove trac-env-sqlite" and removed
    it).  Refused in one line, nothing written."""
    parent = os.path.dirname(env_sqlite)
    before = tree_state(parent)
    for store in (parent, parent + "/", "/"):
        for args in (["snapshot", "--store", store, env_sqlite, "s"],
                     ["prune", "--keep-last", "1", "--store", store, env_sqlite],
                     ["list", "--store", store, env_sqlite],
                     ["verify", "--store", store, env_sqlite]):
            rc, out, err = run_cli(args)
            check_one_line(rc, out + err, [store, "store"])
    assert tree_state(parent) == before
    assert os.path.isfile(os.path.join(env_sqlite, "VERSION"))


def test_store_contains_env_daemon(tmp_path, env_sqlite):
    """The same for the daemon: mounting with store= an ancestor of ENV must
    be refused, or `rmdir MNT/<env name>` and keep= would delete ENV."""
    parent = os.path.dirname(env_sqlite)
    before = tree_state(parent)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc, out = run_mount(env_sqlite, mnt, parent, opts=["keep=last:1"])
    check_one_line(rc, out, [parent])
    assert not os.path.ismount(str(mnt))
    assert tree_state(parent) == before


def test_store_is_a_file(env_sqlite, tmp_path):
    store = tmp_path / "storefile"
    store.write_text("x")
    before = tree_state(env_sqlite)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc, out = run_mount(env_sqlite, mnt, store)
    check_one_line(rc, out, [str(store)])
    assert not os.path.ismount(str(mnt))
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    check_one_line(rc, out + err, [str(store)])
    assert store.read_text() == "x"
    assert tree_state(env_sqlite) == before


def test_mount_point_is_a_file(env_sqlite, tmp_path):
    mnt = tmp_path / "mntfile"
    mnt.write_text("x")
    store = tmp_path / "store"
    before = tree_state(env_sqlite)
    rc, out = run_mount(env_sqlite, mnt, store)
    check_one_line(rc, out, [str(mnt)])
    assert mnt.read_text() == "x"
    assert not os.path.exists(str(store))
    assert tree_state(env_sqlite) == before


def test_mount_point_inside_env(env_sqlite, tmp_path):
    """Mounting the view inside ENV would make every snapshot walk its own
    mount: refused."""
    mnt = os.path.join(env_sqlite, "view")
    os.mkdir(mnt)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out = run_mount(env_sqlite, mnt, store)
    check_one_line(rc, out, [mnt])
    assert not os.path.ismount(mnt)
    assert not os.path.exists(str(store))
    assert tree_state(env_sqlite) == before


def test_mount_point_is_env(env_sqlite, tmp_path):
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out = run_mount(env_sqlite, env_sqlite, store)
    check_one_line(rc, out, [env_sqlite])
    assert not os.path.ismount(env_sqlite)
    assert tree_state(env_sqlite) == before


def test_symlink_traps_copied_as_links(env_sqlite, tmp_path, mount_factory):
    """Loops, absolute targets (/etc/shadow) and `..` chains are copied as
    links and never followed.  Through the mount, readlink gives the target;
    opening such a link resolves on the host exactly as it would in ENV
    (inherent to symlinks), and the snapshot holds a link, not a copy."""
    links = {"loop-a": "loop-b", "loop-b": "loop-a", "shadow": "/etc/shadow",
             "htdocs/upup": "../../", "htdocs/deep": "../../../../../../../../etc",
             "selfloop": "selfloop"}
    for rel, target in links.items():
        os.symlink(target, os.path.join(env_sqlite, rel))
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    assert rc == 0, out + err
    tree = os.path.join(str(store), "s", "tree")
    for rel, target in links.items():
        p = os.path.join(tree, rel)
        assert stat.S_ISLNK(os.lstat(p).st_mode), rel
        assert os.readlink(p) == target
    # nothing of /etc landed in the store
    total = sum(os.lstat(os.path.join(d, n)).st_size for d, _, fs in os.walk(tree) for n in fs)
    assert total < 4 * 1024 * 1024
    rc, out, err = run_cli(["verify", "--store", store, env_sqlite])
    assert rc == 0, out + err
    m = mount_factory(env_sqlite, store=str(store))
    for rel, target in links.items():
        p = m.path("s", rel)
        assert stat.S_ISLNK(os.lstat(p).st_mode), rel
        assert os.readlink(p) == target
        assert os.lstat(p).st_size == len(target)
    assert tree_state(env_sqlite) == before


def test_odd_file_names(env_sqlite, tmp_path, mount_factory):
    """Names with a newline, a tab, a backslash, invalid UTF-8 and a name
    that looks like a manifest line are copied, listed and round-trip
    through the manifest (verify)."""
    d = os.fsencode(os.path.join(env_sqlite, "htdocs"))
    names = [b"new\nline", b"tab\there", b"bad\xff\xfeutf8", b"back\\slash", b"  spaced  ",
             b"f 0644 0 0 12 1 " + b"0" * 64, b"\xc3\x28", b"dir\nwith\nnl"]
    for n in names[:-1]:
        with open(os.path.join(d, n), "wb") as f:
            f.write(b"content of " + n)
    os.mkdir(os.path.join(d, names[-1]))
    with open(os.path.join(d, names[-1], b"in\xffside"), "wb") as f:
        f.write(b"x")
    os.symlink(b"tar\nget\xff", os.path.join(d, b"link\nname"))
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    assert rc == 0, out + err
    rc, out, err = run_cli(["verify", "--store", store, env_sqlite])
    assert rc == 0, out + err
    rc, out, err = run_cli(["list", "--store", store, env_sqlite])
    assert rc == 0 and "s" in out.split(), out + err
    m = mount_factory(env_sqlite, store=str(store))
    vd = os.fsencode(m.path("s", "htdocs"))
    got = set(os.listdir(vd))
    assert set(names) | {b"link\nname"} <= got, got
    for n in names[:-1]:
        with open(os.path.join(vd, n), "rb") as f:
            assert f.read() == b"content of " + n
    assert os.readlink(os.path.join(vd, b"link\nname")) == b"tar\nget\xff"
    with open(os.path.join(vd, names[-1], b"in\xffside"), "rb") as f:
        assert f.read() == b"x"
    assert tree_state(env_sqlite) == before


def test_path_near_path_max(env_sqlite, tmp_path, mount_factory):
    """Nested directories so that the path relative to ENV is ~4000 bytes
    (the absolute path then exceeds PATH_MAX).  Decision: the snapshot
    succeeds (tracsnap walks with *at() calls), verify passes, and the deep
    file reads back through the mount."""
    comp = "d" * 200
    depth = 19                      # 19 * 201 = 3819 bytes of directories
    fd = os.open(env_sqlite, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(comp, dir_fd=fd)
            nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = "f" * 180
        wfd = os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"deep")
        os.close(wfd)
    finally:
        os.close(fd)
    rel_len = depth * (len(comp) + 1) + len(leaf)
    assert 3900 < rel_len < 4096
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"], timeout=60)
    if rc != 0:
        # acceptable only as one clean line naming the deep path
        check_one_line(rc, out + err, [comp])
        assert store_snapshots(str(store)) == []
        return
    rc, out, err = run_cli(["verify", "--store", store, env_sqlite], timeout=60)
    assert rc == 0, out + err
    m = mount_factory(env_sqlite, store=str(store))
    fd = os.open(m.path("s"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        rfd = os.open(leaf, os.O_RDONLY, dir_fd=fd)
        assert os.read(rfd, 10) == b"deep"
        os.close(rfd)
    finally:
        os.close(fd)


def test_path_beyond_path_max(env_sqlite, tmp_path):
    """A relative path of ~6000 bytes (no absolute path to it fits in
    PATH_MAX).  Decision (observed): `tracsnap snapshot` refuses in one line
    naming the directory and the cause (File name too long), exit 74, and
    leaves no snapshot and no .tmp-* directory."""
    comp = "e" * 200
    fd = os.open(env_sqlite, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(30):
            os.mkdir(comp, dir_fd=fd)
            nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"deep")
        os.close(wfd)
    finally:
        os.close(fd)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"], timeout=60)
    if rc == 0:
        rc, out, err = run_cli(["verify", "--store", store, env_sqlite], timeout=60)
        assert rc == 0, out + err
        return
    check_one_line(rc, out + err, [comp])
    assert store_snapshots(str(store)) == []
    assert not [n for n in store_entries(str(store)) if n.startswith(".tmp-")]


# Odd but valid inputs that Trac itself accepts: tracsnap must accept them.
def _set_version(text):
    def setup(env):
        with open(os.path.join(env, "VERSION"), "wb") as f:
            f.write(text)
    setup.__name__ = "VERSION " + repr(text)[:40]
    return setup


def _sed_ini(old, new):
    def setup(env):
        rewrite_trac_ini(env, lambda d: d.replace(old, new, 1))
    setup.__name__ = "ini %r->%r" % (old, new)
    return setup


def _abs_db(env):
    set_trac_database(env, "sqlite:" + db_path(env))


def _abs_db_3slash(env):
    set_trac_database(env, "sqlite://" + db_path(env))


def _db_params(env):
    set_trac_database(env, "sqlite:db/trac.db?timeout=5&journal_mode=WAL&synchronous=NORMAL&cursor=")


ODD_BUT_VALID = [
    _set_version(b"Trac Environment Version 1"),                 # no newline
    _set_version(b"Trac Environment Version 1\r\n"),             # CRLF
    _set_version(b"Trac Environment Version 1\n" + b"\xff" * 100000),
    _sed_ini(b"database = ", b"DATABASE = "),                   # keys are case-insensitive
    _sed_ini(b"database = ", b"database: "),                    # ':' delimiter
    _sed_ini(b"database = ", b"database="),
    _sed_ini(b"[trac]", b"\xef\xbb\xbf[x]\n[trac]"),               # BOM, another section first
    _abs_db, _abs_db_3slash, _db_params,
]


@pytest.mark.parametrize("setup", ODD_BUT_VALID, ids=_case_id)
def test_odd_but_valid_env_accepted(env_sqlite, tmp_path, setup):
    setup(env_sqlite)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    assert rc == 0, out + err
    assert store_snapshots(str(store)) == ["s"]
    assert not tracsnap_lines(out + err), out + err
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(str(store), "s", "tree", "db", "trac.db"), uri=True)
    assert c.execute("select count(*) from ticket").fetchone()[0] == 30
    c.close()
    state = tree_state(env_sqlite)
    if setup is not _db_params:        # WAL mode set by the URI may change db/
        assert state == before


def test_trac_ini_huge(env_sqlite, tmp_path):
    """A 10 MB trac.ini (a huge comment block before the real content) is
    handled: either read and snapshotted, or refused in one line naming it.
    Never a crash or a hang."""
    rewrite_trac_ini(env_sqlite, lambda d: (b"# " + b"x" * 1000 + b"\n") * 10000 + d)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"], timeout=60)
    if rc == 0:
        assert store_snapshots(str(store)) == ["s"]
        assert os.path.getsize(os.path.join(str(store), "s", "tree", "conf", "trac.ini")) > 10_000_000
    else:
        check_one_line(rc, out + err, ["trac.ini"])
        assert not os.path.exists(str(store)) or store_snapshots(str(store)) == []
    assert tree_state(env_sqlite) == before


def test_trac_ini_very_long_line(env_sqlite, tmp_path):
    """A database value of 100 kB on one line: refused in one line (it names
    no file that exists), the message stays short."""
    set_trac_database(env_sqlite, "sqlite:db/" + "y" * 100_000 + ".db")
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    line = check_one_line(rc, out + err, ["yyyy"])
    assert len(line) < 8192, len(line)
    assert not os.path.exists(str(store)) or store_snapshots(str(store)) == []
    assert tree_state(env_sqlite) == before


@pytest.mark.parametrize("setup", [_db_no_trac_tables, _db_empty_file], ids=_case_id)
def test_db_valid_sqlite_not_trac(env_sqlite, tmp_path, setup):
    """A valid SQLite file without Trac's tables, or an empty (0-byte) file,
    which SQLite takes for an empty database: tracsnap may copy it as it is
    (it is a database, and hotcopy would too) or refuse in one line naming
    it.  Decision observed: copied as it is."""
    setup(env_sqlite)
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    if rc == 0:
        c = sqlite3.connect("file:%s?mode=ro" % os.path.join(str(store), "s", "tree", "db", "trac.db"),
                            uri=True)
        want = [("other",)] if setup is _db_no_trac_tables else []
        assert c.execute("select name from sqlite_master").fetchall() == want
        c.close()
    else:
        check_one_line(rc, out + err, ["trac.db"])
    assert tree_state(env_sqlite) == before


# ---------------------------------------------------------------------------
# Snapshot names: mkdir on the mount and `tracsnap snapshot ... NAME`.

BAD_NAMES = ["", ".", "..", ".hidden", "latest", "x" * 256, "a\nb", "a\tb", "a\x7fb",
             "a/b", "\x1b[31mred", "a\rb"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_snapshot_command_bad_name(env_sqlite, tmp_path, name):
    before = tree_state(env_sqlite)
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, name])
    assert rc == 64, (rc, out + err)
    line = check_one_line(rc, out + err, ["name"])
    # the refused name never reaches the terminal raw
    assert "\x1b" not in line and "\r" not in line
    assert not os.path.exists(str(store)), "store created for a refused name: %s" % store_entries(str(store))
    assert tree_state(env_sqlite) == before


def test_mkdir_bad_names_on_mount(mnt):
    """The cases test_view.py does not already check: "", ".", "..", "a/b"
    (the kernel answers these itself), ESC and CR."""
    cases = {
        "": (errno.EEXIST, errno.ENOENT),    # mkdir("MNT/") is the root itself
        ".": (errno.EEXIST,),
        "..": (errno.EEXIST,),
        "\x1b[31mred": (errno.EINVAL,),
        "a\rb": (errno.EINVAL,),
        "x" * 300: (errno.ENAMETOOLONG, errno.EINVAL),
    }
    before = tree_state(mnt.env)
    for name, allowed in cases.items():
        try:
            os.mkdir(os.path.join(mnt.mnt, name))
        except OSError as e:
            assert e.errno in allowed, "mkdir %r: %s" % (name, errno.errorcode.get(e.errno, e.errno))
        else:
            raise AssertionError("mkdir %r succeeded" % name)
    # a path below a missing snapshot
    try:
        os.mkdir(os.path.join(mnt.mnt, "nosuch", "sub"))
    except OSError as e:
        assert e.errno == errno.ENOENT
    else:
        raise AssertionError("mkdir nosuch/sub succeeded")
    assert os.listdir(mnt.mnt) == []
    # (.mount-PID: the daemon's record of its mount point, snapshot/store/mounts.h;
    # .events: the refusals with their reasons, for tracsnap status)
    assert not [n for n in store_entries(mnt.store)
                if n not in (".lock", ".events") and not n.startswith(".mount-")]
    with open(os.path.join(mnt.store, ".events")) as f:
        events = f.read()
    assert "mkdir /?[31mred refused: snapshot name '\\x1b[31mred': contains a control character" in events
    assert "\x1b" not in events and "\r" not in events
    assert tree_state(mnt.env) == before


# ---------------------------------------------------------------------------
# Command-line usage errors: exit 64, one `tracsnap: ` line, nothing written.

CLI_USAGE = [
    ["snapshot"],
    ["snapshot", "--bogus", "ENV", "n"],
    ["snapshot", "--store"],
    ["snapshot", "--lock-timeout", "abc", "ENV", "n"],
    ["snapshot", "--lock-timeout", "5x", "ENV", "n"],
    ["snapshot", "--lock-timeout", "0", "ENV", "n"],
    ["snapshot", "--lock-timeout", "-3", "ENV", "n"],
    ["snapshot", "--lock-timeout", "99999999999999999999", "ENV", "n"],
    ["snapshot", "ENV", "n", "extra"],
    ["list"],
    ["list", "--bogus", "ENV"],
    ["list", "ENV", "extra"],
    ["verify"],
    ["verify", "--bogus", "ENV"],
    ["prune", "ENV"],
    ["prune", "--keep-last", "abc", "ENV"],
    ["prune", "--keep-last", "-1", "ENV"],
    ["prune", "--keep-daily", "", "ENV"],
    ["prune", "--keep-last", "1", "--lock-timeout", "x", "ENV"],
    ["prune", "--bogus", "ENV"],
    ["prune", "--keep-last", "1"],
    ["restore"],
    ["restore", "SNAPDIR"],
    ["restore", "--bogus", "SNAPDIR", "ENV"],
    ["restore", "SNAPDIR", "ENV", "extra"],
]


@pytest.mark.parametrize("args", CLI_USAGE, ids=lambda a: " ".join(a))
def test_cli_usage_errors(env_sqlite, tmp_path, args):
    store = tmp_path / "store"
    snapdir = tmp_path / "snapdir"
    args = [env_sqlite if a == "ENV" else str(snapdir) if a == "SNAPDIR" else a for a in args]
    if args[0] != "restore" and "--store" not in args:
        args = [args[0], "--store", str(store)] + args[1:]
    before = tree_state(env_sqlite)
    rc, out, err = run_cli(args)
    assert rc == 64, (rc, out, err)
    check_one_line(rc, out + err, [])
    assert not os.path.exists(str(store))
    assert not os.path.exists(str(snapdir))
    assert tree_state(env_sqlite) == before


def test_list_verify_prune_missing_store(env_sqlite, tmp_path):
    """Reading commands never create a store."""
    store = tmp_path / "nostore"
    before = tree_state(env_sqlite)
    for args in (["list"], ["verify"], ["prune", "--keep-last", "1"]):
        rc, out, err = run_cli([args[0], "--store", store] + args[1:] + [env_sqlite])
        check_one_line(rc, out + err, [str(store)])
        assert not os.path.exists(str(store))
    assert tree_state(env_sqlite) == before


def test_verify_unknown_snapshot(env_sqlite, tmp_path):
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    assert rc == 0, out + err
    before = store_entries(str(store))
    rc, out, err = run_cli(["verify", "--store", store, env_sqlite, "nosuch"])
    check_one_line(rc, out + err, ["nosuch"])
    rc, out, err = run_cli(["verify", "--store", store, env_sqlite, "../s"])
    assert rc != 0
    assert len(tracsnap_lines(out + err)) == 1, out + err
    assert store_entries(str(store)) == before


def test_restore_bad_snapshot_dirs(env_sqlite, tmp_path):
    """restore: nonexistent SNAPSHOT-DIR, a directory that is no snapshot,
    ENV that is no environment, ENV missing: one line each, nothing moved."""
    store = tmp_path / "store"
    rc, out, err = run_cli(["snapshot", "--store", store, env_sqlite, "s"])
    assert rc == 0, out + err
    good = os.path.join(str(store), "s", "tree")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file").write_text("x")
    notenv = tmp_path / "notenv"
    notenv.mkdir()
    (notenv / "keep").write_text("precious")
    before_env = tree_state(env_sqlite)
    before_notenv = tree_state(str(notenv))
    cases = [
        ([str(tmp_path / "nosuch"), env_sqlite], str(tmp_path / "nosuch")),
        ([str(plain), env_sqlite], str(plain)),
        ([str(plain / "file"), env_sqlite], str(plain / "file")),
        ([good, str(notenv)], str(notenv)),
        ([good, str(tmp_path / "noenv")], str(tmp_path / "noenv")),
        ([good, str(plain / "file")], str(plain / "file")),
    ]
    for args, name in cases:
        rc, out, err = run_cli(["restore"] + args)
        check_one_line(rc, out + err, [name])
    assert tree_state(env_sqlite) == before_env
    assert tree_state(str(notenv)) == before_notenv
    assert not os.path.exists(str(tmp_path / "noenv"))
    left = sorted(n for n in os.listdir(str(tmp_path))
                  if ".pre-restore-" in n or ".restore-tmp-" in n)
    left += sorted(n for n in os.listdir(os.path.dirname(env_sqlite))
                   if ".pre-restore-" in n or ".restore-tmp-" in n)
    assert left == [], left


# ---------------------------------------------------------------------------
# Mount-time option errors not already in test_errors.py / test_view.py.

@pytest.mark.parametrize("opt,name", [
    ("lock_timeout=abc", "lock_timeout"),
    ("lock_timeout=0", "lock_timeout"),
    ("lock_timeout=5x", "lock_timeout"),
    ("keep=bogus:3", "keep"),
    ("keep=last:x", "keep"),
    ("store=", "store"),
])
def test_bad_mount_options(env_sqlite, tmp_path, opt, name):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    store = tmp_path / "store"
    before = tree_state(env_sqlite)
    rc, out = run_mount(env_sqlite, mnt, store, opts=[opt])
    check_one_line(rc, out, [name])
    assert not os.path.ismount(str(mnt))
    assert not os.path.exists(str(store))
    assert tree_state(env_sqlite) == before
