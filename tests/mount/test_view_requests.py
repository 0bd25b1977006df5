"""What reading a snapshot asks of the daemon (doc/design.md, "The view").

A snapshot never changes, so the kernel may keep what it was told: a
directory's listing comes with every entry's attributes (READDIRPLUS), after
which `find` or `ls -l` needs no lookup per entry, and a listing the kernel
already has is not asked for again.  Counted here from the daemon's debug
output (-d prints one "opcode:" line per request it receives); no timing.

Another process dropping the caches meanwhile (drop_caches is machine-wide)
would make the kernel ask again, so each check gets a few tries.
"""
import os
import re

from tshelpers import run

TRIES = 3
REQUEST = re.compile(r"^unique: \d+, opcode: (\w+) \(\d+\), nodeid: (\d+)", re.M)


def _debug_mount(env_sqlite, mount_factory):
    # debug output is not tracsnap's log: every line that is not ours is accepted
    m = mount_factory(env_sqlite, args=["-d"])
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
