"""Issue 18, finding the store and seeing why: every command takes ENV or
the mount point and finds the running mount's store (the daemon registers in
/run/tracsnap), --store still wins; `tracsnap status` shows the mount, its
store, the snapshots, the stage and the last problems with their reasons,
which the daemon keeps in the store (STORE/.events)."""
import errno
import os
import re
import time

import pytest

from tshelpers import store_snapshots, tracsnap, wait_sealed

SEAL_TIMEOUT = 60


def test_commands_find_the_mounts_store(env_sqlite, mount_factory, tmp_path):
    store = str(tmp_path / "elsewhere" / "store")
    m = mount_factory(env_sqlite, store=store)
    os.mkdir(m.path("by-mkdir"))
    wait_sealed(store, "by-mkdir", timeout=SEAL_TIMEOUT, daemon=m)
    # No --store: ENV and the mount point both lead to the mount's store.
    tracsnap("snapshot", env_sqlite, "by-cron")
    assert store_snapshots(store) == ["by-cron", "by-mkdir"]
    for arg in (env_sqlite, m.mnt):
        names = [l.split(None, 5)[5] for l in tracsnap("list", arg).stdout.splitlines()[1:]]
        assert names == ["by-mkdir", "by-cron"], arg
    assert tracsnap("hold", m.mnt, "by-cron").stdout == "held by-cron\n"
    assert tracsnap("verify", m.mnt).stdout.startswith("verified 2 snapshots")
    # --store wins over the mount's.
    other = str(tmp_path / "other")
    tracsnap("snapshot", "--store", other, m.mnt, "apart")
    assert store_snapshots(other) == ["apart"]
    assert store_snapshots(store) == ["by-cron", "by-mkdir"]
    # Once unmounted, ENV means its default store again, which is not made.
    m.stop()
    p = tracsnap("list", env_sqlite, check=False)
    assert p.returncode != 0
    m = re.match(r"tracsnap: store (/var/lib/tracsnap/[^:]+): ", p.stderr)
    assert m, p.stderr
    assert not os.path.exists(m.group(1))


def test_two_stores_for_one_env_is_ambiguous(env_sqlite, mount_factory, tmp_path):
    m0 = mount_factory(env_sqlite)
    m1 = mount_factory(env_sqlite)
    os.mkdir(m1.path("in-one"))
    wait_sealed(m1.store, "in-one", timeout=SEAL_TIMEOUT, daemon=m1)
    p = tracsnap("list", env_sqlite, check=False)
    assert p.returncode == 64
    assert re.fullmatch(r"tracsnap: %s is mounted with two stores \(.* on .*, .* on .*\): give --store\n"
                        % re.escape(os.path.realpath(env_sqlite)), p.stderr), p.stderr
    assert m0.store in p.stderr and m1.store in p.stderr
    # The mount point says which.
    assert tracsnap("list", m1.mnt).stdout.splitlines()[1].endswith(" in-one")
    assert tracsnap("list", m0.mnt).stdout == ""


def wait_status(arg, pattern, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        out = tracsnap("status", arg).stdout
        if re.search(pattern, out, flags=re.M):
            return out
        assert time.monotonic() < deadline, "no %r in:\n%s" % (pattern, out)
        time.sleep(0.1)


def test_status_says_why(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite)
    m.expect_log(r"^tracsnap: rmdir kept refused: held")
    os.mkdir(m.path("kept"))
    wait_sealed(m.store, "kept", timeout=SEAL_TIMEOUT, daemon=m)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path(".hidden"))
    assert ei.value.errno == errno.EINVAL
    tracsnap("hold", env_sqlite, "kept")
    with pytest.raises(OSError) as ei:
        os.rmdir(m.path("kept"))
    assert ei.value.errno == errno.EBUSY
    out = wait_status(m.mnt, r"^stage +from kept")
    lines = out.splitlines()
    assert lines[0] == "environment  %s" % os.path.realpath(env_sqlite)
    assert lines[1] == "store        %s" % os.path.realpath(m.store)
    assert re.fullmatch(r"mount        %s \(pid %d, since \S+\)" % (re.escape(os.path.realpath(m.mnt)), m.proc.pid),
                        lines[2]), lines[2]
    assert re.fullmatch(r"snapshots    1 \(1 sealed, 0 being sealed\); newest kept at \S+", lines[3]), lines[3]
    assert lines[4] == "held         kept"
    assert lines[5] == "being made   none"
    problems = lines[lines.index("last problems (%s/.events, newest last)" % os.path.realpath(m.store)) + 1:]
    assert len(problems) == 2, out
    assert re.fullmatch(r"  \S+ notice mkdir /\.hidden refused: snapshot name '\.hidden': starts with '\.'",
                        problems[0]), problems
    assert re.fullmatch(r"  \S+ notice rmdir kept refused: held \(tracsnap release kept first\)",
                        problems[1]), problems
    # What went well is not a problem: the snapshot's own lines are not there.
    assert "files" not in "\n".join(problems)
    # The same from ENV; and the events are the store's, root's only.
    assert tracsnap("status", env_sqlite).stdout.splitlines()[:5] == lines[:5]
    st = os.stat(os.path.join(m.store, ".events"))
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0
    # After the mount: no mount, the problems stay.
    m.stop()
    out = tracsnap("status", "--store", m.store, env_sqlite).stdout
    assert "mount        none\n" in out
    assert "mkdir /.hidden refused" in out


def test_status_refuses_what_is_not_there(tmp_path):
    p = tracsnap("status", str(tmp_path / "nowhere"), check=False)
    assert p.returncode == 66
    assert p.stderr.startswith("tracsnap: %s" % (tmp_path / "nowhere")), p.stderr
    p = tracsnap("status", check=False)
    assert p.returncode == 64 and p.stderr.startswith("tracsnap: status: missing ENV or MOUNTPOINT\n")
