"""Taking snapshots the two ways the bench measures.

Visible vs sealed.  A snapshot is "visible" as soon as its tree is complete
and consistent; "sealing" follows (content hashes from the store, bounded
writeback, syncfs, manifest swap), and until it is done STORE/NAME/unsealed
exists.  `mkdir MNT/NAME` on a mounted daemon (ts_mount, mkdir_snapshot)
returns when the snapshot is visible, and the daemon seals in the
background: the bench polls for the marker to go (every 5 ms) and always
waits for the seal, so that runs never overlap.  `tracsnap snapshot`
(ts_snapshot) seals before it exits.

The daemon, the CLI and the wait for a seal are tests/tshelpers.py's (Mount,
cli_snapshot, wait_sealed); what is the bench's own here is timing them,
waiting for the stage and turning failures into BenchError.
"""
import contextlib
import os
import re
import shlex
import subprocess
import time

import tshelpers
from tsbench.common import BenchError, fuse_unmount, log, tail

MOUNT_TIMEOUT = 20      # seconds for the daemon's mount to appear
STOP_TIMEOUT = 15       # seconds a daemon may take to end after its unmount


@contextlib.contextmanager
def ts_mount(env, store, mnt, logpath):
    """Run `tracsnap -f -o store=STORE ENV MNT` in the background for the
    with-block (a tshelpers.Mount, its output appended to logpath)."""
    os.makedirs(mnt, exist_ok=True)
    fuse_unmount(mnt)
    m = tshelpers.Mount(env, mnt, store, logpath=logpath, mount_timeout=MOUNT_TIMEOUT,
                        stop_timeout=STOP_TIMEOUT)
    try:
        try:
            m.start()
        except AssertionError:
            if m.proc is not None and m.proc.poll() is not None:
                raise BenchError("tracsnap mount exited with %d: %s" % (m.proc.returncode, tail(logpath)))
            raise BenchError("tracsnap mount did not appear on %s within %d s" % (mnt, MOUNT_TIMEOUT))
        yield m
    finally:
        m.stop()
        if m.proc is not None and m.proc.returncode not in (0, None):
            log("note: tracsnap daemon exited with %s (log %s)" % (m.proc.returncode, logpath))


SNAP_RE = re.compile(r"lock held (\d+) ms, total (\d+) ms")


def ts_snapshot(env, store, name, timeout=3600):
    """tracsnap snapshot; returns (wall seconds, lock held ms, total ms, output line).

    The CLI seals the snapshot inline before it prints and exits, so the wall time
    (and "total") is the sealed time: visible + hashing + writeback + syncfs."""
    t = time.monotonic()
    try:
        cp = tshelpers.cli_snapshot(env, store, name, check=False, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError("timed out after %ss: %s" % (timeout, shlex.join(e.cmd)))
    wall = time.monotonic() - t
    if cp.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (shlex.join(cp.args), cp.returncode,
                                               (cp.stderr or cp.stdout).strip()[-800:]))
    out = cp.stdout.strip()
    m = SNAP_RE.search(out)
    if not m:
        raise BenchError("unexpected tracsnap snapshot output: %r" % out)
    return wall, int(m.group(1)), int(m.group(2)), out


def wait_staged(store, name, timeout=120):
    """Poll until the daemon has staged snapshot NAME for the next one
    (STORE/.stage/base names it; snapshot/take/stage.h): the stage is built right
    after the seal, and the store's size and the next snapshot depend on it."""
    base = os.path.join(store, ".stage", "base")
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            with open(base) as f:
                if f.read().split("\n")[0] == name:
                    return
        if time.monotonic() > deadline:
            raise BenchError("snapshot %s not staged after %d s" % (name, timeout))
        time.sleep(0.005)


def mkdir_snapshot(store, mnt, name, daemon=None, logpath=None, timeout=3600):
    """The product's main path: `mkdir MNT/NAME` on a mounted tracsnap (see ts_mount).

    mkdir returns when the snapshot is visible (its tree complete and consistent);
    the daemon then seals it in the background (hashes from the store, bounded
    writeback, syncfs, manifest swap, removal of STORE/NAME/unsealed).  Returns
    (visible, sealed): seconds from the mkdir call until it returned, and until the
    unsealed marker was gone.  Always waits for the seal, so that the next
    measurement never overlaps this snapshot's sealing.  NAME must be new.
    daemon: the ts_mount (a tshelpers.Mount) whose death ends the wait."""
    path = os.path.join(mnt, name)
    t0 = time.monotonic()
    try:
        os.mkdir(path)
    except OSError as e:
        raise BenchError("mkdir %s: %s (daemon log: %s)" % (path, e, tail(logpath) if logpath else "-"))
    visible = time.monotonic() - t0
    if not os.path.isdir(os.path.join(store, name)):
        raise BenchError("mkdir %s returned but %s is not in the store"
                         % (path, os.path.join(store, name)))
    try:
        sealed = tshelpers.wait_sealed(store, name, timeout=timeout, poll=0.005, daemon=daemon) - t0
    except AssertionError:
        if daemon is not None and daemon.proc.poll() is not None:
            raise BenchError("tracsnap daemon exited with %s before %s was sealed: %s"
                             % (daemon.proc.returncode, name, tail(logpath) if logpath else "-"))
        raise BenchError("snapshot %s still unsealed after %d s" % (os.path.join(store, name), timeout))
    return visible, sealed
