"""Issue 18, holds and prune's report: `tracsnap hold NAME` keeps a snapshot
from prune, the mount's keep= and rmdir until `tracsnap release NAME`;
`list` shows it; prune says "would remove" in a dry run and ends with what
it removed and the space that freed; list's SHARED column does not count the
daemon's stage, its names stay one column and show no control bytes."""
import errno
import json
import os
import re
import time

import pytest

from tshelpers import cli_snapshot, tracsnap, wait_sealed, wait_stage

SEAL_TIMEOUT = 60


def wait_log(m, regex, timeout=30):
    """Wait until the daemon's log has a line matching regex."""
    deadline = time.monotonic() + timeout
    while not re.search(regex, m.log_text(), flags=re.M):
        assert time.monotonic() < deadline, "no %r in the log:\n%s" % (regex, m.log_text())
        time.sleep(0.05)


def hold(env, store, *names, verb="hold", check=True):
    return tracsnap(verb, "--store", store, env, *names, check=check)


def listing(env, store):
    """[(name, STATE)] of `tracsnap list`, NAME being the rest of the line."""
    lines = tracsnap("list", "--store", store, env).stdout.splitlines()
    assert lines[0].split() == ["TIME", "SIZE", "FILES", "SHARED", "STATE", "NAME"]
    return [(l.split(None, 5)[5], l.split()[4]) for l in lines[1:]]


def test_hold_keeps_a_snapshot_from_every_removal(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite, opts=["keep=last:1"])
    m.expect_log(r"^tracsnap: kept before-upgrade: held \(tracsnap release before-upgrade lets keep= remove it\)")
    m.expect_log(r"^tracsnap: rmdir before-upgrade refused: held \(tracsnap release before-upgrade first\)")
    os.mkdir(m.path("before-upgrade"))
    wait_sealed(m.store, "before-upgrade", timeout=SEAL_TIMEOUT, daemon=m)
    p = hold(env_sqlite, m.store, "before-upgrade")
    assert p.stdout == "held before-upgrade\n"
    assert hold(env_sqlite, m.store, "before-upgrade").stdout == "before-upgrade: held already\n"
    instant = os.stat(os.path.join(m.store, "before-upgrade")).st_mtime_ns

    # keep=last:1 after the next snapshot would remove it: it stays.
    os.mkdir(m.path("next"))
    wait_sealed(m.store, "next", timeout=SEAL_TIMEOUT, daemon=m)
    os.mkdir(m.path("third"))
    wait_sealed(m.store, "third", timeout=SEAL_TIMEOUT, daemon=m)
    wait_log(m, r"kept before-upgrade: held")
    wait_log(m, r"pruned next")
    assert sorted(os.listdir(m.mnt)) == ["before-upgrade", "latest", "third"]

    # rmdir on the mount: EBUSY, and the reason in the log.
    with pytest.raises(OSError) as ei:
        os.rmdir(m.path("before-upgrade"))
    assert ei.value.errno == errno.EBUSY
    assert os.path.isdir(os.path.join(m.store, "before-upgrade", "tree"))

    # prune: kept, and said so; the summary counts it.
    p = tracsnap("prune", "--store", m.store, "--keep-last", "1", env_sqlite)
    assert p.stdout.splitlines() == ["kept before-upgrade: held (tracsnap release before-upgrade)",
                                     "keep third", "removed 0 snapshots, freed 0 B; 2 kept (1 held)"]
    assert listing(env_sqlite, m.store) == [("before-upgrade", "sealed,held"), ("third", "sealed")]
    data = json.loads(tracsnap("list", "--json", "--store", m.store, env_sqlite).stdout)
    assert [(d["name"], d["held"]) for d in data] == [("before-upgrade", True), ("third", False)]
    # The hold does not move the snapshot's instant.
    assert os.stat(os.path.join(m.store, "before-upgrade")).st_mtime_ns == instant

    # A rename keeps the hold; released, the next removal goes through.
    os.rename(m.path("before-upgrade"), m.path("pre-upgrade"))
    with pytest.raises(OSError) as ei:
        os.rmdir(m.path("pre-upgrade"))
    assert ei.value.errno == errno.EBUSY
    assert hold(env_sqlite, m.store, "pre-upgrade", verb="release").stdout == "released pre-upgrade\n"
    assert hold(env_sqlite, m.store, "pre-upgrade", verb="release").stdout == "pre-upgrade: not held\n"
    os.rmdir(m.path("pre-upgrade"))
    assert not os.path.exists(os.path.join(m.store, "pre-upgrade"))


