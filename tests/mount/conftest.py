"""Shared fixtures for tracsnap's mount-level tests (the helpers they use
are in tests/tshelpers.py, shared with scripts/bench).

Every test runs the real daemon on a real mount point and checks the result
with ordinary tools.  Mounts and daemons are torn down even when a test fails:
`fusermount3 -u`, then a lazy unmount, then SIGKILL.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))        # tests/: tshelpers, tracwriter, pgcluster

from tshelpers import Mount, extract_fixture  # noqa: E402


@pytest.fixture
def env_sqlite(tmp_path):
    """A fresh copy of the SQLite fixture environment made by real Trac."""
    return extract_fixture("trac-env-sqlite", str(tmp_path / "envs"))


@pytest.fixture
def mount_factory(tmp_path):
    """mount_factory(env, store=None, opts=(), args=(), mnt=None, start=True,
    **Mount keywords) -> Mount (started unless start=False).  All mounts are
    stopped at teardown, also after failures, and then checked strictly."""
    mounts = []

    def make(env, store=None, opts=(), args=(), mnt=None, start=True, **kw):
        n = len(mounts)
        m = Mount(env, mnt or str(tmp_path / ("mnt%d" % n)), store or str(tmp_path / ("store%d" % n)),
                  opts=opts, args=args, **kw)
        mounts.append(m)
        if start:
            m.start()
        return m

    yield make
    for m in mounts:
        m.stop()
    # Strict: a daemon that exited badly or logged an undeclared warning or
    # error fails the test (Mount.check).
    for m in mounts:
        m.check()


@pytest.fixture
def mnt(env_sqlite, mount_factory):
    """The SQLite fixture environment, mounted with default options."""
    return mount_factory(env_sqlite)


@pytest.fixture
def public_dir():
    """A 0755 directory outside pytest's private (0700) tmp tree, for mount
    points that user nobody must reach.  Anything still mounted below it at
    teardown is lazily unmounted before removal."""
    d = tempfile.mkdtemp(prefix="tracsnap-pub-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    for n in os.listdir(d):
        p = os.path.join(d, n)
        if os.path.ismount(p):
            subprocess.run(["fusermount3", "-u", "-z", p], stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)
