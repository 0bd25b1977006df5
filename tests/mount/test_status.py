"""Issue 18, finding the store: every command takes ENV or the mount point
and finds the running mount's store (the daemon registers in /run/tracsnap);
--store still wins."""
import os
import re

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
