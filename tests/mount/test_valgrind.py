"""A whole daemon session under valgrind memcheck: mount the SQLite fixture,
take a snapshot with mkdir, read it (cat, tar, sqlite3), unmount.  memcheck
must report no error and no definitely or indirectly lost block; "still
reachable" memory (libfuse's and glibc's one-time allocations) is allowed.

Slow (everything runs on valgrind's synthetic CPU), hence the long timeouts.
Skipped for sanitizer builds (valgrind cannot run them) and without valgrind.
`make valgrind-daemon` runs only this file.
"""
import os
import re
import shutil
import subprocess
import threading

import pytest

from tshelpers import Mount, extract_fixture, run

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRACSNAP_SANITIZER")) or shutil.which("valgrind") is None,
    reason="needs valgrind and a build without sanitizers")

# fuse-compatible: valgrind otherwise holds its global lock across syscalls it
# does not expect to block (statfs, stat, ...).  When a daemon thread makes one
# on its own mount point (fs_watch.c's read-ahead setup statfs()es it), the
# FUSE worker that must answer can never run and the process hangs for ever.
VALGRIND = ["valgrind", "--tool=memcheck", "--sim-hints=fuse-compatible", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
            "--track-fds=no", "--num-callers=30"]

# A hung daemon would leave the test blocked in a syscall on the mount: after
# this long the watchdog kills it, which makes those syscalls fail.
WATCHDOG_S = 300


def lost_bytes(report, kind):
    """Bytes memcheck's LEAK SUMMARY gives for kind ('definitely', ...); 0 when
    the summary does not list it."""
    m = re.search(r"%s lost: ([\d,]+) bytes" % kind, report)
    return int(m.group(1).replace(",", "")) if m else 0


def test_daemon_session_is_clean_under_memcheck(tmp_path):
    env = extract_fixture("trac-env-sqlite", str(tmp_path / "envs"))
    vglog = str(tmp_path / "valgrind.log")
    m = Mount(env, str(tmp_path / "mnt"), str(tmp_path / "store"),
              prefix=VALGRIND + ["--log-file=" + vglog], mount_timeout=60)
    watchdog = None
    rc = None
    try:
        m.start()
        watchdog = threading.Timer(WATCHDOG_S, m.proc.kill)
        watchdog.start()
        os.mkdir(m.path("vg"))
        snap = m.path("vg")
        assert sorted(os.listdir(m.mnt)) == ["latest", "vg"]
        with open(os.path.join(snap, "VERSION")) as f:
            assert f.read().startswith("Trac Environment Version 1")
        run(["cat", os.path.join(snap, "conf", "trac.ini")], stdout=subprocess.DEVNULL)
        run(["tar", "-C", snap, "-cf", "-", "."], stdout=subprocess.DEVNULL, timeout=300)
        db = os.path.join(snap, "db", "trac.db")
        out = run(["sqlite3", "-readonly", db, "select count(*) from ticket"]).stdout
        assert out.strip() == "30"
        assert os.readlink(m.path("latest")) == "vg"

        run(["fusermount3", "-u", m.mnt], timeout=60)
        rc = m.proc.wait(timeout=120)
    finally:
        if watchdog:
            watchdog.cancel()
        m.stop()
    with open(vglog, errors="replace") as f:
        report = f.read()
    where = "\nvalgrind log %s:\n%s\ndaemon log:\n%s" % (vglog, report[-20000:], m.log_text())
    assert rc == 0, "daemon exited %s under valgrind%s" % (rc, where)
    assert "ERROR SUMMARY: 0 errors" in report, where
    assert lost_bytes(report, "definitely") == 0, where
    assert lost_bytes(report, "indirectly") == 0, where
    m.check()
