"""Spec section 6: restore checks what it restores, is atomic and
recoverable, and keeps the state before it as a snapshot (issue 16, cases 2,
5, 6 and 7).

- A snapshot whose stored copy differs from its manifest (a flipped byte, a
  missing or an extra file), an unsealed one, one discarded after a restart,
  one of another environment, and a directory with no manifest (a `cp -a`
  copy) are refused in one line naming the snapshot and the cause, ENV
  unchanged and nothing left beside it; --force restores them.
- A process that starts using ENV while the copy runs is caught by the
  second busy check, right before the exchange.
- A restore killed at its syncfs, right before its exchange, or right after
  it leaves ENV whole (one tree or the other), and the next restore says in
  one line what it rolled back or finished.
- The state before the restore is the snapshot pre-restore-<time> of the
  store: listed, restorable; nothing appears beside ENV.
"""
import glob
import os
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from tshelpers import cli_snapshot, extract_fixture, run, tracsnap, tree_state

EX_USAGE, EX_DATAERR, EX_TEMPFAIL = 64, 65, 75
JOURNALS = "/var/lib/tracsnap/restore"


def journal_name(env):
    """The journal's file name for env (doc/design.md, Restore)."""
    keep = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    return "".join(chr(c) if c in keep else "%%%02X" % c for c in os.fsencode(env))


def state(path):
    out = tree_state(path, owners=True, top=True)
    del out["."]["mtime_ns"]
    return out


