"""`make install` gives a binary, a man page, and working `mount -t fuse.tracsnap`
and fstab lines, with the default PREFIX and with any other; `make uninstall`
takes all of it away again.

mount(8) runs its helpers with a fixed PATH, so these tests install for real
(/usr/local, /sbin).  They must not pass because of an earlier install, nor
leave one behind: the `system` fixture moves aside whatever tracsnap files it
finds at those places, proves they are gone, and puts them back at the end;
directories that only the test's install created are removed again.
"""
import os
import re
import shutil
import subprocess

import pytest

from tshelpers import TOP, run

HELPER = "/sbin/mount.fuse.tracsnap"
DEFAULT_PREFIX = "/usr/local"
# What mount(8) gives its helpers (util-linux): the tests run mount with it too,
# so that nothing in the test runner's PATH can help.
MOUNT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def installed_files(prefix):
    return [os.path.join(prefix, "bin/tracsnap"),
            os.path.join(prefix, "share/man/man1/tracsnap.1"),
            HELPER]


def _exists(p):
    return os.path.lexists(p)


@pytest.fixture
def system(tmp_path):
    """The machine as a fresh one: no tracsnap in /usr/local or /sbin.  Yields;
    then removes whatever a failed test's install left, and restores what was
    there before.  (Each test checks its own uninstall.)"""
    aside = tmp_path / "aside"
    aside.mkdir()
    moved = []
    for i, p in enumerate(installed_files(DEFAULT_PREFIX)):
        if _exists(p):
            dst = str(aside / str(i))
            shutil.move(p, dst)
            moved.append((dst, p))
    dirs = [os.path.join(DEFAULT_PREFIX, d) for d in ("bin", "share/man/man1", "share/man", "share")]
    had_dirs = {d for d in dirs if os.path.isdir(d)}
    try:
        for p in installed_files(DEFAULT_PREFIX):
            assert not _exists(p), p
        assert shutil.which("tracsnap", path=MOUNT_PATH) is None
        yield
    finally:
        # A failed test may not have reached its uninstall.
        for p in installed_files(DEFAULT_PREFIX):
            if _exists(p):
                os.unlink(p)
        for d in dirs:                       # deepest first
            if d not in had_dirs and os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        for dst, p in moved:
            if _exists(p):
                os.unlink(p)
            shutil.move(dst, p)


def make_install(*args):
    return run(["make", "-C", TOP, "install"] + list(args))


def make_uninstall(*args):
    return run(["make", "-C", TOP, "uninstall"] + list(args))


def mount_env():
    return dict(os.environ, PATH=MOUNT_PATH)


def _umount(mnt):
    subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
    if os.path.ismount(mnt):
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def mount_line(mnt):
    with open("/proc/mounts") as f:
        return [l.split() for l in f if (" %s " % mnt) in l][0]


def check_mount_t(env_sqlite, tmp_path, name):
    """`mount -t fuse.tracsnap ENV MNT -o store=...` works and takes a snapshot."""
    mnt, store = str(tmp_path / ("mnt-" + name)), str(tmp_path / ("store-" + name))
    os.mkdir(mnt)
    try:
        run(["mount", "-t", "fuse.tracsnap", env_sqlite, mnt, "-o", "store=" + store], env=mount_env())
        assert os.path.ismount(mnt)
        line = mount_line(mnt)
        assert line[2] == "fuse.tracsnap" and line[0] == env_sqlite
        os.mkdir(os.path.join(mnt, name))
        assert sorted(os.listdir(mnt)) == sorted(["latest", name])
        assert os.path.isfile(os.path.join(store, name, "manifest"))
    finally:
        _umount(mnt)
    assert not os.path.ismount(mnt)


def check_fstab(env_sqlite, tmp_path, name):
    """An fstab line (through mount -T, read exactly as /etc/fstab) works."""
    mnt, store = str(tmp_path / ("fmnt-" + name)), str(tmp_path / ("fstore-" + name))
    os.mkdir(mnt)
    fstab = tmp_path / ("fstab-" + name)
    fstab.write_text("%s %s fuse.tracsnap store=%s,allow_other,noauto 0 0\n" % (env_sqlite, mnt, store))
    try:
        run(["mount", "-T", str(fstab), mnt], env=mount_env())
        assert os.path.ismount(mnt)
        opts = mount_line(mnt)[3]
        assert "allow_other" in opts and "default_permissions" in opts
        os.mkdir(os.path.join(mnt, name))
        assert os.path.isdir(os.path.join(mnt, name, "db"))
    finally:
        _umount(mnt)


