"""Spec section 6: `tracsnap restore [--force] SNAPSHOT ENV`.

A restore gives back exactly the snapshot (files with their modes, owners and
mtimes, database rows), keeps the previous environment as the snapshot
pre-restore-<time> of the store (never beside ENV), restores WAL mode when the environment had it,
refuses while a process holds a file of ENV or its database (naming the pid)
and, for PostgreSQL, while another session uses the database; --force
overrides.  Every failure leaves ENV as it was and no temporary sibling.
(`cp -a MNT/NAME/. ENV/` by hand: test_roundtrip.py,
test_cp_a_gives_working_environment.)
"""
import glob
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tshelpers import cli_snapshot, run, tracsnap, tree_state, wait_sealed
from conftest_pg import (DUMP_REL, assert_no_secret, pg_cluster, pg_db, pg_env,  # noqa: F401
                         table_digests, trac_connect)

EX_NOINPUT, EX_CANTCREAT, EX_DATAERR, EX_TEMPFAIL = 66, 73, 65, 75


def state(path):
    """relpath -> everything a restore must bring back, owners included; of
    ENV itself its mode and owners (a restore puts a new directory there)."""
    out = tree_state(path, owners=True, top=True)
    del out["."]["mtime_ns"]
    return out


def rows(db, sql="SELECT * FROM ticket ORDER BY id"):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def siblings(env):
    return sorted(os.path.basename(p) for p in glob.glob(env + ".*"))


def prepare(env):
    """Owners and modes a restore must bring back."""
    readme = os.path.join(env, "README")
    os.chown(readme, 1234, 1234)
    os.chmod(readme, 0o640)
    os.chown(os.path.join(env, "files"), 1234, 1234)


def change(env):
    """New ticket rows, a new file, a deleted file."""
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    with c:
        c.execute("INSERT INTO ticket (id, summary) VALUES (9001, 'after the snapshot')")
        c.execute("UPDATE ticket SET summary = 'changed' WHERE id = (SELECT min(id) FROM ticket)")
    c.close()
    with open(os.path.join(env, "htdocs-new.txt"), "w") as f:
        f.write("new\n")
    os.unlink(os.path.join(env, "templates", "site_footer.html.sample"))


