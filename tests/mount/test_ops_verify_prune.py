"""tracsnap verify, prune, list --json and the keep= mount option.

verify: each kind of damage to a stored snapshot (a flipped byte, a missing
file, an extra file, a changed mode, a changed owner) is reported on one line
naming the snapshot, the path and the kind, with exit status 65 (EX_DATAERR);
an undamaged store verifies with status 0 and one summary line on stdout.

prune: snapshots get a synthetic history by setting the mtime of STORE/NAME
(the snapshot instant, doc/design.md), and the exact set that remains is
checked for --dry-run and a real run.
"""
import json
import os
import re
import shutil
import time

import pytest

from tshelpers import cli_snapshot, snapshot_names, store_snapshots, tracsnap

EX_USAGE = 64
EX_DATAERR = 65


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "store")


def privatize(path):
    """Give path its own inode, so that damaging it leaves the other
    snapshots sharing it intact; keep its metadata."""
    st = os.lstat(path)
    tmp = path + ".private"
    with keep_dir_mtime(path):
        shutil.copy2(path, tmp)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)   # chown may clear set-id bits
        os.replace(tmp, path)


def keep_dir_mtime(path):
    """Context: restore the mtime of path's directory after a change in it, so
    that only the intended difference is left."""
    class K:
        def __enter__(self):
            self.d = os.path.dirname(path)
            self.st = os.lstat(self.d)

        def __exit__(self, *a):
            os.utime(self.d, ns=(self.st.st_atime_ns, self.st.st_mtime_ns))
    return K()


def verify(env, store, *names):
    return tracsnap("verify", "--store", store, env, *names, check=False)


def regular_files(tree):
    out = []
    for dirpath, _, files in os.walk(tree):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
                out.append(os.path.relpath(p, tree))
    return sorted(out)


def test_verify_clean_store(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "a")
    cli_snapshot(env_sqlite, store, "b")
    p = verify(env_sqlite, store)
    assert (p.returncode, p.stderr) == (0, "")
    assert re.fullmatch(r"verified 2 snapshots: .*, no problem\n", p.stdout), p.stdout
    p = verify(env_sqlite, store, "b")
    assert (p.returncode, p.stderr) == (0, "")
    assert re.fullmatch(r"verified 1 snapshot: .*, no problem\n", p.stdout), p.stdout


