"""Sealing: a snapshot appears as soon as it is complete; its hashes and the
data sync ("sealing") finish afterwards (snapshot/store/seal.h).

Checked with the real daemon on a real mount, the tracsnap commands and
ordinary tools (sha256sum, ls): what a snapshot shows right after mkdir, that
it ends up sealed (no STORE/NAME/unsealed marker, no "unsealed" manifest
line, every file hash present and right, the snapshot instant kept as the
mtime of STORE/NAME), that a snapshot left unsealed by a previous boot is
hidden and then discarded by the next writer, that one of this boot is
sealed by the daemon at start and by `tracsnap verify`, and what
`tracsnap list` shows.

Unsealed snapshots are made by editing a sealed one in the store the way the
engine writes them (manifest.h): an `unsealed<TAB><boot id>` line just
before `entries`, `-` in the sha256 column of pending regular files, and
the marker STORE/NAME/unsealed holding the boot id; the mtime of STORE/NAME
(the snapshot instant) is put back afterwards.
"""
import json
import os
import re
import time

from tshelpers import (assert_same_files, cli_snapshot, run, snapshot_names, store_snapshots, tracsnap,
                       wait_sealed)

EX_DATAERR = 65
EX_NOINPUT = 66
FAKE_BOOT_ID = "00000000-0000-0000-0000-000000000000"
SEAL_TIMEOUT = 60


def boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def unescape(field):
    """Undo ts_manifest_escape (\\\\ \\t \\n \\r \\xHH) on a manifest field."""
    out, i = bytearray(), 0
    raw = field.encode("utf-8", "surrogateescape")
    while i < len(raw):
        c = raw[i]
        if c != 0x5c:
            out.append(c)
            i += 1
            continue
        n = raw[i + 1:i + 2]
        if n == b"x":
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out += {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}[n]
            i += 2
    return out.decode("utf-8", "surrogateescape")


class Manifest:
    """STORE/NAME/manifest as header lines and entry lines (fields split)."""

    def __init__(self, store, name):
        self.path = os.path.join(store, name, "manifest")
        with open(self.path) as f:
            self.lines = f.read().split("\n")
        assert self.lines[-1] == "", "manifest does not end with LF"
        self.lines.pop()

    def header(self, key):
        return [l.split("\t", 1)[1] for l in self.lines if l.split("\t", 1)[0] == key]

    def files(self):
        """{path: sha256 column} of the 'f' entries."""
        out = {}
        for l in self.lines:
            f = l.split("\t")
            if f[0] == "f":
                assert len(f) == 12, l   # version 2 (snapshot/store/manifest.h)
                out[unescape(f[-1])] = f[6]
        return out

    def instant_ns(self):
        (t,) = self.header("time")
        sec, ns = t.split(".")
        assert len(ns) == 9, t
        return int(sec) * 10**9 + int(ns)


def sha256sum(tree, paths):
    """{path: hex} by sha256sum(1), run in tree."""
    paths = sorted(paths)
    p = run(["sha256sum", "--"] + paths, cwd=tree)
    out = {}
    for line, path in zip(p.stdout.splitlines(), paths):
        digest, name = line.split(None, 1)
        assert name.lstrip("*") == path, (line, path)
        out[path] = digest
    assert len(out) == len(paths)
    return out


def fake_unsealed(store, name, bid, pending="all"):
    """Turn sealed snapshot NAME into an unsealed one of boot bid, as the
    engine leaves it before sealing.  pending: "all", "some" (every other
    regular file) or "none" 'f' entries get '-' for their sha256.  Returns
    {path: original sha256} of the entries made pending."""
    d = os.path.join(store, name)
    st = os.lstat(d)
    m = Manifest(store, name)
    assert not m.header("unsealed")
    out, made, k = [], {}, 0
    for l in m.lines:
        f = l.split("\t")
        if f[0] == "entries":
            out.append("unsealed\t" + bid)
        if f[0] == "f":
            if pending == "all" or (pending == "some" and k % 2 == 0):
                made[unescape(f[-1])] = f[6]
                f[6] = "-"
                l = "\t".join(f)
            k += 1
        out.append(l)
    assert any(l.startswith("unsealed\t") for l in out)
    with open(m.path, "r+") as fh:   # same inode, mode and directory entry
        fh.write("\n".join(out) + "\n")
        fh.truncate()
    with open(os.path.join(d, "unsealed"), "w") as fh:
        fh.write(bid + "\n")
    os.chmod(os.path.join(d, "unsealed"), 0o600)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.lstat(d).st_mtime_ns == st.st_mtime_ns
    return made


