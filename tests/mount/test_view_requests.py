"""What reading a snapshot asks of the daemon (doc/design.md, "The view").

A snapshot never changes, so the kernel may keep what it was told: a
directory's listing comes with every entry's attributes (READDIRPLUS), after
which `find` or `ls -l` needs no lookup per entry, and a listing the kernel
already has is not asked for again; a file's contents go from the store to
the reader without the daemon (FUSE passthrough).  Counted here from the daemon's debug
output (-d prints one "opcode:" line per request it receives); no timing.

Another process dropping the caches meanwhile (drop_caches is machine-wide)
would make the kernel ask again, so each check gets a few tries.
"""
import mmap
import os
import re

import pytest

from tshelpers import run

TRIES = 3
REQUEST = re.compile(r"^unique: \d+, opcode: (\w+) \(\d+\), nodeid: (\d+)", re.M)


def _debug_mount(env_sqlite, mount_factory, opts=()):
    # debug output is not tracsnap's log: every line that is not ours is accepted
    m = mount_factory(env_sqlite, opts=opts, args=["-d"])
    m.expect_log(r"^(?!tracsnap: )")
    return m


def _requests_during(m, fn):
    """(opcode, nodeid) of each request the daemon received while fn ran."""
    before = len(m.log_text())
    fn()
    return [(op, int(node)) for op, node in REQUEST.findall(m.log_text()[before:])]


def _find(path):
    p = run(["find", ".", "-printf", "%y %s %m %U %G %T@ %i %p\n"], cwd=path)
    return p.stdout.splitlines()


def test_listing_brings_attributes_no_lookup_per_entry(env_sqlite, mount_factory):
    m = _debug_mount(env_sqlite, mount_factory)
    seen = []
    for i in range(TRIES):
        name = "s%d" % i
        os.mkdir(m.path(name))          # a new snapshot: the kernel knows none of its entries
        entries = []
        reqs = _requests_during(m, lambda: entries.extend(_find(m.path(name))))
        assert len(entries) > 20
        # lookups below the mount root (nodeid 1 is the root): the
        # snapshot's own name is looked up there
        below = [r for r in reqs if r[0] == "LOOKUP" and r[1] != 1]
        assert any(op == "READDIRPLUS" for op, _ in reqs), reqs
        seen.append(len(below))
        if not below:
            return
    raise AssertionError("lookups per find of %d entries: %s" % (len(entries), seen))


def test_listing_again_is_served_by_the_kernel(env_sqlite, mount_factory):
    m = _debug_mount(env_sqlite, mount_factory)
    os.mkdir(m.path("s"))
    want = _find(m.path("s"))
    seen = []
    for _ in range(TRIES):
        got = []
        reqs = _requests_during(m, lambda: got.extend(_find(m.path("s"))))
        assert sorted(got) == sorted(want)
        listings = [r for r in reqs if r[0] in ("READDIR", "READDIRPLUS")]
        seen.append(len(listings))
        if not listings:
            return
    raise AssertionError("listings asked of the daemon per repeated find: %s" % seen)


PASSTHROUGH = re.compile(r"^tracsnap: file reads go straight to the store \(FUSE passthrough\)$", re.M)


def _no_passthrough_kernel():
    """Why this kernel cannot have FUSE passthrough (Linux 6.9 and
    CONFIG_FUSE_PASSTHROUGH), or None.  Decided from the kernel, not from
    the daemon's log: a daemon that fails to ask must fail the test."""
    release = os.uname().release
    if tuple(int(x) for x in re.findall(r"\d+", release)[:2]) < (6, 9):
        return "kernel %s is older than 6.9: no FUSE passthrough" % release
    try:
        with open("/boot/config-" + release) as f:
            if "CONFIG_FUSE_PASSTHROUGH=y" not in f.read():
                return "kernel %s is built without CONFIG_FUSE_PASSTHROUGH" % release
    except OSError:
        pass
    return None


def _snapshot_with_file(env_sqlite, m, size=3 << 20):
    """A snapshot "s" holding files/big.bin of random bytes; the bytes."""
    data = os.urandom(size)
    with open(os.path.join(env_sqlite, "files", "big.bin"), "wb") as f:
        f.write(data)
    os.mkdir(m.path("s"))
    return data


def _read_both_ways(path):
    """The file's bytes by read() and by mmap, each from its own open."""
    with open(path, "rb") as f:
        read = f.read()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        mapped = bytes(mm)
    return [read, mapped]


def test_file_reads_go_straight_to_the_store(env_sqlite, mount_factory):
    m = _debug_mount(env_sqlite, mount_factory)
    want = _snapshot_with_file(env_sqlite, m)
    got = []
    reqs = _requests_during(m, lambda: got.extend(_read_both_ways(m.path("s", "files", "big.bin"))))
    assert got == [want, want]
    ops = [op for op, _ in reqs]
    why = _no_passthrough_kernel()
    if why:
        pytest.skip(why)
    assert PASSTHROUGH.search(m.log_text()), m.log_text()[-2000:]
    assert ops.count("OPEN") == 2, ops
    assert "READ" not in ops, ops


def test_no_passthrough_reads_through_the_daemon(env_sqlite, mount_factory):
    m = _debug_mount(env_sqlite, mount_factory, opts=["no_passthrough"])
    want = _snapshot_with_file(env_sqlite, m)
    got = []
    reqs = _requests_during(m, lambda: got.extend(_read_both_ways(m.path("s", "files", "big.bin"))))
    assert got == [want, want]
    assert "READ" in [op for op, _ in reqs], reqs
    assert "FUSE passthrough" not in m.log_text()


def test_small_files_keep_the_mounts_page_cache(env_sqlite, mount_factory):
    # A file read again is served from the mount's own page cache: no read
    # and no attribute request, which tar's stat after each file would
    # otherwise cost in passthrough mode.
    m = _debug_mount(env_sqlite, mount_factory)
    want = _snapshot_with_file(env_sqlite, m, size=64 << 10)
    path = m.path("s", "files", "big.bin")

    def read_and_stat():
        with open(path, "rb") as f:
            assert f.read() == want
        os.stat(path)

    first = [op for op, _ in _requests_during(m, read_and_stat)]
    assert "READ" in first, first
    seen = []
    for _ in range(TRIES):
        again = [op for op, _ in _requests_during(m, read_and_stat)]
        seen.append(again)
        if "READ" not in again and "GETATTR" not in again:
            return
    raise AssertionError("requests of a small file read again: %s" % seen)
