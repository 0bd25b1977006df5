"""Issue 18, dump(8): a store on its own ext4 filesystem, backed up with
`dump -0` and brought back with `restore -r` into a new filesystem, verifies
(restore(8) keeps mtimes to the whole second: metadata drift, said as such,
not damage), mounts, restores, and the next snapshot shares its files with
it.  Debian's dump package, on loop devices."""
import os
import re
import subprocess

import pytest

from tshelpers import run, tracsnap, tree_state, wait_sealed

SEAL_TIMEOUT = 60


@pytest.fixture
def two_filesystems(tmp_path):
    """Two fresh ext4 filesystems on loop devices, mounted at a/ and b/;
    unmounted (and their loop devices released) whatever happens."""
    mounted = []
    try:
        for n in ("a", "b"):
            img, mnt = tmp_path / (n + ".img"), tmp_path / n
            with open(str(img), "wb") as f:
                f.truncate(256 << 20)
            run(["mkfs.ext4", "-q", "-F", str(img)])
            mnt.mkdir()
            run(["mount", "-o", "loop", str(img), str(mnt)])
            mounted.append(str(mnt))
        yield [tmp_path / "a", tmp_path / "b"]
    finally:
        for mnt in reversed(mounted):
            if subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL).returncode:
                subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def add_attachment(env, name, data):
    """A new file with a nanosecond mtime, as Trac writes attachments."""
    d = os.path.join(env, "files", "attachments", "ticket", "fff", "dump-test")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    return os.path.join(d, name)


def test_store_survives_dump_and_restore(env_sqlite, mount_factory, two_filesystems, tmp_path):
    fs_a, fs_b = two_filesystems
    store_a, store_b = str(fs_a / "store"), str(fs_b / "store")
    m = mount_factory(env_sqlite, store=store_a)
    add_attachment(env_sqlite, "one.bin", os.urandom(300 << 10))
    os.mkdir(m.path("one"))
    wait_sealed(store_a, "one", timeout=SEAL_TIMEOUT, daemon=m)
    add_attachment(env_sqlite, "two.bin", os.urandom(200 << 10))
    os.mkdir(m.path("two"))
    wait_sealed(store_a, "two", timeout=SEAL_TIMEOUT, daemon=m)
    m.stop()
    state_one = tree_state(os.path.join(store_a, "one", "tree"))
    shared = os.path.join("files", "attachments", "ticket", "fff", "dump-test", "one.bin")
    assert os.stat(os.path.join(store_a, "two", "tree", shared)).st_nlink >= 2   # (+ the stage)

    dumpfile = str(tmp_path / "store.dump")
    run(["dump", "-0", "-q", "-f", dumpfile, str(fs_a)], timeout=300)
    p = subprocess.run(["restore", "-r", "-f", dumpfile], cwd=str(fs_b), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    assert p.returncode == 0, p.stdout
    os.unlink(str(fs_b / "restoresymtable"))
    # Hard links survive; sub-second mtimes do not.
    st = os.stat(os.path.join(store_b, "two", "tree", shared))
    assert st.st_nlink >= 2
    assert st.st_mtime_ns % 1000000000 == 0
    assert os.stat(os.path.join(store_a, "two", "tree", shared)).st_mtime_ns % 1000000000 != 0

    # verify: no problem, the drift said once per snapshot, exit 0.
    p = tracsnap("verify", "--store", store_b, env_sqlite, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    drift = re.findall(r"^tracsnap: (one|two): (\d+) entr(?:y|ies) whose mtime was kept to the second, the "
                       r"content unchanged: metadata drift \(as a copy by dump/restore leaves it\), not "
                       r"damage; tracsnap verify --repair sets the times back$", p.stderr, flags=re.M)
    assert [n for n, _ in drift] == ["one", "two"], p.stderr
    total = sum(int(k) for _, k in drift)
    assert re.fullmatch(r"verified 2 snapshots: .*, metadata drift on %d entries \(mtimes kept to the "
                        r"second\), no problem\n" % total, p.stdout), p.stdout
    assert len(p.stderr.splitlines()) == 2, p.stderr   # the two lines above, nothing else

    # The restored store mounts; its snapshots read as the originals.
    m2 = mount_factory(env_sqlite, store=store_b)
    assert sorted(os.listdir(m2.mnt)) == ["latest", "one", "two"]
    assert tree_state(m2.path("one"), mtime=False) == tree_state(os.path.join(store_a, "one", "tree"),
                                                                   mtime=False)
    # The next snapshot shares what did not change, found by content: the
    # restored copies are new inodes, and nothing is called damaged.
    os.mkdir(m2.path("three"))
    wait_sealed(store_b, "three", timeout=SEAL_TIMEOUT, daemon=m2)
    assert os.stat(os.path.join(store_b, "three", "tree", shared)).st_ino == \
        os.stat(os.path.join(store_b, "one", "tree", shared)).st_ino
    assert "damaged" not in m2.log_text()
    m2.stop()

    # --repair sets the times back; then nothing drifts.
    p = tracsnap("verify", "--repair", "--store", store_b, env_sqlite, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "set back, no problem" in p.stdout
    p = tracsnap("verify", "--store", store_b, env_sqlite)
    assert "drift" not in p.stdout + p.stderr
    assert os.stat(os.path.join(store_b, "two", "tree", shared)).st_mtime_ns == \
        os.stat(os.path.join(store_a, "two", "tree", shared)).st_mtime_ns

    # And a snapshot restores from it.
    p = tracsnap("restore", "--store", store_b, "one", env_sqlite)
    assert p.stdout.startswith("restored one into %s" % env_sqlite), p.stdout
    state = tree_state(env_sqlite)
    for rel, v in state_one.items():
        if rel != "db/trac.db":
            assert state.get(rel) == v, rel