def test_verify_flipped_byte(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "a")
    tree = cli_snapshot(env_sqlite, store, "b").tree
    rel = "VERSION"
    path = os.path.join(tree, rel)
    privatize(path)
    st = os.lstat(path)
    with open(path, "r+b") as f:
        f.seek(3)
        c = f.read(1)
        f.seek(3)
        f.write(bytes([c[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(path) == st.st_size
    p = verify(env_sqlite, store)
    assert p.returncode == EX_DATAERR, p.stderr
    lines = p.stderr.splitlines()
    assert lines == ["tracsnap: b/VERSION: content differs" + lines[0].split("content differs", 1)[1]]
    assert re.fullmatch(r"verified 2 snapshots: .*, 1 problem in b\n", p.stdout), p.stdout
    # The other snapshot, which shared the file before, is still clean.
    assert verify(env_sqlite, store, "a").returncode == 0


def test_verify_missing_extra_mode_owner(env_sqlite, store):
    tree = cli_snapshot(env_sqlite, store, "only").tree
    files = regular_files(tree)
    gone, moded, owned = files[0], files[1], files[2]
    with keep_dir_mtime(os.path.join(tree, gone)):
        os.unlink(os.path.join(tree, gone))
    extra = os.path.join(tree, "conf", "extra.txt")
    with keep_dir_mtime(extra):
        with open(extra, "w") as f:
            f.write("not from the environment\n")
    mode = os.lstat(os.path.join(tree, moded)).st_mode & 0o7777
    os.chmod(os.path.join(tree, moded), mode ^ 0o044)
    os.chown(os.path.join(tree, owned), 1234, 1234)

    p = verify(env_sqlite, store)
    assert p.returncode == EX_DATAERR
    lines = sorted(p.stderr.splitlines())
    want = sorted([
        "tracsnap: only/%s: missing: a regular file in the manifest is not in the tree" % gone,
        "tracsnap: only/conf/extra.txt: extra: a regular file not in the manifest",
        "tracsnap: only/%s: mode %04o, manifest says %04o" % (moded, mode ^ 0o044, mode),
        "tracsnap: only/%s: owner 1234:1234, manifest says %d:%d"
        % (owned, os.lstat(os.path.join(env_sqlite, owned)).st_uid,
           os.lstat(os.path.join(env_sqlite, owned)).st_gid),
    ])
    assert lines == want, p.stderr


def test_verify_each_damage_alone(env_sqlite, store):
    """Each kind on its own snapshot, so one line each, exit 65 each."""
    kinds = {}
    # All snapshots first: a new snapshot shares unchanged files with the
    # previous one's store copy, so damage done earlier would be inherited.
    trees = {k: cli_snapshot(env_sqlite, store, k).tree for k in ("flip", "missing", "extra", "mode", "owner")}
    for kind, tree in trees.items():
        rel = "conf/trac.ini"
        path = os.path.join(tree, rel)
        if kind == "flip":
            privatize(path)
            st = os.lstat(path)
            with open(path, "r+b") as f:
                b = f.read(1)
                f.seek(0)
                f.write(bytes([b[0] ^ 0x80]))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif kind == "missing":
            with keep_dir_mtime(path):
                privatize(path)
                os.unlink(path)
        elif kind == "extra":
            rel = "conf/new.ini"
            with keep_dir_mtime(path):
                open(os.path.join(tree, rel), "w").close()
        elif kind == "mode":
            privatize(path)
            os.chmod(path, 0o640)
        elif kind == "owner":
            privatize(path)
            os.chown(path, 1234, 1234)
        kinds[kind] = rel
    for kind, rel in kinds.items():
        p = verify(env_sqlite, store, kind)
        assert p.returncode == EX_DATAERR, (kind, p.stderr)
        lines = p.stderr.splitlines()
        assert len(lines) == 1, (kind, p.stderr)
        word = {"flip": "content", "missing": "missing", "extra": "extra", "mode": "mode",
                "owner": "owner"}[kind]
        assert lines[0].startswith("tracsnap: %s/%s: %s" % (kind, rel, word)), (kind, lines)
    # Together: every line, still 65.
    p = verify(env_sqlite, store)
    assert p.returncode == EX_DATAERR
    assert len(p.stderr.splitlines()) == 5, p.stderr


def test_verify_unknown_snapshot(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "a")
    p = verify(env_sqlite, store, "nope")
    assert p.returncode == 66
    assert p.stderr == "tracsnap: snapshot nope: no such snapshot\n"


def test_verify_no_progress_without_tty(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "a")
    p = verify(env_sqlite, store)
    assert "\r" not in p.stderr and "verify" not in p.stderr


# --- prune ------------------------------------------------------------------

HOUR = 3600
DAY = 24 * HOUR


def make_history(env, store, times):
    """One snapshot per time (newest last); names s00, s01, ...; the store's
    order follows the times set here."""
    names = []
    for i, t in enumerate(times):
        n = "s%02d" % i
        cli_snapshot(env, store, n)
        os.utime(os.path.join(store, n), (t, t))
        names.append(n)
    return names


def prune(env, store, *args):
    return tracsnap("prune", "--store", store, *args, env, check=False)


def test_prune_refuses_without_keep(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "a")
    p = prune(env_sqlite, store)
    assert p.returncode == EX_USAGE
    assert len(p.stderr.splitlines()) == 1 and "no --keep-" in p.stderr
    p = prune(env_sqlite, store, "--dry-run")
    assert p.returncode == EX_USAGE
    p = prune(env_sqlite, store, "--keep-daily", "x")
    assert p.returncode == EX_USAGE and "--keep-daily x" in p.stderr
    assert store_snapshots(store) == ["a"]


def test_prune_history(env_sqlite, store, monkeypatch):
    # Local time decides the periods: run the command in UTC.
    monkeypatch.setenv("TZ", "UTC")
    # Monday 2026-03-02 00:00 UTC.
    base = 1772409600
    assert time.gmtime(base)[:3] == (2026, 3, 2) and time.gmtime(base).tm_wday == 0
    times = [
        base - 40 * DAY,             # s00 2026-01-21 (Wed), January
        base - 10 * DAY + 5 * HOUR,  # s01 2026-02-20 05:00 (Fri)
        base - 3 * DAY + 1 * HOUR,   # s02 2026-02-27 01:00 (Fri)
        base - 3 * DAY + 2 * HOUR,   # s03 2026-02-27 02:00
        base - 1 * DAY + 1 * HOUR,   # s04 2026-03-01 01:00 (Sun)
        base - 1 * DAY + 1 * HOUR + 600,   # s05 same hour
        base + 1 * HOUR,             # s06 2026-03-02 01:00 (Mon)
        base + 2 * HOUR,             # s07 2026-03-02 02:00
    ]
    names = make_history(env_sqlite, store, times)
    p = tracsnap("list", "--store", store, "--json", env_sqlite, env=dict(os.environ, TZ="UTC"))
    assert [s["name"] for s in json.loads(p.stdout)] == names

    # daily 3: newest of 03-02 (s07), of 03-01 (s05), of 02-27 (s03);
    # weekly 3: W10 -> s07, W09 -> s05, W08 (02-20) -> s01;
    # monthly 3: March s07, February s03 (s04/s05 are March 1st), January s00.
    # last 1: s07.
    args = ["--keep-last", "1", "--keep-daily", "3"]
    want_keep = ["s03", "s05", "s07"]
    p = prune(env_sqlite, store, *args, "--dry-run")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:-1] == [("keep " if n in want_keep else "would remove ") + n for n in names]
    assert re.fullmatch(r"would remove 5 snapshots, would free \S+ \S+; 3 kept", lines[-1]), lines[-1]
    assert store_snapshots(store) == names

    p = prune(env_sqlite, store, "--keep-weekly", "3", "--keep-monthly", "3", "--dry-run")
    assert [l.split()[1] for l in p.stdout.splitlines() if l.startswith("keep ")] == \
        ["s00", "s01", "s03", "s05", "s07"]

    p = prune(env_sqlite, store, "--keep-hourly", "2", "--dry-run")
    assert [l.split()[1] for l in p.stdout.splitlines() if l.startswith("keep ")] == ["s06", "s07"]

    p = prune(env_sqlite, store, *args)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:-1] == [("keep " if n in want_keep else "remove ") + n for n in names]
    assert p.stdout.splitlines()[-1].startswith("removed 5 snapshots, freed ")
    assert store_snapshots(store) == want_keep
    # Pruning again with the same policy changes nothing.
    p = prune(env_sqlite, store, *args)
    assert p.stdout.splitlines() == ["keep " + n for n in want_keep] + ["removed 0 snapshots, freed 0 B; 3 kept"]
    assert store_snapshots(store) == want_keep
    # What remains still verifies: shared files kept their other links.
    assert verify(env_sqlite, store).returncode == 0


# --- list -------------------------------------------------------------------

def test_list_json_and_columns(env_sqlite, store):
    cli_snapshot(env_sqlite, store, "a")
    cli_snapshot(env_sqlite, store, "b")
    p = tracsnap("list", "--store", store, "--json", env_sqlite)
    data = json.loads(p.stdout)
    assert [d["name"] for d in data] == ["a", "b"]
    for d in data:
        assert set(d) >= {"name", "time", "unix_time", "size", "files", "shared_bytes"}
        assert isinstance(d["unix_time"], int)
        assert d["unix_time"] == int(os.stat(os.path.join(store, d["name"])).st_mtime)
        assert d["files"] > 5 and d["size"] > 0
        assert 0 < d["shared_bytes"] <= d["size"]   # b shares unchanged files with a
        assert d["time"][10] == "T" and d["time"][-3] == ":"
    p = tracsnap("list", "--store", store, env_sqlite)
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["TIME", "SIZE", "FILES", "SHARED", "STATE", "NAME"]
    assert [l.split()[-1] for l in lines[1:]] == ["a", "b"]
    # `tracsnap snapshot` seals before it returns
    assert [l.split()[4] for l in lines[1:]] == ["sealed", "sealed"]
    assert [d["sealed"] for d in data] == [True, True]
    assert [d["held"] for d in data] == [False, False]


def test_list_json_escapes_names(env_sqlite, store):
    names = ['q"uote', "back\\slash", "caf\u00e9", "tab\there"[:3] + "x"]
    for n in names:
        cli_snapshot(env_sqlite, store, n)
    # A name with a non-UTF-8 byte comes out as \u00XX of that byte.
    bad = os.path.join(store.encode(), b"lat\xe9")
    cli_snapshot(env_sqlite, store, "tmp")
    os.rename(os.path.join(store, "tmp"), bad)
    p = tracsnap("list", "--store", store, "--json", env_sqlite)
    got = sorted(d["name"] for d in json.loads(p.stdout))
    assert got == sorted(names + ["lat\u00e9"])
    assert "\\u00e9" in p.stdout and "caf\u00e9" in p.stdout


# --- keep= on the mount -----------------------------------------------------

def test_mount_keep_last(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite, opts=["keep=last:2"])
    for n in ("k1", "k2", "k3", "k4"):
        os.mkdir(m.path(n))
        time.sleep(0.02)   # distinct instants
    # keep= prunes once the new snapshots are sealed (in the background);
    # each removal is logged just after it.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            store_snapshots(m.store) == ["k3", "k4"] and "pruned k2" in m.log_text()):
        time.sleep(0.05)
    assert store_snapshots(m.store) == ["k3", "k4"]
    assert snapshot_names(m.mnt) == ["k3", "k4"]
    log = m.log_text()
    assert "pruned k1" in log and "pruned k2" in log


@pytest.mark.parametrize("opt", ["keep=last", "keep=yearly:3", "keep=last:x", "keep=daily:0"])
def test_mount_keep_invalid(env_sqlite, mount_factory, opt):
    m = mount_factory(env_sqlite, opts=[opt], start=False).expect_exit(EX_USAGE)
    m.start(wait=False)
    rc = m.proc.wait(timeout=15)
    assert rc == EX_USAGE
    lines = m.log_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracsnap: " + opt), lines
    assert not os.path.ismount(m.mnt)
