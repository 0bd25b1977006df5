"""`make install` gives a binary, a man page, and working `mount -t fuse.tracsnap` and fstab lines."""
import os
import shutil
import subprocess

import pytest

from conftest import TOP, run


@pytest.fixture
def installed(tmp_path):
    prefix = tmp_path / "prefix"
    run(["make", "-C", TOP, "install", "PREFIX=%s" % prefix])
    env = dict(os.environ)
    env["PATH"] = "%s/bin:%s" % (prefix, env["PATH"])
    yield prefix, env
    run(["make", "-C", TOP, "uninstall", "PREFIX=%s" % prefix])
    assert not (prefix / "bin" / "tracsnap").exists()


def test_install_puts_binary_and_man_page(installed):
    prefix, env = installed
    assert os.access(prefix / "bin" / "tracsnap", os.X_OK)
    out = run(["man", "-l", str(prefix / "share/man/man1/tracsnap.1")], env=dict(env, MANPAGER="cat", PAGER="cat")).stdout
    # every command and mount option is documented
    for word in ("store=", "auto=", "lock_timeout=", "no_database", "manage_group=", "keep=",
                 "snapshot", "list", "verify", "prune", "restore", "--force", "--json",
                 "--dry-run", "--keep-last", "EBUSY"):
        assert word in out, word
    helptext = run([str(prefix / "bin" / "tracsnap"), "--help"]).stdout
    for cmd in ("snapshot", "list", "verify", "prune", "restore"):
        assert "tracsnap %s" % cmd in helptext
    assert run([str(prefix / "bin" / "tracsnap"), "--version"]).stdout.startswith("tracsnap ")


def _umount(mnt):
    subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
    if os.path.ismount(mnt):
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def test_mount_t_fuse_tracsnap(installed, env_sqlite, tmp_path):
    prefix, env = installed
    mnt, store = str(tmp_path / "mnt"), str(tmp_path / "store")
    os.mkdir(mnt)
    try:
        run(["mount", "-t", "fuse.tracsnap", env_sqlite, mnt, "-o", "store=" + store], env=env)
        assert os.path.ismount(mnt)
        with open("/proc/mounts") as f:
            line = [l for l in f if (" %s " % mnt) in l][0]
        assert line.split()[2] == "fuse.tracsnap"
        assert line.split()[0] == env_sqlite
        os.mkdir(os.path.join(mnt, "via-mount"))
        assert sorted(os.listdir(mnt)) == ["latest", "via-mount"]
        assert os.path.isfile(os.path.join(store, "via-mount", "manifest"))
    finally:
        _umount(mnt)
    assert not os.path.ismount(mnt)


def test_fstab_line(installed, env_sqlite, tmp_path):
    prefix, env = installed
    mnt, store = str(tmp_path / "mnt"), str(tmp_path / "store")
    os.mkdir(mnt)
    fstab = tmp_path / "fstab"
    fstab.write_text("%s %s fuse.tracsnap store=%s,allow_other,noauto 0 0\n" % (env_sqlite, mnt, store))
    try:
        # mount(8) reads an alternative fstab with -T, exactly as it reads /etc/fstab.
        run(["mount", "-T", str(fstab), mnt], env=env)
        assert os.path.ismount(mnt)
        with open("/proc/mounts") as f:
            opts = [l for l in f if (" %s " % mnt) in l][0].split()[3]
        assert "allow_other" in opts and "default_permissions" in opts
        os.mkdir(os.path.join(mnt, "from-fstab"))
        assert os.path.isdir(os.path.join(mnt, "from-fstab", "db"))
    finally:
        _umount(mnt)