def test_default_prefix_install_mount_and_uninstall(system, env_sqlite, tmp_path):
    make_install()
    for p in installed_files(DEFAULT_PREFIX):
        assert os.path.isfile(p), p
    assert os.access(HELPER, os.X_OK)
    man = run(["man", "-l", os.path.join(DEFAULT_PREFIX, "share/man/man1/tracsnap.1")],
              env=dict(os.environ, MANPAGER="cat", PAGER="cat")).stdout
    # every command and mount option is documented, and the helper too
    for word in ("store=", "auto=", "lock_timeout=", "no_database", "manage_group=", "keep=",
                 "snapshot", "list", "verify", "prune", "restore", "--force", "--json",
                 "--dry-run", "--keep-last", "EBUSY", "mount.fuse.tracsnap"):
        assert word in man, word
    helptext = run(["tracsnap", "--help"], env=mount_env()).stdout
    for cmd in ("snapshot", "list", "verify", "prune", "restore"):
        assert re.search(r"^  %s +\S" % cmd, helptext, flags=re.M), cmd
    assert run(["tracsnap", "--version"], env=mount_env()).stdout.startswith("tracsnap ")

    check_mount_t(env_sqlite, tmp_path, "default-t")
    check_fstab(env_sqlite, tmp_path, "default-fstab")

    make_uninstall()
    for p in installed_files(DEFAULT_PREFIX):
        assert not _exists(p), p
    # and mount now fails as on a machine that never had tracsnap
    mnt = str(tmp_path / "after")
    os.mkdir(mnt)
    p = run(["mount", "-t", "fuse.tracsnap", env_sqlite, mnt, "-o", "store=" + str(tmp_path / "s")],
            env=mount_env(), check=False)
    assert p.returncode != 0 and not os.path.ismount(mnt)


def test_other_prefix_mounts_through_helper(system, env_sqlite, tmp_path):
    prefix = str(tmp_path / "opt" / "tracsnap")
    make_install("PREFIX=" + prefix)
    assert os.access(os.path.join(prefix, "bin/tracsnap"), os.X_OK)
    # Not on mount(8)'s PATH: only the helper can find it.
    assert shutil.which("tracsnap", path=MOUNT_PATH) is None
    with open(HELPER) as f:
        assert "bindir='%s/bin'" % prefix in f.read()

    check_mount_t(env_sqlite, tmp_path, "opt-t")
    check_fstab(env_sqlite, tmp_path, "opt-fstab")

    # Uninstalling another PREFIX leaves this install's helper alone ...
    out = make_uninstall("PREFIX=" + str(tmp_path / "elsewhere")).stdout
    assert "belongs to another install" in out
    assert os.path.isfile(HELPER)
    # ... uninstalling this one removes everything it installed.
    make_uninstall("PREFIX=" + prefix)
    for p in installed_files(prefix):
        assert not _exists(p), p


def test_helper_names_a_missing_binary(system, env_sqlite, tmp_path):
    prefix = str(tmp_path / "gone")
    make_install("PREFIX=" + prefix)
    os.unlink(os.path.join(prefix, "bin/tracsnap"))
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    try:
        p = run(["mount", "-t", "fuse.tracsnap", env_sqlite, mnt, "-o", "store=" + str(tmp_path / "s")],
                env=mount_env(), check=False)
        assert p.returncode != 0 and not os.path.ismount(mnt)
        assert "%s/bin/tracsnap: not installed" % prefix in p.stderr
    finally:
        _umount(mnt)
        make_uninstall("PREFIX=" + prefix)
    assert not _exists(HELPER)


def test_install_without_helper_says_what_is_needed(system, tmp_path):
    prefix = str(tmp_path / "nohelper")
    out = make_install("PREFIX=" + prefix, "MOUNT_HELPER_DIR=").stdout
    assert "no mount helper" in out and "%s/bin" % prefix in out
    assert not _exists(HELPER)
    make_uninstall("PREFIX=" + prefix, "MOUNT_HELPER_DIR=")
    assert not _exists(os.path.join(prefix, "bin/tracsnap"))


def test_destdir_stages_everything(system, tmp_path):
    """A staged install (packaging) writes all three under DESTDIR; the helper
    names the final BINDIR, not the staging one."""
    dest = str(tmp_path / "stage")
    make_install("DESTDIR=" + dest, "PREFIX=/usr")
    for p in installed_files("/usr"):
        assert os.path.isfile(dest + p), p
    with open(dest + HELPER) as f:
        assert "bindir='/usr/bin'\n" in f.read()
    for p in installed_files(DEFAULT_PREFIX) + installed_files("/usr"):
        if p.startswith("/usr/") and not p.startswith("/usr/local/"):
            continue   # Debian's own /usr is not ours to look at
        assert not _exists(p), p
    make_uninstall("DESTDIR=" + dest, "PREFIX=/usr")
    for p in installed_files("/usr"):
        assert not _exists(dest + p), p