def rows(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return c.execute("SELECT * FROM ticket ORDER BY id").fetchall()
    finally:
        c.close()


def siblings(env):
    return sorted(os.path.basename(p) for p in glob.glob(env + ".*"))


def kept(store):
    return sorted(s for s in os.listdir(store) if s.startswith("pre-restore-"))


def change(env):
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    with c:
        c.execute("INSERT INTO ticket (id, summary) VALUES (9001, 'after the snapshot')")
    c.close()
    with open(os.path.join(env, "htdocs", "new.txt"), "w") as f:
        f.write("new\n")


@pytest.fixture
def setup(env_sqlite, tmp_path):
    """ENV with a data file, its sealed snapshot `one` in STORE, then ENV
    changed: (env, store, tree)."""
    env = env_sqlite
    with open(os.path.join(env, "htdocs", "data.bin"), "wb") as f:
        f.write(os.urandom(100000))
    store = str(tmp_path / "store")
    tree = cli_snapshot(env, store, "one").tree
    change(env)
    return env, store, tree


def assert_refused(p, code, line, env, before, store):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert p.stderr == "tracsnap: %s\n" % line, p.stderr
    assert state(env) == before
    assert siblings(env) == []
    assert kept(store) == []


# ------------------------------------------------------------------ case 2


@pytest.mark.parametrize("damage", ["flip", "missing", "extra"])
def test_damaged_snapshot_refused(setup, damage):
    env, store, tree = setup
    target = os.path.join(tree, "htdocs", "data.bin")
    if damage == "flip":
        # One byte changed in place, as dd conv=notrunc does: same size.
        with open(target, "r+b") as f:
            f.seek(5000)
            b = f.read(1)
            f.seek(5000)
            f.write(bytes([b[0] ^ 0xff]))
        why = "content differs from the manifest"
        rel = "htdocs/data.bin"
    elif damage == "missing":
        os.unlink(target)
        why = "missing: the manifest lists a regular file"
        rel = "htdocs/data.bin"
    else:
        with open(os.path.join(tree, "htdocs", "planted.txt"), "w") as f:
            f.write("not in the manifest\n")
        why = "not in the manifest"
        rel = "htdocs/planted.txt"
    before = state(env)
    p = tracsnap("restore", tree, env, check=False)
    assert_refused(p, EX_DATAERR, "one/%s: damaged (%s); see tracsnap verify --repair" % (rel, why),
                   env, before, store)
    # --force restores it anyway, and says what was damaged.
    p = tracsnap("restore", "--force", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    assert "one/%s: damaged (%s)" % (rel, why) in p.stderr and "--force" in p.stderr, p.stderr
    assert p.stdout.startswith("restored one into %s" % env), p.stdout
    assert siblings(env) == []


def test_unsealed_and_discarded_refused(setup):
    env, store, tree = setup
    marker = os.path.join(store, "one", "unsealed")
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    before = state(env)
    with open(marker, "w") as f:
        f.write(boot + "\n")
    p = tracsnap("restore", tree, env, check=False)
    assert_refused(p, EX_TEMPFAIL, "one: not sealed yet; wait for it or use --force", env, before, store)
    # From another boot: discarded (it may have lost data in the crash).
    with open(marker, "w") as f:
        f.write("00000000-1111-2222-3333-444444444444\n")
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode == EX_DATAERR, p.stderr
    assert re.fullmatch(r"tracsnap: one: discarded \(.*\); use --force to restore it anyway\n", p.stderr), \
        p.stderr
    assert state(env) == before and siblings(env) == [] and kept(store) == []
    p = tracsnap("restore", "--force", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(os.path.join(env, "htdocs", "new.txt"))


def test_snapshot_of_another_environment_refused(setup, tmp_path):
    env, store, tree = setup
    other = extract_fixture("trac-env-sqlite", str(tmp_path / "other"))
    before = state(other)
    p = tracsnap("restore", tree, other, check=False)
    assert_refused(p, EX_USAGE, "one is a snapshot of %s, not of %s; use --force to restore it anyway"
                   % (env, other), other, before, store)
    p = tracsnap("restore", "--force", "--store", tmp_path / "otherstore", tree, other, check=False)
    assert p.returncode == 0, p.stderr
    assert os.path.exists(os.path.join(other, "htdocs", "data.bin"))
    # Its previous state went to the store given, not to the snapshot's.
    assert kept(store) == [] and len(kept(str(tmp_path / "otherstore"))) == 1


def test_copy_without_manifest_refused(setup, tmp_path):
    env, store, tree = setup
    copy = str(tmp_path / "copy")
    run(["cp", "-a", tree, copy])
    before = state(env)
    p = tracsnap("restore", copy, env, check=False)
    assert_refused(p, EX_DATAERR, "%s: cannot check: no manifest; --force restores it unchecked" % copy,
                   env, before, store)
    p = tracsnap("restore", "--force", "--store", store, copy, env, check=False)
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(os.path.join(env, "htdocs", "new.txt"))


# ------------------------------------------------------------------ case 7


def test_previous_state_is_a_snapshot_in_the_store(setup):
    env, store, tree = setup
    want = state(tree)
    changed, changed_rows = state(env), rows(os.path.join(env, "db", "trac.db"))
    # By NAME in the store.
    p = tracsnap("restore", "--store", store, "one", env)
    assert siblings(env) == [], "something left beside ENV"
    names = kept(store)
    assert len(names) == 1 and re.fullmatch(r"pre-restore-\d{4}-\d\d-\d\dT\d{6}", names[0]), names
    assert p.stdout == ("restored one into %s (previous state kept as snapshot %s; %s" %
                        (env, names[0], p.stdout.split("; ", 1)[1])), p.stdout
    got = state(env)
    for k in set(got) | set(want):
        if k != "db/trac.db":
            assert got.get(k) == want.get(k), k
    listed = tracsnap("list", "--store", store, env).stdout
    assert names[0] in listed, listed
    assert not os.path.exists(os.path.join(store, names[0], "unsealed"))
    # It is what ENV was, and restoring it puts that back.
    p = tracsnap("restore", os.path.join(store, names[0], "tree"), env)
    assert rows(os.path.join(env, "db", "trac.db")) == changed_rows
    got = state(env)
    for k in set(got) | set(changed):
        if k != "db/trac.db":
            assert got.get(k) == changed.get(k), k
    assert len(kept(store)) == 2 and siblings(env) == []


def test_unsnapshottable_env_refused_unless_forced(setup):
    """ENV without its database cannot be kept: refused; --force restores
    and says nothing was kept."""
    env, store, tree = setup
    os.unlink(os.path.join(env, "db", "trac.db"))
    before = state(env)
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode != 0 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "cannot keep its present state as a snapshot" in p.stderr and "--force" in p.stderr, p.stderr
    assert state(env) == before and siblings(env) == [] and kept(store) == []
    p = tracsnap("restore", "--force", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    assert "previous state not kept" in p.stdout, p.stdout
    assert os.path.exists(os.path.join(env, "db", "trac.db"))


# ------------------------------------------------------------------ case 5


OPENER = r"""
import os, sqlite3, sys, time
env = sys.argv[1]
parent, name = os.path.split(env)
deadline = time.time() + 60
while not any(n.startswith(name + '.restore-tmp-') for n in os.listdir(parent)):
    if time.time() > deadline:
        sys.exit('no restore copy appeared')
    time.sleep(0.0005)
log = open(os.path.join(env, 'log', 'trac.log'), 'a')
c = sqlite3.connect(os.path.join(env, 'db', 'trac.db'))
c.execute('SELECT count(*) FROM ticket').fetchall()
print('opened', flush=True)
time.sleep(120)
"""


def test_process_that_starts_during_the_copy_is_caught(setup, tmp_path):
    env, store, _ = setup
    # Big enough that the copy takes a moment.
    with open(os.path.join(env, "htdocs", "big.bin"), "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    tree = cli_snapshot(env, store, "big").tree
    change2 = os.path.join(env, "htdocs", "later.txt")
    with open(change2, "w") as f:
        f.write("later\n")
    before = state(env)
    opener = subprocess.Popen([sys.executable, "-c", OPENER, env], stdout=subprocess.PIPE, text=True)
    try:
        p = tracsnap("restore", tree, env, check=False)
        assert opener.stdout.readline().strip() == "opened"
        assert p.returncode == EX_TEMPFAIL, (p.returncode, p.stdout, p.stderr)
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("tracsnap: %s: in use by " % env), p.stderr
        assert "pid %d (python" % opener.pid in lines[0] and "--force" in lines[0], p.stderr
        assert state(env) == before
        assert siblings(env) == []
    finally:
        opener.kill()
        opener.wait()
    # The connection that was open sees a working database still.
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    with c:
        c.execute("INSERT INTO ticket (id, summary) VALUES (9002, 'still writable')")
    c.close()


# ------------------------------------------------------------------ case 6


def under_strace():
    """The environment for a tracsnap run under strace: LeakSanitizer (the
    address sanitizer build, Makefile's ASAN_OPTIONS) cannot work under
    ptrace and would fail the run; everything else is checked as usual.
    The runs count renameat calls in one run to kill the next at the same
    one: sealing's links, which depend on what the two runs' snapshots hold
    (snapshot/store/seal_share.h), are left out of both."""
    env = dict(os.environ)
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    env["TRACSNAP_TEST_NO_SEAL_SHARE"] = "1"
    return env


def trace_counts(env, tree, store):
    """Restore once under strace: how many renameat2 calls come up to the
    exchange, how many syncfs up to the copy's, and how many renameat up to
    the first one after the exchange."""
    log = os.path.join(store, "..", "strace.log")
    run(["strace", "-f", "-o", log, "-e", "trace=renameat,renameat2,syncfs",
         os.environ.get("TRACSNAP_BIN", "tracsnap"), "restore", tree, env], env=under_strace())
    calls = [l for l in open(log) if re.match(r"\d+\s+(renameat2?|syncfs)\(", l)]
    n2 = nat = 0
    exchange = after = None
    for l in calls:
        if " renameat2(" in l:
            n2 += 1
            if "RENAME_EXCHANGE" in l:
                exchange = n2
        elif " renameat(" in l:
            nat += 1
            if exchange is not None and after is None:
                after = nat
    assert exchange is not None, "no RENAME_EXCHANGE: " + "".join(calls)
    assert after is not None, "".join(calls)
    return exchange, after


def killed_restore(env, tree, inject):
    p = run(["strace", "-f", "-o", "/dev/null", "-e", "inject=%s:signal=SIGKILL" % inject,
             os.environ.get("TRACSNAP_BIN", "tracsnap"), "restore", tree, env], check=False,
            env=under_strace())
    assert p.returncode != 0, "not killed: %s %s" % (p.stdout, p.stderr)


@pytest.mark.parametrize("where", ["syncfs", "exchange", "after-exchange"])
def test_interrupted_restore_is_settled_by_the_next(setup, where):
    env, store, tree = setup
    want = state(tree)
    if where == "syncfs":
        inject = "syncfs:when=1"   # the copy's: the first
    else:
        exchange, after = trace_counts(env, tree, store)
        # ENV as the snapshot now; change it again, to tell the trees apart.
        change(env)
        inject = "renameat2:when=%d" % exchange if where == "exchange" else "renameat:when=%d" % after
    old = state(env)
    killed_restore(env, tree, inject)
    # Killed in the rename that follows the exchange: the journal's, whose
    # new file (.new-PID-START) stays behind until the next restore.
    stale = [n for n in os.listdir(JOURNALS) if n.startswith(".new-")]
    if where == "after-exchange":
        assert stale, os.listdir(JOURNALS)
    got = state(env)
    assert os.path.isdir(env)
    leftovers = [s for s in siblings(env) if ".restore-tmp-" in s]
    assert len(leftovers) == 1, siblings(env)
    if where == "after-exchange":
        assert got == want or {k: v for k, v in got.items() if k != "db/trac.db"} == \
            {k: v for k, v in want.items() if k != "db/trac.db"}
        verb = "finished"
    else:
        assert got == old
        verb = "rolled back"
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2, p.stdout
    assert lines[0].startswith("%s an interrupted restore of %s: " % (verb, env)), lines[0]
    assert leftovers[0] in lines[0]
    assert lines[1].startswith("restored one into %s" % env)
    assert siblings(env) == []
    assert not os.path.exists(os.path.join(env, "htdocs", "new.txt"))
    # The journal (and its lock) are gone once a restore has ended, and so
    # is the new file a killed one left.
    assert [n for n in os.listdir(JOURNALS) if n.startswith(journal_name(env))] == []
    assert [n for n in os.listdir(JOURNALS) if n in stale] == []


def test_restore_while_another_restore_of_env_runs_is_refused(setup):
    """The journal names a restorer that still runs: the second restore
    refuses (and leaves the first one's copy alone)."""
    env, store, _ = setup
    with open(os.path.join(env, "htdocs", "big.bin"), "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    tree = cli_snapshot(env, store, "big").tree
    parent, name = os.path.split(env)
    first = subprocess.Popen([os.environ.get("TRACSNAP_BIN", "tracsnap"), "restore", tree, env],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = False
    try:
        deadline = time.monotonic() + 60
        while not any(n.startswith(name + ".restore-tmp-") for n in os.listdir(parent)):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.0005)
        os.kill(first.pid, 19)   # SIGSTOP: a restore still running
        stopped = True
        p = tracsnap("restore", tree, env, check=False)
        assert p.returncode == EX_TEMPFAIL, (p.returncode, p.stdout, p.stderr)
        assert p.stderr == "tracsnap: %s: another restore of it is running (pid %d)\n" % (env, first.pid)
        assert os.path.isdir(os.path.join(parent, "%s.restore-tmp-%d" % (name, first.pid)))
    finally:
        if stopped:
            os.kill(first.pid, 18)   # SIGCONT
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert siblings(env) == []


@pytest.mark.parametrize("where", ["before-db-exchange", "after-db-exchange"])
def test_interrupted_restore_with_external_database_is_rolled_back(env_sqlite, tmp_path, where):
    """ENV's files alone are not the restore when the database lives
    outside ENV: killed between or after the two exchanges, the next
    restore puts the previous tree and database back (nothing staged left
    beside the database), then restores both."""
    from tshelpers import move_db_outside
    env = env_sqlite
    ext = tmp_path / "ext"
    ext.mkdir()
    db = move_db_outside(env, ext)
    store = str(tmp_path / "store")
    tree = cli_snapshot(env, store, "one").tree
    want_rows = rows(db)
    # Where the exchanges come: a first restore under strace.
    log = str(tmp_path / "strace.log")
    run(["strace", "-f", "-o", log, "-e", "trace=renameat,renameat2",
         os.environ.get("TRACSNAP_BIN", "tracsnap"), "restore", tree, env], env=under_strace())
    calls = [l for l in open(log) if re.match(r"\d+\s+renameat2?\(", l)]
    n2 = nat = 0
    exchanges, after = [], None
    for l in calls:
        if " renameat2(" in l:
            n2 += 1
            if "RENAME_EXCHANGE" in l:
                exchanges.append(n2)
        else:
            nat += 1
            if len(exchanges) == 2 and after is None:
                after = nat
    assert len(exchanges) == 2 and after, "".join(calls)
    c = sqlite3.connect(db)
    with c:
        c.execute("INSERT INTO ticket (id, summary) VALUES (9001, 'after the snapshot')")
    c.close()
    change_file = os.path.join(env, "htdocs", "new.txt")
    with open(change_file, "w") as f:
        f.write("new\n")
    old_rows = rows(db)
    inject = ("renameat2:when=%d" % exchanges[1] if where == "before-db-exchange"
              else "renameat:when=%d" % after)
    killed_restore(env, tree, inject)
    assert os.path.isdir(env)
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(
        "rolled back an interrupted restore of %s: put the previous tree back" % env), p.stdout
    # The settled state was the previous one: the restore then kept it.
    name = re.search(r"kept as snapshot (\S+);", lines[1]).group(1)
    kept_tree = os.path.join(store, name, "tree")
    assert os.path.exists(os.path.join(kept_tree, "htdocs", "new.txt"))
    assert rows(os.path.join(kept_tree, "tracsnap-external-db", "trac.db")) == old_rows
    # And now both are the snapshot's; nothing staged left anywhere.
    assert rows(db) == want_rows and not os.path.exists(change_file)
    assert sorted(os.listdir(str(ext))) == ["trac.db"]
    assert siblings(env) == []
