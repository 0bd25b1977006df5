"""Root-safe view (issue 14): POSIX ACLs and xattr names as on the real
filesystem, and first-access names that other users cannot turn into a
snapshot-and-prune loop.

Every check compares what a real unprivileged user gets through an
allow_other mount with what the same user gets on ENV itself.
"""
import os
import subprocess
import time

import pytest

from tshelpers import NOBODY, as_nobody, extract_fixture, run, start_public_mount, store_snapshots

TIMEOUT = 20
USER, GROUP = "tsh3acl", "tsh3grp"
AS_USER = ["setpriv", "--reuid=" + USER, "--regid=" + GROUP, "--clear-groups"]
SECRET = "acl-protected data\n"


def _as(who, args):
    return run(who + [str(a) for a in args], check=False, timeout=TIMEOUT,
               env=dict(os.environ, LC_ALL="C"))


@pytest.fixture
def tsh3_user():
    """A group and a user whose primary group it is; removed even on failure."""
    subprocess.run(["userdel", USER], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    subprocess.run(["groupdel", GROUP], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        run(["groupadd", GROUP])
        run(["useradd", "-M", "-N", "-g", GROUP, "-s", "/usr/sbin/nologin", "-d", "/nonexistent", USER])
        yield USER
    finally:
        subprocess.run(["userdel", USER], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        subprocess.run(["groupdel", GROUP], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _acl_env(public_dir):
    """The fixture env where everyone can reach it, with ENV/acl/f.txt
    root:GROUP 0640 whose ACL denies the group and lets nobody read, and
    ENV/acl/plain.txt 0644 without an ACL; both with a trusted.* and a
    user.* attribute."""
    env = extract_fixture("trac-env-sqlite", os.path.join(public_dir, "envs"))
    os.chmod(os.path.join(public_dir, "envs"), 0o755)
    os.chmod(env, 0o755)
    d = os.path.join(env, "acl")
    os.mkdir(d)
    os.chmod(d, 0o755)
    f = os.path.join(d, "f.txt")
    with open(f, "w") as fh:
        fh.write(SECRET)
    os.chown(f, 0, int(run(["getent", "group", GROUP]).stdout.split(":")[2]))
    os.chmod(f, 0o640)
    run(["setfacl", "-m", "u:nobody:r--,g::---,m::r--", f])
    plain = os.path.join(d, "plain.txt")
    with open(plain, "w") as fh:
        fh.write("plain\n")
    os.chmod(plain, 0o644)
    for p in (f, plain):
        os.setxattr(p, "trusted.x", b"1")
        os.setxattr(p, "user.y", b"2")
    return env


def _cat(who, path):
    p = _as(who, ["cat", path])
    return p.returncode, p.stdout, "Permission denied" in p.stderr


def test_acl_enforced_both_ways(tsh3_user, public_dir, mount_factory, tmp_path):
    env = _acl_env(public_dir)
    m = start_public_mount(mount_factory, public_dir, tmp_path, env)
    os.mkdir(m.path("s"))
    rel = os.path.join("acl", "f.txt")
    # On ENV: the ACL lets nobody read and denies the group member.
    assert _cat(NOBODY, os.path.join(env, rel)) == (0, SECRET, False)
    assert _cat(AS_USER, os.path.join(env, rel))[2]
    # Through the mount: the same, in both directions.
    for who in (NOBODY, AS_USER):
        assert _cat(who, m.path("s", rel)) == _cat(who, os.path.join(env, rel)), who
    assert _cat(NOBODY, m.path("latest", rel)) == (0, SECRET, False)
    assert _cat(AS_USER, m.path("latest", rel))[2]
    # getfacl shows the same ACL.
    want = run(["getfacl", "-n", "-p", os.path.join(env, rel)]).stdout.splitlines()[1:]
    got = run(["getfacl", "-n", "-p", m.path("s", rel)]).stdout.splitlines()[1:]
    assert got == want
    assert "user:65534:r--" in want
    # and getfattr of every attribute: what ENV shows each user
    for who in (NOBODY, AS_USER):
        e = _as(who, ["getfattr", "-d", "-m", "-", os.path.join(env, rel)])
        s = _as(who, ["getfattr", "-d", "-m", "-", m.path("s", rel)])
        strip = lambda t: [x for x in t.splitlines() if not x.startswith("# file:")]
        assert strip(s.stdout) == strip(e.stdout), (who, s.stdout, e.stdout)
        assert "trusted" not in s.stdout


LISTX = ["/usr/bin/python3", "-c",
         "import os, sys; print(' '.join(sorted(os.listxattr(sys.argv[1], follow_symlinks=False))))"]


def test_trusted_xattrs_only_for_root(tsh3_user, public_dir, mount_factory, tmp_path):
    env = _acl_env(public_dir)
    m = start_public_mount(mount_factory, public_dir, tmp_path, env)
    os.mkdir(m.path("s"))
    in_env = os.path.join(env, "acl", "plain.txt")
    in_snap = m.path("s", "acl", "plain.txt")
    # root sees trusted.x on both
    assert "trusted.x" in os.listxattr(in_env)
    assert sorted(os.listxattr(in_snap)) == sorted(os.listxattr(in_env))
    assert os.getxattr(in_snap, "trusted.x") == b"1"
    p = run(["getfattr", "-d", "-m", "-", in_snap])
    assert "trusted.x" in p.stdout
    # nobody sees exactly the names it sees on ENV: no trusted.*
    for who in (NOBODY, AS_USER):
        e = _as(who, LISTX + [in_env])
        s = _as(who, LISTX + [in_snap])
        assert e.returncode == 0 and s.returncode == 0, (e.stderr, s.stderr)
        assert "trusted." not in e.stdout
        assert s.stdout == e.stdout, who
        # the directory too (no attributes there at all besides what ENV has)
        assert _as(who, LISTX + [m.path("s", "acl")]).stdout == _as(who, LISTX + [os.path.join(env, "acl")]).stdout
    p = as_nobody(["getfattr", "-d", "-m", "-", in_snap])
    assert "trusted" not in p.stdout + p.stderr
    assert "user.y" in p.stdout
    p = as_nobody(["getfattr", "-n", "trusted.x", in_snap])
    assert p.returncode != 0 and "trusted.x=" not in p.stdout


# --------------------------------------------------------------- auto names

DAILY, HOURLY = "d-%Y-%m-%d", "h-%Y-%m-%dT%H"


def _created(m, name):
    """How many times the daemon's log says it made NAME on first access."""
    return sum(1 for line in m.log_text().splitlines()
               if "(first access)" in line and ("snapshot %s:" % name) in line)


def _auto_loop_once(mount_factory, public_dir, tmp_path, attempt):
    env = extract_fixture("trac-env-sqlite", os.path.join(public_dir, "envs%d" % attempt))
    m = mount_factory(env, mnt=os.path.join(public_dir, "mnt%d" % attempt),
                      opts=["allow_other", "keep=last:1", "auto=%s:%s" % (DAILY, HOURLY)],
                      start=False)
    m.logpath = os.path.join(str(tmp_path), "auto%d.log" % attempt)
    m.start()
    d, h = time.strftime(DAILY), time.strftime(HOURLY)
    for _ in range(20):
        for name in (d, h):
            as_nobody(["stat", m.path(name)], timeout=120)
    after = (time.strftime(DAILY), time.strftime(HOURLY))
    return m, d, h, after


def test_auto_names_no_loop_for_others(public_dir, mount_factory, tmp_path):
    for attempt in range(3):
        m, d, h, after = _auto_loop_once(mount_factory, public_dir, tmp_path, attempt)
        if after == (d, h):
            break
        m.stop()   # the period rolled over during the loop: again
    else:
        pytest.fail("the hour rolled over in each of 3 attempts")
    assert _created(m, d) == 1, m.log_text()
    assert _created(m, h) == 1, m.log_text()
    # keep=last:1 prunes, but never a name of the current period
    assert d in store_snapshots(m.store) and h in store_snapshots(m.store), m.log_text()
    # once made in this period, never again by a user who may not manage
    # snapshots, even after it went ...
    os.rmdir(m.path(d))
    p = as_nobody(["stat", m.path(d)])
    assert p.returncode != 0 and "No such file" in p.stderr, p.stderr
    if time.strftime(DAILY) == d:
        assert d not in store_snapshots(m.store)
        assert _created(m, d) == 1
    # ... while a manager (root) still makes it on first access
    os.stat(m.path(time.strftime(DAILY)))
    assert time.strftime(DAILY) in store_snapshots(m.store)