def assert_restored(env, want_state, want_rows):
    got = state(env)
    for k in sorted(set(got) | set(want_state)):
        if k == "db/trac.db":
            continue   # compared by rows (WAL mode rewrites its header)
        assert got.get(k) == want_state.get(k), "%s differs after restore" % k
    assert rows(os.path.join(env, "db", "trac.db")) == want_rows
    st = os.stat(os.path.join(env, "README"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 1234, 0o640)


def kept_dir(env, store):
    """The tree of the one pre-restore snapshot in store; nothing beside ENV."""
    assert siblings(env) == []
    kept = [s for s in os.listdir(store) if s.startswith("pre-restore-")]
    assert len(kept) == 1, os.listdir(store)
    assert not os.path.exists(os.path.join(store, kept[0], "unsealed"))
    return os.path.join(store, kept[0], "tree")


def test_sqlite_roundtrip_from_store_tree(env_sqlite, tmp_path):
    env = env_sqlite
    prepare(env)
    tree = cli_snapshot(env, str(tmp_path / "store"), "one").tree
    want_state, want_rows = state(tree), rows(os.path.join(tree, "db", "trac.db"))
    change(env)
    changed_rows = rows(os.path.join(env, "db", "trac.db"))
    p = tracsnap("restore", tree, env)
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("restored one into %s (previous state kept as snapshot "
                                                   "pre-restore-" % env), p.stdout
    assert_restored(env, want_state, want_rows)
    kept = kept_dir(env, str(tmp_path / "store"))
    assert os.path.basename(os.path.dirname(kept)) in lines[0]
    assert os.path.exists(os.path.join(kept, "htdocs-new.txt"))
    assert not os.path.exists(os.path.join(kept, "templates", "site_footer.html.sample"))
    assert rows(os.path.join(kept, "db", "trac.db")) == changed_rows
    assert not [s for s in siblings(env) if "restore-tmp" in s]
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    c.close()


def test_sqlite_roundtrip_from_mount_keeps_wal(env_sqlite, mount_factory):
    env = env_sqlite
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    c.close()
    prepare(env)
    m = mount_factory(env)
    os.mkdir(m.path("one"))
    snap = m.path("one")
    wait_sealed(m.store, "one")
    want_state, want_rows = state(snap), rows(os.path.join(snap, "db", "trac.db"))
    change(env)
    p = tracsnap("restore", snap, env, check=False)
    assert p.returncode == 0, p.stderr
    assert_restored(env, want_state, want_rows)
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    c.close()
    kept = kept_dir(env, m.store)
    assert os.path.exists(os.path.join(kept, "htdocs-new.txt"))
    # An ordinary snapshot: the mount shows it.
    name = os.path.basename(os.path.dirname(kept))
    assert os.path.exists(m.path(name, "htdocs-new.txt"))


@pytest.mark.parametrize("holder", ["sleep", "python"])
def test_refused_while_a_process_holds_the_env(env_sqlite, tmp_path, holder):
    env = env_sqlite
    tree = cli_snapshot(env, str(tmp_path / "store"), "one").tree
    want_rows = rows(os.path.join(tree, "db", "trac.db"))
    change(env)
    if holder == "sleep":
        f = open(os.path.join(env, "README"))
        proc = subprocess.Popen(["sleep", "1000"], stdin=f)
        f.close()
        comm = "sleep"
    else:
        code = ("import sqlite3, sys, time\n"
                "c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM ticket').fetchall()\n"
                "print('ready', flush=True); time.sleep(1000)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, os.path.join(env, "db", "trac.db")],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        comm = "python"
    try:
        time.sleep(0.1)
        before = state(env)
        p = tracsnap("restore", tree, env, check=False)
        assert p.returncode == EX_TEMPFAIL, (p.returncode, p.stderr)
        assert p.stdout == ""
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("tracsnap: %s: in use by " % env), p.stderr
        assert "pid %d (%s" % (proc.pid, comm) in lines[0], p.stderr
        assert "--force" in lines[0]
        assert state(env) == before
        assert siblings(env) == []
        # --force overrides.
        p = tracsnap("restore", "--force", tree, env, check=False)
        assert p.returncode == 0, p.stderr
        assert rows(os.path.join(env, "db", "trac.db")) == want_rows
        assert siblings(env) == []
    finally:
        proc.kill()
        proc.wait()


def test_not_a_trac_env_leaves_env_alone(env_sqlite, tmp_path):
    env = env_sqlite
    before = state(env)
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    p = tracsnap("restore", bogus, env, check=False)
    assert p.returncode == EX_NOINPUT
    assert p.stderr == "tracsnap: %s: not a Trac environment (VERSION missing)\n" % bogus
    assert state(env) == before and siblings(env) == []
    p = tracsnap("restore", env, env, check=False)
    assert p.returncode != 0 and state(env) == before and siblings(env) == []


def test_no_database_snapshot_refused(env_sqlite, tmp_path):
    env = env_sqlite
    tracsnap("snapshot", "--no-database", "--store", tmp_path / "store", env, "nodb")
    before = state(env)
    p = tracsnap("restore", tmp_path / "store" / "nodb" / "tree", env, check=False)
    assert p.returncode != 0 and "holds no database" in p.stderr, p.stderr
    assert state(env) == before and siblings(env) == []


def test_disk_full_midway_leaves_env_alone(env_sqlite, tmp_path):
    """The copy runs out of space half-way: ENV unchanged, no temp sibling."""
    env = env_sqlite
    big = os.path.join(env, "files", "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(3 << 20))
    tree = cli_snapshot(env, str(tmp_path / "store"), "big").tree
    os.unlink(big)
    small = tmp_path / "small"
    small.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)])
    try:
        live = str(small / "env")
        run(["cp", "-a", env, live])
        before = state(live)
        # A snapshot of env, not of live: --force (and a store of its own).
        p = tracsnap("restore", "--force", "--store", tmp_path / "store2", tree, live, check=False)
        assert p.returncode == EX_CANTCREAT, (p.returncode, p.stderr)
        assert len(p.stderr.splitlines()) == 1 and "No space left on device" in p.stderr, p.stderr
        assert state(live) == before
        assert siblings(live) == []
    finally:
        run(["umount", str(small)], check=False)


