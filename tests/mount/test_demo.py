"""scripts/demo (README's first command) mounts the sample environment in
TRACSNAP_DEMO_DIR, and never deletes a directory or a mount it did not make."""
import os
import subprocess

from tshelpers import TOP, run


def demo(demo_dir, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env["TRACSNAP_DEMO_DIR"] = str(demo_dir)
    return run([os.path.join(TOP, "scripts", "demo")] + list(args), env=env, check=False, timeout=600)


def test_demo_mounts_snapshots_and_unmounts(tmp_path):
    d = tmp_path / "demo"
    try:
        p = demo(d)
        assert p.returncode == 0, p.stderr
        mnt = str(d / "mnt")
        assert os.path.ismount(mnt)
        names = os.listdir(mnt)
        assert "latest" in names and any(n.startswith("demo-") for n in names)
        assert p.stdout.strip().splitlines()[-1].startswith("Unmount with:")
        # A second run replaces its own directory and mount.
        p = demo(d)
        assert p.returncode == 0, p.stderr
        assert os.path.ismount(mnt)
    finally:
        p = demo(d, "--unmount")
    assert p.returncode == 0 and not os.path.ismount(str(d / "mnt"))


def test_demo_refuses_foreign_mount_and_directory(tmp_path):
    d = tmp_path / "demo"
    try:
        assert demo(d).returncode == 0
        other = d / "other"
        other.mkdir()
        run(["mount", "-t", "tmpfs", "none", str(other)])
        (other / "keep").write_text("precious\n")
        for args in ((), ("--unmount",)):
            p = demo(d, *args)
            assert p.returncode == 1
            assert p.stderr.strip() == ("scripts/demo: %s: a mount the demo did not make is in %s; "
                                        "unmount it or set TRACSNAP_DEMO_DIR" % (other, d))
            # nothing was deleted or unmounted, not even the demo's own mount
            assert os.path.ismount(str(other)) and (other / "keep").read_text() == "precious\n"
            assert os.path.ismount(str(d / "mnt"))
    finally:
        subprocess.run(["umount", str(d / "other")], stderr=subprocess.DEVNULL)
        demo(d, "--unmount")
    assert not os.path.ismount(str(d / "mnt"))

    # A directory the demo did not make is never emptied.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data").write_text("x")
    p = demo(foreign)
    assert p.returncode == 1 and "not empty and not made by scripts/demo" in p.stderr
    assert (foreign / "data").read_text() == "x" and sorted(os.listdir(foreign)) == ["data"]
