"""Spec sections 3 and 4 with the database in WAL mode.

Committed transactions that are still only in db/trac.db-wal belong in the
snapshot (trac-admin hotcopy skips the -wal file and loses them); the snapshot
itself is one self-contained file in rollback-journal mode, without -wal/-shm,
so that `sqlite3 -readonly` works on the read-only mount.
"""
import os
import shutil
import sqlite3
import stat
import time

import pytest

from tshelpers import db_path_in, run, set_trac_database, sqlite_ro
from test_consistency import Writer, take_snapshots, verify_all

MARK = "wal-only row %d"


def to_wal(env):
    c = sqlite3.connect(os.path.join(env, "db", "trac.db"), isolation_level=None)
    assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    c.close()


def header_modes(path):
    """(write version, read version) of an SQLite file header: (1, 1) is
    rollback-journal mode, (2, 2) is WAL."""
    with open(path, "rb") as f:
        h = f.read(20)
    assert h[:16] == b"SQLite format 3\0", "%s is not an SQLite database" % path
    return h[18], h[19]


def assert_self_contained(snapdir):
    db = db_path_in(snapdir)
    extra = [f for f in os.listdir(os.path.dirname(db))
             if f != "trac.db" and f.startswith("trac.db")]
    assert extra == [], "journal files in the snapshot: %s" % extra
    assert header_modes(db) == (1, 1), \
        "snapshot database header says WAL (%d,%d), not rollback-journal mode" % header_modes(db)
    c = sqlite_ro(db)
    try:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        c.close()


@pytest.mark.parametrize("uri", ["sqlite:db/trac.db", "sqlite:db/trac.db?journal_mode=WAL"])
def test_wal_rows_only_in_wal_are_in_snapshot(env_sqlite, mount_factory, tmp_path, uri):
    set_trac_database(env_sqlite, uri)
    to_wal(env_sqlite)
    live = os.path.join(env_sqlite, "db", "trac.db")
    # A Trac process that committed rows which are only in the -wal file.
    c = sqlite3.connect(live, isolation_level=None, timeout=10)
    try:
        c.execute("PRAGMA wal_autocheckpoint=0")
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for i in range(5):
            c.execute("BEGIN")
            c.execute("INSERT INTO ticket (type, time, changetime, status, summary, reporter)"
                      " VALUES ('defect', 1, 1, 'new', ?, 'wal')", (MARK % i,))
            c.execute("COMMIT")
        c.execute("BEGIN")
        c.execute("UPDATE ticket SET summary='changed in wal' WHERE id=1")
        c.execute("DELETE FROM ticket WHERE id=2")
        c.execute("COMMIT")
        wal = live + "-wal"
        assert os.path.getsize(wal) > 0, "the rows should be in the -wal file only"

        # What hotcopy does: db/trac.db copied, -wal skipped.  It misses the rows,
        # which proves this test would catch a snapshot made that way.
        naive = tmp_path / "naive"
        naive.mkdir()
        shutil.copy2(live, naive / "trac.db")
        n = sqlite3.connect(str(naive / "trac.db"))
        try:
            assert n.execute("SELECT count(*) FROM ticket WHERE summary LIKE 'wal-only row %'"
                             ).fetchone()[0] == 0, "a plain copy already holds the WAL rows?"
            assert n.execute("SELECT summary FROM ticket WHERE id=1").fetchone()[0] == "ticket 0"
        finally:
            n.close()

        m = mount_factory(env_sqlite)
        os.mkdir(m.path("w1"))
        snap = m.path("w1")
        assert os.path.isdir(snap)
        assert_self_contained(snap)
        s = sqlite_ro(db_path_in(snap))
        try:
            got = [r[0] for r in s.execute(
                "SELECT summary FROM ticket WHERE summary LIKE 'wal-only row %' ORDER BY id")]
            assert got == [MARK % i for i in range(5)], "WAL rows missing from the snapshot: %s" % got
            assert s.execute("SELECT summary FROM ticket WHERE id=1").fetchone()[0] == "changed in wal"
            assert s.execute("SELECT count(*) FROM ticket WHERE id=2").fetchone()[0] == 0
            assert s.execute("SELECT count(*) FROM ticket").fetchone()[0] == 30 + 5 - 1
        finally:
            s.close()

        # sqlite3 -readonly, straight on the read-only mount.
        p = run(["sqlite3", "-readonly", db_path_in(snap),
                 "PRAGMA integrity_check; PRAGMA journal_mode;"
                 " SELECT count(*) FROM ticket WHERE summary LIKE 'wal-only row %';"])
        assert p.stdout.split() == ["ok", "delete", "5"], (p.stdout, p.stderr)
        assert p.stderr == ""

        # The live database is still in WAL mode and still usable; what is
        # committed after the snapshot is not in it.
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        c.execute("BEGIN")
        c.execute("INSERT INTO ticket (summary) VALUES ('after the snapshot')")
        c.execute("COMMIT")
        assert header_modes(live) == (2, 2), "the snapshot changed the live database's mode"
        s = sqlite_ro(db_path_in(snap))
        try:
            assert s.execute("SELECT count(*) FROM ticket WHERE summary='after the snapshot'"
                             ).fetchone()[0] == 0
        finally:
            s.close()
        assert uri in open(os.path.join(snap, "conf", "trac.ini")).read()
        assert stat.S_IMODE(os.lstat(os.path.join(snap, "conf", "trac.ini")).st_mode) == 0o600
    finally:
        c.close()


@pytest.mark.parametrize("uri", ["sqlite:db/trac.db", "sqlite:db/trac.db?journal_mode=WAL"])
def test_wal_snapshots_consistent_while_trac_writes(env_sqlite, mount_factory, tmp_path, uri):
    """6 snapshots of a WAL database while the writer runs: I1-I3, integrity,
    rollback-journal mode, no -wal/-shm, no "database is locked"."""
    set_trac_database(env_sqlite, uri)
    to_wal(env_sqlite)
    m = mount_factory(env_sqlite, opts=["auto=%Y-%m-%dT%H%M%S"])
    w = Writer(env_sqlite, str(tmp_path / "ack.log"), seconds=60, seed=21)
    try:
        w.wait_started()
        t = time.monotonic()
        taken = take_snapshots(m, w, 6, first_access_every=3, prefix="wal", gap=(0.5, 1.2))
        print("took %d snapshots in %.1f s" % (len(taken), time.monotonic() - t))
        time.sleep(0.5)
        recs, summary = w.stop()
    finally:
        w.kill()
    assert header_modes(os.path.join(env_sqlite, "db", "trac.db")) == (2, 2), \
        "the live database is no longer in WAL mode"
    verify_all(m, taken, recs, summary)
    for name, how, t0, t1 in taken:
        assert_self_contained(m.path(name))
    print("longest commit wait of the writer: %.3f s (%s)" % (summary["max_wait"], summary["max_wait_op"]))
