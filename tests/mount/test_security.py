"""Security (issue 6): with allow_other, another user reads in a snapshot
exactly what it could read in ENV and cannot manage snapshots; the store is
0700; no password in any command line, log line or error message.

Already in test_view.py and not repeated here: test_permissions_enforced_for_others
(nobody cannot cat the 0600 trac.ini, can cat trac.ini.sample),
test_non_owner_cannot_manage_snapshots (nobody: mkdir/rmdir/mv EACCES),
test_manage_group_*; in test_errors.py: mysql and unreachable postgres
refusals without the password in the mount's output.
"""
import os
import stat
import subprocess
import threading
import time

import pytest

from tshelpers import (as_nobody, extract_fixture, run_refused_mount, set_trac_database, start_public_mount,
                       store_snapshots, tracsnap_bin, tree_state)

TIMEOUT = 20


def _public_env(public_dir):
    """The fixture env in a directory every user can reach, with a 0700
    directory, a 0600 file in a 0755 one and a 0644 file added."""
    env = extract_fixture("trac-env-sqlite", os.path.join(public_dir, "envs"))
    os.chmod(os.path.join(public_dir, "envs"), 0o755)
    os.chmod(env, 0o755)
    priv = os.path.join(env, "private")
    os.mkdir(priv)
    with open(os.path.join(priv, "secret.txt"), "w") as f:
        f.write("private data\n")
    os.chmod(os.path.join(priv, "secret.txt"), 0o644)
    os.chmod(priv, 0o700)
    with open(os.path.join(env, "htdocs", "public.txt"), "w") as f:
        f.write("public data\n")
    os.chmod(os.path.join(env, "htdocs", "public.txt"), 0o644)
    with open(os.path.join(env, "htdocs", "mine.txt"), "w") as f:
        f.write("owner only\n")
    os.chmod(os.path.join(env, "htdocs", "mine.txt"), 0o600)
    assert stat.S_IMODE(os.stat(os.path.join(env, "conf", "trac.ini")).st_mode) == 0o600
    return env


# What nobody tries, relative to the root of ENV or of a snapshot.
PROBES = [
    ["cat", "htdocs/public.txt"],
    ["cat", "htdocs/mine.txt"],
    ["cat", "conf/trac.ini"],
    ["cat", "conf/trac.ini.sample"],
    ["cat", "VERSION"],
    ["ls", "private"],
    ["cat", "private/secret.txt"],
    ["stat", "-c", "%a %u %g %s", "private/secret.txt"],
    ["ls", "conf"],
    ["stat", "-c", "%a %u %g %F", "conf/trac.ini"],
    ["head", "-c", "16", "db/trac.db"],
    ["test", "-r", "conf/trac.ini"],
    ["test", "-w", "htdocs/public.txt"],
]


def _probe(root, args):
    p = as_nobody(args, cwd=root, timeout=TIMEOUT)
    denied = "Permission denied" in p.stderr
    return (p.returncode, p.stdout, denied)


def test_nobody_reads_exactly_what_env_allows(public_dir, mount_factory, tmp_path):
    env = _public_env(public_dir)
    m = start_public_mount(mount_factory, public_dir, tmp_path, env)
    os.mkdir(m.path("s"))
    snap = m.path("s")
    differ = []
    for args in PROBES:
        in_env = _probe(env, args)
        in_snap = _probe(snap, args)
        if in_env != in_snap:
            differ.append("%s: env %r, snapshot %r" % (" ".join(args), in_env, in_snap))
    assert not differ, "\n".join(differ)
    # and the protected things really are protected (the comparison above
    # would also pass if both leaked)
    assert _probe(snap, ["cat", "conf/trac.ini"])[2]
    assert _probe(snap, ["ls", "private"])[2]
    assert _probe(snap, ["cat", "htdocs/mine.txt"])[2]
    assert _probe(snap, ["cat", "htdocs/public.txt"])[:2] == (0, "public data\n")
    # through `latest` too
    p = as_nobody(["cat", m.path("latest", "conf", "trac.ini")])
    assert p.returncode != 0 and "[trac]" not in p.stdout


