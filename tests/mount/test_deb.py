"""Issue 18, Debian packaging: `dpkg-buildpackage -us -uc -b` on the
project's files gives a .deb; `apt-get install ./tracsnap_*.deb` installs
the binary, the man page, the systemd units and the mount helper, with which
an fstab line mounts and takes a snapshot; `apt-get purge` removes it all.

It installs for real, so it must not pass because of an earlier install nor
leave one behind: it refuses to start when tracsnap is installed already,
and purges the package whatever happens."""
import glob
import os
import shutil
import subprocess

import pytest

from tshelpers import TOP, run

MOUNT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PKG_FILES = ["/usr/bin/tracsnap", "/usr/share/man/man1/tracsnap.1.gz", "/usr/sbin/mount.fuse.tracsnap",
             "/usr/lib/systemd/system/tracsnap-snapshot@.service",
             "/usr/lib/systemd/system/tracsnap-snapshot@.timer"]
BUILD_TIMEOUT = 1200


def installed():
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "tracsnap"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return p.returncode == 0 and "installed" in p.stdout.split()


@pytest.fixture
def fresh_system():
    """No tracsnap package and none of its files before; purged after."""
    assert not installed(), "the tracsnap package is installed already: purge it first"
    for f in PKG_FILES + ["/usr/local/bin/tracsnap", "/sbin/mount.fuse.tracsnap"]:
        assert not os.path.lexists(f), "%s exists before the test" % f
    try:
        yield
    finally:
        if installed():
            subprocess.run(["apt-get", "purge", "-y", "tracsnap"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def source_copy(dest):
    """The project's files as a clone has them (tracked, or new and not
    ignored): no build output, nothing of the machine's."""
    names = run(["git", "-C", TOP, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in sorted(set(n for n in names.split("\0") if n)):
        src = os.path.join(TOP, rel)
        if not os.path.lexists(src):
            continue   # deleted in the work tree, not yet in git
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)


def test_deb_builds_installs_mounts_and_purges(fresh_system, env_sqlite, tmp_path):
    src = tmp_path / "tracsnap-0.1.0"
    source_copy(str(src))
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2")
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=str(src), env=env, timeout=BUILD_TIMEOUT)
    debs = glob.glob(str(tmp_path / "tracsnap_*.deb"))
    assert len(debs) == 1, os.listdir(str(tmp_path))
    contents = run(["dpkg-deb", "-c", debs[0]]).stdout
    for f in PKG_FILES:
        assert " ." + f + "\n" in contents or contents.endswith(" ." + f), f

    run(["apt-get", "install", "-y", debs[0]], timeout=600)
    assert installed()
    for f in PKG_FILES:
        assert os.path.isfile(f), f
    path_env = dict(os.environ, PATH=MOUNT_PATH)
    assert run(["tracsnap", "--version"], env=path_env).stdout == "tracsnap 0.1.0\n"
    assert shutil.which("tracsnap", path=MOUNT_PATH) == "/usr/bin/tracsnap"
    with open("/usr/lib/systemd/system/tracsnap-snapshot@.service") as f:
        unit = f.read()
    execs = [l for l in unit.splitlines() if l.startswith("ExecStart=")]
    assert execs and all(l.startswith("ExecStart=/usr/bin/tracsnap ") for l in execs), execs
    with open("/usr/sbin/mount.fuse.tracsnap") as f:
        assert "bindir='/usr/bin'" in f.read()

    # An fstab line, read by mount(8) as /etc/fstab would be.
    mnt, store = str(tmp_path / "mnt"), str(tmp_path / "store")
    os.mkdir(mnt)
    fstab = tmp_path / "fstab"
    fstab.write_text("%s %s fuse.tracsnap store=%s,allow_other,noauto 0 0\n" % (env_sqlite, mnt, store))
    try:
        run(["mount", "-T", str(fstab), mnt], env=path_env)
        assert os.path.ismount(mnt)
        os.mkdir(os.path.join(mnt, "from-the-package"))
        assert os.path.isfile(os.path.join(mnt, "from-the-package", "conf", "trac.ini"))
        listed = run(["tracsnap", "list", mnt], env=path_env).stdout
        assert listed.splitlines()[1].endswith(" from-the-package"), listed
    finally:
        subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
    assert not os.path.ismount(mnt)

    run(["apt-get", "purge", "-y", "tracsnap"], timeout=600)
    assert not installed()
    for f in PKG_FILES:
        assert not os.path.lexists(f), f