def assert_sealed(store, name, want=None):
    """No marker, no unsealed line, every 'f' hash present and equal to
    sha256sum of the store file (and to want[path] where given); the mtime
    of STORE/NAME is still the manifest's snapshot instant."""
    d = os.path.join(store, name)
    assert not os.path.lexists(os.path.join(d, "unsealed")), os.listdir(d)
    m = Manifest(store, name)
    assert m.header("unsealed") == [], m.lines[:6]
    files = m.files()
    assert files and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in files.values()), files
    got = sha256sum(os.path.join(d, "tree"), files)
    assert got == files
    for path, h in (want or {}).items():
        assert files[path] == h, path
    assert os.lstat(d).st_mtime_ns == m.instant_ns()
    # Nothing but the snapshot itself is left in its directory.
    assert sorted(os.listdir(d)) == ["manifest", "tree"]


def wait_log(m, text, timeout=SEAL_TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in m.log_text():
            return
        time.sleep(0.05)
    raise AssertionError("%r not in the daemon log within %ds:\n%s" % (text, timeout, m.log_text()))


def list_text(env, store):
    """{name: STATE column} of `tracsnap list`."""
    p = tracsnap("list", "--store", store, env)
    lines = p.stdout.splitlines()
    if not lines:
        return {}
    assert lines[0].split() == ["TIME", "SIZE", "FILES", "SHARED", "STATE", "NAME"]
    return {l.split(None, 5)[5]: l.split()[4] for l in lines[1:]}


def list_json(env, store):
    p = tracsnap("list", "--store", store, "--json", env)
    return {d["name"]: d for d in json.loads(p.stdout)}


# ---------------------------------------------------------------- the mount

def test_mkdir_visible_then_sealed(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    # Complete as soon as mkdir returns, sealed or not.
    assert_same_files(m.env, m.path("s"))
    assert os.path.isfile(m.path("s", "db", "trac.db"))
    # Then, without anything else happening, sealed.
    wait_sealed(m.store, "s")
    assert_sealed(m.store, "s")
    wait_log(m, "snapshot s: sealed:")
    assert_same_files(m.env, m.path("s"))
    assert list_text(m.env, m.store) == {"s": "sealed"}
    assert tracsnap("verify", "--store", m.store, m.env, check=False).returncode == 0


def test_daemon_seals_leftover_of_this_boot(env_sqlite, tmp_path, mount_factory):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "left")
    before = Manifest(store, "left").files()
    made = fake_unsealed(store, "left", boot_id(), pending="some")
    assert made and len(made) < len(before)
    assert list_text(env_sqlite, store) == {"left": "sealing"}

    m = mount_factory(env_sqlite, store=store)
    assert snapshot_names(m.mnt) == ["left"]
    wait_sealed(store, "left")
    assert_sealed(store, "left", want=before)
    wait_log(m, "snapshot left: sealed:")
    assert "discarded" not in m.log_text()
    assert list_text(env_sqlite, store) == {"left": "sealed"}


def test_daemon_start_discards_lost_snapshot(env_sqlite, tmp_path, mount_factory):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "s1")
    cli_snapshot(env_sqlite, store, "s2")
    fake_unsealed(store, "s2", FAKE_BOOT_ID, pending="some")

    m = mount_factory(env_sqlite, store=store)
    m.expect_log(r"^tracsnap: warning: snapshot s2: discarded: the machine restarted")
    assert snapshot_names(m.mnt) == ["s1"]
    assert not os.path.lexists(m.path("s2"))
    assert os.readlink(m.path("latest")).rstrip("/").split("/")[-1] == "s1"
    assert store_snapshots(store) == ["s1"]
    log = m.log_text()
    assert "snapshot s2: discarded" in log, log
    assert "s1: discarded" not in log
    # The survivor is whole, and a new snapshot next to it too.
    os.mkdir(m.path("s3"))
    wait_sealed(store, "s3")
    m.stop()
    p = tracsnap("verify", "--store", store, env_sqlite, check=False)
    assert (p.returncode, p.stderr) == (0, "")
    assert_sealed(store, "s1")
    assert_sealed(store, "s3")
    assert store_snapshots(store) == ["s1", "s3"]