def test_nobody_cannot_change_anything(public_dir, mount_factory, tmp_path):
    """Beyond test_view.py's mkdir/rmdir/mv at the root: nobody cannot
    remove or replace `latest`, cannot write inside a snapshot, and cannot
    reach the store behind the mount."""
    env = _public_env(public_dir)
    m = start_public_mount(mount_factory, public_dir, tmp_path, env)
    os.mkdir(m.path("s"))
    before_env = tree_state(env)
    tries = [
        ["rm", "-f", m.path("latest")],
        ["ln", "-sfn", "s", m.path("latest")],
        ["mv", "-T", m.path("latest"), m.path("other")],
        ["rmdir", m.path("latest")],
        ["rm", "-rf", m.path("s")],
        ["touch", m.path("s", "htdocs", "new")],
        ["sh", "-c", "echo x >> " + m.path("s", "htdocs", "public.txt")],
        ["mkdir", m.path("s", "htdocs", "d")],
        ["chmod", "0777", m.path("s", "htdocs", "public.txt")],
        ["ls", m.store],
        ["touch", os.path.join(m.store, "x")],
    ]
    ok = [t for t in tries if as_nobody(t, timeout=TIMEOUT).returncode == 0]
    assert not ok, ok
    assert sorted(os.listdir(m.mnt)) == ["latest", "s"]
    assert os.readlink(m.path("latest")) == "s"
    assert store_snapshots(m.store) == ["s"]
    assert open(m.path("s", "htdocs", "public.txt")).read() == "public data\n"
    assert tree_state(env) == before_env