# ---------------------------------------------------------------- PostgreSQL

def pg_change(cluster, db):
    cnx = trac_connect(cluster, db)
    try:
        cur = cnx.cursor()
        cur.execute("INSERT INTO ticket (id, summary) VALUES (9001, 'after the snapshot')")
        cur.execute("DELETE FROM wiki")
    finally:
        cnx.close()


def test_postgres_roundtrip(pg_cluster, pg_db, pg_env, tmp_path):
    env = pg_env(pg_db)
    tree = cli_snapshot(env, str(tmp_path / "store"), "one").tree
    want = table_digests(pg_cluster, pg_db)
    want_state = state(tree)
    pg_change(pg_cluster, pg_db)
    changed = table_digests(pg_cluster, pg_db)
    assert changed != want
    # The schema is not empty: refused without --force, nothing changed.
    before = state(env)
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode == EX_CANTCREAT, p.stderr
    assert "use --force" in p.stderr and len(p.stderr.splitlines()) == 1
    assert_no_secret(p.stderr, "the refusal")
    assert state(env) == before and siblings(env) == []
    assert table_digests(pg_cluster, pg_db) == changed
    p = tracsnap("restore", "--force", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    assert_no_secret(p.stdout + p.stderr, "restore's output")
    assert table_digests(pg_cluster, pg_db) == want
    assert state(env) == want_state
    assert os.path.isdir(kept_dir(env, str(tmp_path / "store")))


def test_postgres_refused_while_another_session(pg_cluster, pg_db, pg_env, tmp_path):
    env = pg_env(pg_db)
    tree = cli_snapshot(env, str(tmp_path / "store"), "one").tree
    pg_change(pg_cluster, pg_db)
    changed = table_digests(pg_cluster, pg_db)
    cnx = trac_connect(pg_cluster, pg_db)
    try:
        before = state(env)
        p = tracsnap("restore", tree, env, check=False)
        assert p.returncode == EX_TEMPFAIL, p.stderr
        assert "pid %d (" % cnx.get_backend_pid() in p.stderr, p.stderr
        assert "--force" in p.stderr and len(p.stderr.splitlines()) == 1
        assert_no_secret(p.stderr, "the refusal")
        assert state(env) == before and siblings(env) == []
        assert table_digests(pg_cluster, pg_db) == changed
    finally:
        cnx.close()


def test_postgres_failed_load_undoes_everything(pg_cluster, pg_db, pg_env, tmp_path):
    env = pg_env(pg_db)
    tree = cli_snapshot(env, str(tmp_path / "store"), "one").tree
    bad = str(tmp_path / "bad")
    run(["cp", "-a", tree, bad])
    with open(os.path.join(bad, DUMP_REL), "a") as f:
        f.write("\nSELECT * FROM no_such_table_here;\n")
    pg_change(pg_cluster, pg_db)
    changed = table_digests(pg_cluster, pg_db)
    before = state(env)
    p = tracsnap("restore", "--force", "--store", tmp_path / "store", bad, env, check=False)
    assert p.returncode == EX_DATAERR, p.stderr
    assert "no_such_table_here" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    assert_no_secret(p.stderr, "the failure")
    assert state(env) == before and siblings(env) == []
    assert table_digests(pg_cluster, pg_db) == changed


def test_external_sqlite_database_goes_back_to_its_path(env_sqlite, tmp_path):
    from tshelpers import move_db_outside
    env = env_sqlite
    ext = tmp_path / "ext"
    ext.mkdir()
    db = move_db_outside(env, ext)
    tree = cli_snapshot(env, str(tmp_path / "store"), "one").tree
    want_rows = rows(db)
    c = sqlite3.connect(db)
    with c:
        c.execute("INSERT INTO ticket (id, summary) VALUES (9001, 'after the snapshot')")
    c.close()
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    assert rows(db) == want_rows
    assert not os.path.exists(os.path.join(env, "tracsnap-external-db"))
    # The previous database is in the pre-restore snapshot, not beside.
    assert sorted(os.listdir(str(ext))) == ["trac.db"]
    kept = kept_dir(env, str(tmp_path / "store"))
    assert len(rows(os.path.join(kept, "tracsnap-external-db", "trac.db"))) == len(want_rows) + 1
