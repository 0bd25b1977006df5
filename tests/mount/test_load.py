"""Issue 6, load: 8 readers tar different snapshots while snapshots are made
(every ~2 s) and removed and a Trac-like writer runs, for two minutes.

No reader may see an error: a snapshot is removed only when no reader uses
it, so every error counts.  Every mkdir succeeds, the daemon stays alive, its
RSS stays below 64 MiB, the writer never sees "database is locked", and the
snapshots that remain are consistent (tracwriter.check_snapshot) and verify.
"""
import os
import random
import subprocess
import sys
import threading
import time

from tshelpers import TOP, snapshot_names, store_entries, tracsnap

sys.path.insert(0, os.path.join(TOP, "tests"))
import tracwriter  # noqa: E402
from test_consistency import Writer  # noqa: E402

SECONDS = float(os.environ.get("TRACSNAP_LOAD_SECONDS", "120"))
READERS = 8
KEEP = 10                 # snapshots kept; the oldest unused one goes
RSS_LIMIT_KIB = 64 * 1024


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_load(env_sqlite, mount_factory, tmp_path):
    seed = int(os.environ.get("TRACSNAP_LOAD_SEED", time.time_ns() % 1000000))
    print("seed", seed)
    rnd = random.Random(seed)
    # some bulk so that a tar takes a moment
    bulk = os.path.join(env_sqlite, "files", "bulk")
    os.makedirs(bulk)
    for i in range(200):
        with open(os.path.join(bulk, "b%03d" % i), "wb") as f:
            f.write(rnd.randbytes(rnd.randrange(1000, 200000)))
    m = mount_factory(env_sqlite)
    pid = m.proc.pid
    ack = str(tmp_path / "ack.log")
    w = Writer(env_sqlite, ack, seconds=SECONDS + 60, seed=seed)
    mu = threading.Lock()
    in_use = {}                  # name -> readers now reading it
    times = {}                   # name -> (t0, t1) of its mkdir
    errors, mkdir_fail = [], []
    tars = [0]
    stop = threading.Event()
    rss_max = [0]

    def reader(k):
        rr = random.Random(seed * 100 + k)
        while not stop.is_set():
            with mu:
                names = sorted(times)
                if not names:
                    name = None
                else:
                    # different snapshots: the least used ones first
                    low = min(in_use.get(n, 0) for n in names)
                    name = rr.choice([n for n in names if in_use.get(n, 0) == low])
                    in_use[name] = in_use.get(name, 0) + 1
            if name is None:
                time.sleep(0.1)
                continue
            try:
                p = subprocess.run(["tar", "-cf", "-", "-C", m.path(name), "."],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
                if p.returncode != 0 or p.stderr:
                    with mu:
                        errors.append("tar %s: rc %d: %s" % (name, p.returncode,
                                                             p.stderr.decode(errors="replace")[:500]))
                else:
                    with mu:
                        tars[0] += 1
            except subprocess.TimeoutExpired:
                with mu:
                    errors.append("tar %s: no end within 120 s (deadlock?)" % name)
            finally:
                with mu:
                    in_use[name] -= 1

    def sampler():
        while not stop.is_set():
            try:
                rss_max[0] = max(rss_max[0], rss_kib(pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.5)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(READERS)]
    threads.append(threading.Thread(target=sampler))
    made = removed = 0
    try:
        w.wait_started()
        for t in threads:
            t.start()
        deadline = time.monotonic() + SECONDS
        i = 0
        while time.monotonic() < deadline:
            name = "l%04d" % i
            i += 1
            t0 = time.monotonic()
            try:
                os.mkdir(m.path(name))
            except OSError as e:
                mkdir_fail.append("mkdir %s: %s" % (name, e))
                break
            t1 = time.monotonic()
            made += 1
            with mu:
                times[name] = (t0, t1)
                # remove the oldest snapshot no reader uses
                victim = None
                if len(times) > KEEP:
                    free = [n for n in sorted(times) if in_use.get(n, 0) == 0]
                    if free:
                        victim = free[0]
                        del times[victim]
                        in_use.pop(victim, None)
            if victim:
                os.rmdir(m.path(victim))
                removed += 1
            assert m.proc.poll() is None, "daemon died:\n" + m.log_text()
            time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
    finally:
        stop.set()
        for t in threads:
            if t.ident:
                t.join(timeout=180)
        recs, summary = w.stop()
    print("snapshots made %d, removed %d, tars %d, daemon RSS max %d KiB"
          % (made, removed, tars[0], rss_max[0]))
    assert not mkdir_fail, mkdir_fail
    assert not errors, errors[:10]
    assert all(not t.is_alive() for t in threads), "a reader is stuck"
    assert m.proc.poll() is None, "daemon died:\n" + m.log_text()
    assert made >= SECONDS / 4, made
    assert tars[0] >= READERS, tars[0]
    assert 0 < rss_max[0] < RSS_LIMIT_KIB, rss_max[0]
    assert summary is not None, "the writer left no summary"
    assert summary["errors"] == [], "the writer saw errors: %s" % summary["errors"][:5]
    # what remains is consistent and verifies
    listed = snapshot_names(m.mnt)
    assert listed == sorted(times), (listed, sorted(times))
    for name in listed:
        problems, _ = tracwriter.check_snapshot(m.path(name), recs, *times[name])
        assert not problems, (name, problems[:5])
    p = tracsnap("verify", "--store", m.store, env_sqlite, check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not [n for n in store_entries(m.store) if n.startswith((".tmp-", ".del-"))]
