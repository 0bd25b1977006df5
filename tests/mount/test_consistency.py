"""Spec section 4: snapshots taken while Trac writes are consistent.

tests/tracwriter.py plays Trac (DEFERRED transactions, 10 s busy timeout,
attachments written in Trac's order) in its own process while the test takes
snapshots by mkdir and by first access.  Every snapshot is then checked against
the writer's acknowledgement log by tracwriter.check_snapshot (integrity, I1,
I2, I3), and the writer must never have seen "database is locked".
"""
import os
import random
import signal
import subprocess
import sys
import time

from tshelpers import TOP

sys.path.insert(0, os.path.join(TOP, "tests"))
import tracwriter  # noqa: E402

WRITER = os.path.join(TOP, "tests", "tracwriter.py")
AUTO_SEC = "%Y-%m-%dT%H%M%S"


class Writer:
    """tracwriter.py in a subprocess; stop() ends it gracefully and returns
    (records, summary)."""

    def __init__(self, env, ack, seconds=85, seed=None, extra=()):
        self.ack = ack
        self.out = ack + ".out"
        self.proc = subprocess.Popen(
            [sys.executable, WRITER, env, "--seconds", str(seconds), "--ack-log", ack]
            + (["--seed", str(seed)] if seed is not None else []) + list(extra),
            stdout=open(self.out, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def alive(self):
        return self.proc.poll() is None

    def wait_started(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.ack) and os.path.getsize(self.ack) > 0:
                return
            assert self.alive(), "writer died: %s" % open(self.out).read()
            time.sleep(0.05)
        raise AssertionError("writer wrote nothing within %ds" % timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return tracwriter.read_ack_log(self.ack)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def first_access(m, fmt, taken):
    """Stat the current name of `fmt` (a fresh one) and return (name, t0, t1)."""
    deadline = time.monotonic() + 10
    while True:
        name = time.strftime(fmt)
        if name in taken:
            time.sleep(0.05)
            continue
        t0 = time.monotonic()
        try:
            st = os.stat(m.path(name))
        except FileNotFoundError:
            # the second (or the day) turned between strftime and the lookup
            if time.strftime(fmt) != name and time.monotonic() < deadline:
                continue
            raise
        t1 = time.monotonic()
        assert (st.st_mode & 0o170000) == 0o040000, "%s is not a directory" % name
        return name, t0, t1


def take_snapshots(m, writer, count, first_access_every=4, fmt=AUTO_SEC, prefix="c",
                   gap=(0.2, 0.8), extra_first=()):
    """Take `count` snapshots while `writer` runs: every `first_access_every`-th by
    first access of `fmt`, the others by mkdir.  Returns [(name, how, t0, t1)]."""
    taken = []
    names = set()
    rng = random.Random(4)
    for f in extra_first:                         # e.g. today's %Y-%m-%d
        name, t0, t1 = first_access(m, f, names)
        names.add(name)
        taken.append((name, "first access " + f, t0, t1))
    i = 0
    while len(taken) < count:
        assert writer.alive(), "writer ended early: %s" % open(writer.out).read()
        time.sleep(rng.uniform(*gap))
        if first_access_every and i % first_access_every == first_access_every - 1:
            name, t0, t1 = first_access(m, fmt, names)
            how = "first access"
        else:
            name = "%s%02d" % (prefix, i)
            t0 = time.monotonic()
            os.mkdir(m.path(name))
            t1 = time.monotonic()
            how = "mkdir"
        names.add(name)
        taken.append((name, how, t0, t1))
        i += 1
    return taken


def verify_all(m, taken, recs, summary):
    """Check every snapshot; print one line each; assert at the end so that all
    failures are shown together."""
    failures = []
    listing = set(os.listdir(m.mnt))
    for name, how, t0, t1 in taken:
        assert name in listing, "snapshot %s (%s) not listed in %s" % (name, how, sorted(listing))
        problems, info = tracwriter.check_snapshot(m.path(name), recs, t0, t1)
        print("snapshot %-22s %-28s %6.0f ms  %s" % (name, how, (t1 - t0) * 1000, info))
        for p in problems[:15]:
            failures.append("%s (%s): %s" % (name, how, p))
        if len(problems) > 15:
            failures.append("%s: ... %d more problems" % (name, len(problems) - 15))
    print("writer:", summary)
    assert summary is not None, "writer left no summary"
    assert not failures, "inconsistent snapshots:\n" + "\n".join(failures)
    assert summary["errors"] == [], "the writer saw errors: %s" % summary["errors"][:5]


def test_snapshots_consistent_while_trac_writes(env_sqlite, mount_factory, tmp_path):
    """24 snapshots (mkdir and first access) while the writer runs: I1, I2, I3,
    integrity, and no "database is locked" for the writer."""
    m = mount_factory(env_sqlite, opts=["auto=%Y-%m-%d:" + AUTO_SEC])
    w = Writer(env_sqlite, str(tmp_path / "ack.log"), seconds=85, seed=11)
    try:
        w.wait_started()
        t = time.monotonic()
        taken = take_snapshots(m, w, 24, extra_first=("%Y-%m-%d",))
        print("took %d snapshots in %.1f s" % (len(taken), time.monotonic() - t))
        time.sleep(0.5)
        recs, summary = w.stop()
    finally:
        w.kill()
    assert sum(1 for r in recs if r["op"] in ("ticket", "attach")) > 50, \
        "the writer hardly wrote: %s" % (summary,)
    verify_all(m, taken, recs, summary)
    print("longest commit wait of the writer: %.3f s (%s)" % (summary["max_wait"], summary["max_wait_op"]))


def test_concurrent_first_access_one_snapshot(env_sqlite, mount_factory, tmp_path):
    """Several processes stat the same new auto name at once while Trac writes:
    all succeed, one snapshot results, and it is consistent."""
    m = mount_factory(env_sqlite, opts=["auto=" + AUTO_SEC])
    w = Writer(env_sqlite, str(tmp_path / "ack.log"), seconds=60, seed=12)
    procs = []
    try:
        w.wait_started()
        time.sleep(1.0)
        # six processes wait for the same moment, just after a second starts, and
        # look the same new name up together
        target = int(time.time()) + 2 + 0.02
        name = time.strftime(AUTO_SEC, time.localtime(target))
        code = ("import os,sys,time; t=float(sys.argv[2]); time.sleep(max(0, t-time.time()));"
                " print(os.stat(sys.argv[1]).st_ino)")
        procs = [subprocess.Popen([sys.executable, "-c", code, m.path(name), repr(target)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        # t0: the target moment on the monotonic clock, a little early to be safe
        t0 = time.monotonic() + (target - time.time()) - 0.005
        outs = [p.communicate(timeout=120) for p in procs]
        t1 = time.monotonic()
        time.sleep(0.5)
        recs, summary = w.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        w.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, "stat of %s failed: %s" % (name, err)
    assert len(set(o.strip() for o, _ in outs)) == 1, "different inodes: %s" % outs
    snaps = [n for n in os.listdir(m.mnt) if n != "latest"]
    assert snaps == [name], "expected exactly one snapshot %s, got %s" % (name, snaps)
    verify_all(m, [(name, "6 concurrent first accesses", t0, t1)], recs, summary)