def test_nobody_cannot_use_commands_on_the_store(public_dir, mount_factory, tmp_path):
    """The commands run as nobody against root's 0700 store are refused in
    one line (permission), and change nothing."""
    env = _public_env(public_dir)
    # let nobody read the whole environment, so that only the store stops it
    os.chmod(os.path.join(env, "conf", "trac.ini"), 0o644)
    os.chmod(os.path.join(env, "private"), 0o755)
    store = os.path.join(public_dir, "store")
    p = subprocess.run([tracsnap_bin(), "snapshot", "--store", store, env, "root-made"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    before = sorted(os.listdir(store))
    for args in (["snapshot", "--store", store, env, "by-nobody"],
                 ["list", "--store", store, env],
                 ["verify", "--store", store, env],
                 ["prune", "--store", store, "--keep-last", "1", env]):
        p = as_nobody([tracsnap_bin()] + args, timeout=TIMEOUT)
        assert p.returncode != 0, (args, p.stdout, p.stderr)
        lines = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("tracsnap: ")]
        assert len(lines) == 1, (args, p.stdout + p.stderr)
        assert store in lines[0] and "Permission denied" in lines[0], lines[0]
    assert sorted(os.listdir(store)) == before


@pytest.mark.parametrize("how", ["mount", "command", "command-umask-0"])
def test_store_is_0700(env_sqlite, tmp_path, mount_factory, how):
    store = str(tmp_path / "sub" / "store")
    os.mkdir(str(tmp_path / "sub"))
    if how == "mount":
        m = mount_factory(env_sqlite, store=store)
        os.mkdir(m.path("a"))
    else:
        pre = (lambda: os.umask(0)) if how == "command-umask-0" else None
        p = subprocess.run([tracsnap_bin(), "snapshot", "--store", store, env_sqlite, "a"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60, preexec_fn=pre)
        assert p.returncode == 0, p.stderr
    st = os.stat(store)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert st.st_uid == os.getuid()
    # nobody cannot list it
    os.chmod(str(tmp_path), 0o755)
    os.chmod(str(tmp_path / "sub"), 0o755)
    try:
        p = as_nobody(["ls", store], timeout=TIMEOUT)
        assert p.returncode != 0 and "Permission denied" in p.stderr, (p.returncode, p.stderr)
        p = as_nobody(["cat", os.path.join(store, "a", "tree", "conf", "trac.ini")], timeout=TIMEOUT)
        assert p.returncode != 0 and "[trac]" not in p.stdout
    finally:
        os.chmod(str(tmp_path), 0o700)


def test_existing_store_made_0700(env_sqlite, tmp_path):
    """An administrator's pre-made store with a looser mode is tightened to
    0700: the manifests list every file name and a SHA-256 of trac.ini."""
    store = str(tmp_path / "store")
    os.mkdir(store)
    os.chmod(store, 0o755)
    p = subprocess.run([tracsnap_bin(), "snapshot", "--store", store, env_sqlite, "a"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(store, "a", "manifest")).st_mode) & 0o077 == 0


@pytest.mark.parametrize("where", ["store", "parent"])
def test_store_others_could_arrange_is_refused(env_sqlite, tmp_path, where):
    """A store, or a directory above it, that another account owns or may write
    is refused (doc/security.md): that account could have planted links in it
    or swap it between two runs.  Nothing is created, the store is untouched."""
    parent = tmp_path / "p"
    store = parent / "store"
    store.mkdir(parents=True)
    (store / "planted").write_text("x")
    bad = store if where == "store" else parent
    os.chmod(str(bad), 0o777)
    before = sorted(os.listdir(str(store)))
    p = subprocess.run([tracsnap_bin(), "snapshot", "--store", str(store), env_sqlite, "a"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 77, p.stderr
    assert p.stderr.strip() == "tracsnap: store %s: %s is writable by group or others (mode 0777)" % (store, bad)
    assert sorted(os.listdir(str(store))) == before
    os.chmod(str(bad), 0o755)
    os.chown(str(bad), 65534, 65534)
    p = subprocess.run([tracsnap_bin(), "snapshot", "--store", str(store), env_sqlite, "a"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    why = "owned by uid 65534, neither root nor uid 0"
    assert p.returncode == 77 and p.stderr.strip() == "tracsnap: store %s: %s is %s" % (store, bad, why)
    assert sorted(os.listdir(str(store))) == before


# ---------------------------------------------------------------- passwords

SECRET = "S3cretPW"

# (URI, which user-visible failure we expect): unreachable server on port 1,
# or malformed values that still carry the password.
SECRET_URIS = [
    "postgres://u:%s@127.0.0.1:1/db" % SECRET,
    "postgres://u:%s@127.0.0.1:1/db?schema=trac" % SECRET,
    "postgres://u:%s@/db?host=/nonexistent/socket/dir" % SECRET,
    "postgres://u:%s%%40x@127.0.0.1:1/db" % SECRET,          # URL-encoded '@' in it
    "postgres://u:%s@127.0.0.1:abc/db" % SECRET,             # bad port
    "postgres://u:%s@127.0.0.1:1/db?schema=" % SECRET,       # empty schema
    "postgres://u:%s@127.0.0.1:1" % SECRET,                  # no database
    "postgres://u@127.0.0.1:1/db?password=%s" % SECRET,      # libpq-style parameter
    "mysql://u:%s@127.0.0.1:1/db" % SECRET,
    "postgres://u:%s@[::1:1/db" % SECRET,                    # broken IPv6 literal
    "postgres://u:%s/x@127.0.0.1:1/db" % SECRET,             # raw '/' in the password
    "postgres://u:%s?x@h:1/db" % SECRET,                     # raw '?' in the password
    "postgres://u:%s@@127.0.0.1:1/db" % SECRET,              # raw '@' after it
    "postgres://u:%s@127.0.0.1:1/db?schema=a&password=%s" % (SECRET, SECRET),
]


class CmdlineWatcher:
    """Scan /proc/*/cmdline and /proc/*/environ (of our own processes) while a
    test runs, and record any that contains the secret."""

    def __init__(self, secret):
        self.secret = secret.encode()
        self.hits = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        me = os.getpid()
        while not self.stop_ev.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == me:
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        cmd = f.read()
                except OSError:
                    continue
                if self.secret in cmd:
                    self.hits.append(cmd)
            time.sleep(0.005)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        self.t.join(5)


@pytest.mark.parametrize("uri", SECRET_URIS)
def test_password_never_shown(env_sqlite, tmp_path, uri):
    set_trac_database(env_sqlite, uri)
    before = tree_state(env_sqlite)
    store = str(tmp_path / "store")
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    outputs = {}
    with CmdlineWatcher(SECRET) as w:
        # the daemon in the foreground: its output is its log
        rc, out, _ = run_refused_mount(env_sqlite, mnt, store, timeout=TIMEOUT)
        outputs["mount -f"] = (rc, out)
        # the daemon in the background (its early errors still go to stderr)
        p = subprocess.run([tracsnap_bin(), "-o", "store=" + store, env_sqlite, mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           text=True, errors="replace", timeout=TIMEOUT)
        outputs["mount"] = (p.returncode, p.stdout)
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt])
        for args in (["snapshot", "--store", store, env_sqlite, "s"],
                     ["snapshot", "--lock-timeout", "1", "--store", store, env_sqlite],
                     ["list", "--store", store, env_sqlite],
                     ["list", "--json", "--store", store, env_sqlite],
                     ["verify", "--store", store, env_sqlite],
                     ["prune", "--keep-last", "1", "--store", store, env_sqlite]):
            p = subprocess.run([tracsnap_bin()] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               text=True, errors="replace", timeout=TIMEOUT)
            outputs[" ".join(args[:2])] = (p.returncode, p.stdout)
    leaks = {k: v for k, v in outputs.items() if SECRET in v[1]}
    assert not leaks, leaks
    assert not w.hits, w.hits
    for k, (rc, out) in outputs.items():
        lines = [l for l in out.splitlines() if l.startswith("tracsnap: ")]
        if k.split()[0] in ("list", "verify", "prune") and rc == 0:
            # these never connect to the database: an empty store (left by
            # the failed `snapshot`, see below) is simply listed/checked
            assert not lines, (k, out)
            continue
        assert rc != 0, (k, out)
        assert len(lines) == 1, (k, out)
    assert not os.path.ismount(mnt)
    # `tracsnap snapshot` opens (creates) its store before connecting to the
    # database, so an empty 0700 store may be left; never a snapshot.
    assert not os.path.exists(store) or store_snapshots(store) == []
    assert not os.path.exists(store) or stat.S_IMODE(os.stat(store).st_mode) == 0o700
    assert tree_state(env_sqlite) == before


def test_password_not_in_snapshot_view_of_others(public_dir, mount_factory, tmp_path):
    """A password in trac.ini stays in the 0600 trac.ini of every snapshot:
    nobody cannot read it through the mount, nor find it in a file it can
    read (the manifest, the log) or in an extended attribute."""
    env = _public_env(public_dir)
    with open(os.path.join(env, "conf", "trac.ini"), "a") as f:
        f.write("\n[notification]\nsmtp_password = %s\n" % SECRET)
    m = start_public_mount(mount_factory, public_dir, tmp_path, env)
    os.mkdir(m.path("s"))
    p = as_nobody(["grep", "-r", "-l", "-s", SECRET, m.path("s")], timeout=60)
    assert p.returncode != 0 and SECRET not in p.stdout, p.stdout
    p = as_nobody(["getfattr", "-R", "-d", "-m", "-", m.path("s")], timeout=60)
    assert SECRET not in p.stdout
    assert SECRET not in m.log_text()
    # root sees it: the snapshot is complete
    assert SECRET in open(m.path("s", "conf", "trac.ini")).read()