# ---------------------------------------------------------------- the commands

def test_cli_snapshot_returns_sealed(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    p = cli_snapshot(env_sqlite, store, "c1")
    assert re.search(r", total \d+ ms \(visible after \d+ ms\)$", p.stdout.rstrip("\n")), p.stdout
    assert len(p.stdout.splitlines()) == 1
    assert_sealed(store, "c1")
    p = cli_snapshot(env_sqlite, store, "c2")
    assert p.stdout.rstrip("\n").endswith("ms)") and "(visible after " in p.stdout
    assert_sealed(store, "c2")
    assert list_text(env_sqlite, store) == {"c1": "sealed", "c2": "sealed"}


def test_cli_snapshot_seals_other_of_this_boot(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "old")
    before = Manifest(store, "old").files()
    fake_unsealed(store, "old", boot_id(), pending="all")
    cli_snapshot(env_sqlite, store, "new")
    assert_sealed(store, "old", want=before)
    assert_sealed(store, "new")


def test_lost_snapshot_hidden_then_discarded_by_cli(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "S1")
    cli_snapshot(env_sqlite, store, "S2")
    fake_unsealed(store, "S2", FAKE_BOOT_ID, pending="some")

    # Readers hide it at once, and leave it where it is.
    assert list_text(env_sqlite, store) == {"S1": "sealed"}
    assert list(list_json(env_sqlite, store)) == ["S1"]
    p = tracsnap("verify", "--store", store, env_sqlite, check=False)
    assert (p.returncode, p.stderr) == (0, "")
    p = tracsnap("verify", "--store", store, env_sqlite, "S2", check=False)
    assert p.returncode == EX_NOINPUT, p.stderr
    assert p.stderr == "tracsnap: snapshot S2: no such snapshot\n"
    assert sorted(store_snapshots(store)) == ["S1", "S2"]
    assert os.path.exists(os.path.join(store, "S2", "unsealed"))

    # The next writer removes it, with a warning.
    p = cli_snapshot(env_sqlite, store, "S3")
    assert "snapshot S2: discarded" in p.stderr, p.stderr
    assert "S1: discarded" not in p.stderr
    assert store_snapshots(store) == ["S1", "S3"]
    assert not [n for n in os.listdir(store) if "S2" in n]   # no .del-/.tmp- left either
    assert list_text(env_sqlite, store) == {"S1": "sealed", "S3": "sealed"}
    p = tracsnap("verify", "--store", store, env_sqlite, check=False)
    assert (p.returncode, p.stderr) == (0, "")
    assert re.fullmatch(r"verified 2 snapshots: .*, no problem\n", p.stdout), p.stdout
    assert_sealed(store, "S1")
    assert_sealed(store, "S3")


def test_list_state_column_and_json(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "a")
    cli_snapshot(env_sqlite, store, "b")
    cli_snapshot(env_sqlite, store, "c")
    fake_unsealed(store, "b", boot_id(), pending="some")
    assert list_text(env_sqlite, store) == {"a": "sealed", "b": "sealing", "c": "sealed"}
    p = tracsnap("list", "--store", store, env_sqlite)
    header = p.stdout.splitlines()[0]
    assert header.split() == ["TIME", "SIZE", "FILES", "SHARED", "STATE", "NAME"]
    data = list_json(env_sqlite, store)
    assert list(data) == ["a", "b", "c"]
    assert [data[n]["sealed"] for n in ("a", "b", "c")] == [True, False, True]
    for d in data.values():
        assert set(d) >= {"name", "time", "unix_time", "size", "files", "shared_bytes", "sealed"}
        assert d["files"] > 5 and d["size"] > 0   # the summary works unsealed too
    assert data["b"]["files"] == data["a"]["files"]
    assert data["b"]["unix_time"] == int(os.stat(os.path.join(store, "b")).st_mtime)
    # list is a reader: it changed nothing.
    assert os.path.exists(os.path.join(store, "b", "unsealed"))
    # Once sealed, the state follows.
    p = tracsnap("verify", "--store", store, env_sqlite, "b", check=False)
    assert p.returncode == 0, p.stderr
    assert list_text(env_sqlite, store) == {"a": "sealed", "b": "sealed", "c": "sealed"}
    assert all(d["sealed"] is True for d in list_json(env_sqlite, store).values())


def test_verify_seals_unsealed_of_this_boot(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "v1")
    cli_snapshot(env_sqlite, store, "v2")
    before = Manifest(store, "v2").files()
    fake_unsealed(store, "v2", boot_id(), pending="all")
    p = tracsnap("verify", "--store", store, env_sqlite, check=False)
    assert (p.returncode, p.stderr) == (0, "")
    assert re.fullmatch(r"verified 2 snapshots: .*, no problem\n", p.stdout), p.stdout
    assert_sealed(store, "v2", want=before)
    assert_sealed(store, "v1")


def test_verify_named_unsealed_then_damage_is_found(env_sqlite, tmp_path):
    """Sealed by verify, the hashes are real: a byte flipped afterwards in
    the store shows as a content difference."""
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "only")
    fake_unsealed(store, "only", boot_id(), pending="all")
    p = tracsnap("verify", "--store", store, env_sqlite, "only", check=False)
    assert (p.returncode, p.stderr) == (0, "")
    path = os.path.join(store, "only", "tree", "VERSION")
    st = os.lstat(path)
    with open(path, "r+b") as f:
        c = f.read(1)
        f.seek(0)
        f.write(bytes([c[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    p = tracsnap("verify", "--store", store, env_sqlite, "only", check=False)
    assert p.returncode == EX_DATAERR
    assert p.stderr.startswith("tracsnap: only/VERSION: content differs"), p.stderr


def test_verify_unsealed_with_truncated_file(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "good")
    cli_snapshot(env_sqlite, store, "bad")
    fake_unsealed(store, "bad", boot_id(), pending="all")
    rel = "conf/trac.ini"
    path = os.path.join(store, "bad", "tree", rel)
    # Its own inode (the store shares unchanged files between snapshots),
    # shorter, with its metadata otherwise kept.
    st = os.lstat(path)
    with open(path, "rb") as f:
        data = f.read()
    d = os.path.dirname(path)
    dst = os.lstat(d)
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, st.st_mode & 0o7777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(d, ns=(dst.st_atime_ns, dst.st_mtime_ns))
    assert os.lstat(os.path.join(store, "good", "tree", rel)).st_size == len(data)

    p = tracsnap("verify", "--store", store, env_sqlite, "bad", check=False)
    assert p.returncode == EX_DATAERR, (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("tracsnap: ") and rel in lines[0] and "bad" in lines[0], lines
    # The one summary line: the snapshot the seal refused is a problem.
    assert re.fullmatch(r"verified 0 snapshots: .*, 1 problem in bad\n", p.stdout), p.stdout
    # Not sealed over the damage; the other snapshot is unaffected.
    assert os.path.exists(os.path.join(store, "bad", "unsealed"))
    assert list_text(env_sqlite, store) == {"good": "sealed", "bad": "sealing"}
    p = tracsnap("verify", "--store", store, env_sqlite, "good", check=False)
    assert (p.returncode, p.stderr) == (0, "")
    # All of them: the damaged one fails the run, the good one is still checked.
    p = tracsnap("verify", "--store", store, env_sqlite, check=False)
    assert p.returncode == EX_DATAERR
    assert len(p.stderr.splitlines()) == 1 and rel in p.stderr, p.stderr


def test_verify_pending_hashes_without_marker(env_sqlite, tmp_path):
    """A manifest with pending hashes but no marker (not a state the engine
    leaves; e.g. the marker removed by hand): nothing to seal by, so verify
    checks all but the content of those files and says so in one line."""
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "p")
    made = fake_unsealed(store, "p", boot_id(), pending="some")
    d = os.path.join(store, "p")
    st = os.lstat(d)
    os.unlink(os.path.join(d, "unsealed"))
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
    p = tracsnap("verify", "--store", store, env_sqlite, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == ["tracsnap: p: content of %d files not checked: not sealed "
                                     "(hashes pending)" % len(made)], p.stderr
    assert Manifest(store, "p").header("unsealed") == [boot_id()]