def test_hold_refuses_what_is_not_there(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    cli_snapshot(env_sqlite, store, "a")
    before = sorted(os.listdir(os.path.join(store, "a")))
    p = hold(env_sqlite, store, "a", "nosuch", check=False)
    assert p.returncode == 66
    assert p.stdout == "held a\n"
    assert p.stderr == "tracsnap: snapshot nosuch: no such snapshot\n"
    assert sorted(os.listdir(os.path.join(store, "a"))) == sorted(before + ["hold"])
    p = hold(env_sqlite, store, check=False)
    assert p.returncode == 64 and p.stderr.startswith("tracsnap: hold: missing NAME\n")
    # verify sees only the tree: a held snapshot verifies.
    assert tracsnap("verify", "--store", store, env_sqlite).returncode == 0


def alone(store, names):
    """Bytes of the inodes whose every link is below STORE/NAME for names."""
    seen, nlink, size = {}, {}, {}
    for n in names:
        top = os.path.join(store, n)
        for root, dirs, files in os.walk(top):
            for x in [root] + [os.path.join(root, f) for f in files]:
                st = os.lstat(x)
                seen[st.st_ino] = seen.get(st.st_ino, 0) + 1
                nlink[st.st_ino] = 1 if os.path.isdir(x) else st.st_nlink
                size[st.st_ino] = st.st_blocks * 512
    return sum(size[i] for i in seen if seen[i] >= nlink[i])


def test_prune_dry_run_and_summary(env_sqlite, tmp_path):
    store = str(tmp_path / "store")
    for n in ("a", "b", "c"):
        with open(os.path.join(env_sqlite, "files", "own-%s" % n), "wb") as f:
            f.write(os.urandom(256 << 10))   # each snapshot has 256 KiB of its own
        cli_snapshot(env_sqlite, store, n)
        os.unlink(os.path.join(env_sqlite, "files", "own-%s" % n))
    p = tracsnap("prune", "--store", store, "--keep-last", "1", "--dry-run", env_sqlite)
    lines = p.stdout.splitlines()
    assert lines[:3] == ["would remove a", "would remove b", "keep c"]
    m = re.fullmatch(r"would remove 2 snapshots, would free (\d+\.\d) KiB; 1 kept", lines[3])
    assert m, lines[3]
    # What a and b hold alone: each its own 256 KiB file, its directories and
    # manifest; not the files all three share (counted here by inode).
    assert abs(float(m.group(1)) * 1024 - alone(store, ["a", "b"])) < 52, lines[3]
    assert float(m.group(1)) >= 512
    assert set(n for n in os.listdir(store) if not n.startswith(".")) == {"a", "b", "c"}   # a dry run
    p = tracsnap("prune", "--store", store, "--keep-last", "1", env_sqlite)
    assert p.stdout.splitlines()[:2] == ["remove a", "remove b"]
    assert p.stdout.splitlines()[3] == lines[3].replace("would remove", "removed", 1).replace(
        "would free", "freed")
    assert set(n for n in os.listdir(store) if not n.startswith(".")) == {"c"}
    # --keep-last 0 is refused as keeping nothing, naming the option.
    p = tracsnap("prune", "--store", store, "--keep-last", "0", env_sqlite, check=False)
    assert p.returncode == 64
    assert p.stderr == ("tracsnap: prune: --keep-last 0 keeps nothing: refusing to remove every snapshot "
                        "(give one --keep-* option above 0)\n")


def test_shared_ignores_the_stage_and_names_stay_one_column(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("only one"))
    wait_sealed(m.store, "only one", timeout=SEAL_TIMEOUT, daemon=m)
    wait_stage(m.store, "only one")
    # The stage links every file of "only one"; no snapshot shares them.
    data = json.loads(tracsnap("list", "--json", "--store", m.store, env_sqlite).stdout)
    assert [(d["name"], d["shared_bytes"]) for d in data] == [("only one", 0)]
    # C1 controls are refused in new names, as C0 ones are ...
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path("c1\u0085x"))
    assert ei.value.errno == errno.EINVAL
    # ... but a store made by hand, or by an older tracsnap, may hold one.
    os.mkdir(m.path("second"))
    wait_sealed(m.store, "second", timeout=SEAL_TIMEOUT, daemon=m)
    m.stop()   # renamed behind a running daemon, its stage would go stale
    os.rename(os.path.join(m.store, "second"), os.path.join(m.store, "c1\u0085x \x1b[2J"))
    out = tracsnap("list", "--store", m.store, env_sqlite).stdout
    assert "\u0085" not in out and "\x1b" not in out
    assert listing(env_sqlite, m.store) == [("only one", "sealed"), ("c1\\u0085x \\u001b[2J", "sealed")]
    data = json.loads(tracsnap("list", "--json", "--store", m.store, env_sqlite).stdout)
    assert data[0]["shared_bytes"] > 0   # now a second snapshot shares them
    assert data[1]["name"] == "c1\u0085x \x1b[2J"
