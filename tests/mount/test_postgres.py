"""PostgreSQL environments (doc/contract.md sections 3, 4, 6, 7) at the mount level.

The session's throwaway cluster (conftest_pg.py) holds the fixture database;
the fixture environment points at it over TCP with a password, or over the
Unix socket of a non-default port.  A snapshot holds
db/postgres-db-backup.sql, a plain dump (0600) of the Trac schema only, which
`psql -U trac -d DB -f` loads into an empty database and which gives back the
same rows (per-table counts and checksums of the ordered contents).  The
password never shows on pg_dump's command line, in its environment, in the log
or in a message.  Failures (server down, authentication, missing database,
schema or attachment table, pg_dump missing or unusable, the lock not granted)
are one clear line, leave no partial snapshot, and the mount keeps serving the
older snapshots.
"""
import errno
import os
import re
import stat
import threading
import time

import pytest

from tshelpers import (assert_same_files, snapshot_names, store_entries, store_snapshots, tracsnap,
                       wait_sealed)
from conftest_pg import (DUMP_REL, TRAC_PASSWORD, TRAC_USER, assert_no_secret, fake_bin,  # noqa: F401
                         load_dump, pg_cluster, pg_db, pg_env, query, real_pg_dump,
                         set_fake_pg_dump, table_digests, trac_connect)
from test_errors import assert_refused


def dump_of(snapdir):
    return os.path.join(snapdir, DUMP_REL)


def assert_dump_good(cluster, snapdir, live_db, schema="public"):
    """The dump is 0600, loads into an empty database with psql and holds the
    same rows as the live database had.  Returns the scratch database."""
    d = dump_of(snapdir)
    st = os.stat(d)
    assert stat.S_ISREG(st.st_mode)
    assert st.st_mode & 0o7777 == 0o600, "dump mode %o" % (st.st_mode & 0o7777)
    with open(d) as f:
        text = f.read()
    assert_no_secret(text, "the dump")
    assert "PostgreSQL database dump" in text
    scratch = load_dump(cluster, d)
    got = table_digests(cluster, scratch, schema)
    want = table_digests(cluster, live_db, schema)
    assert got == want, "dump differs from the database:\n%s\n%s" % (got, want)
    assert len(got) >= 20, "only %d tables in the dump" % len(got)
    return scratch


def log_lines(m):
    return [l for l in m.log_text().splitlines() if l.strip()]


def mkdir_errno(path):
    try:
        os.mkdir(path)
    except OSError as e:
        return e.errno
    return 0


# --------------------------------------------------------------- snapshots

@pytest.mark.parametrize("tcp", [True, False], ids=["tcp-password", "socket-port"])
def test_snapshot_with_dump(pg_cluster, pg_db, pg_env, mount_factory, tcp):
    """mkdir gives a complete environment plus db/postgres-db-backup.sql that
    loads into an empty database and equals the live one; over TCP with a
    password and over the Unix socket of a non-default port."""
    assert pg_cluster.port != 5432
    env = pg_env(pg_db, tcp=tcp)
    m = mount_factory(env)
    os.mkdir(m.path("s1"))
    assert snapshot_names(m.mnt) == ["s1"]
    assert os.readlink(m.path("latest")) == "s1"
    snap = m.path("s1")
    # Every file of the environment, and the dump; no db/ in the env itself.
    assert not os.path.exists(os.path.join(env, "db"))
    assert_same_files(env, snap, skip=("db", DUMP_REL))
    assert sorted(os.listdir(m.path("s1", "db"))) == ["postgres-db-backup.sql"]
    dst = os.stat(m.path("s1", "db"))
    est = os.stat(env)
    assert (dst.st_mode & 0o7777, dst.st_uid, dst.st_gid) == (0o755, est.st_uid, est.st_gid)
    ini = os.stat(os.path.join(env, "conf", "trac.ini"))
    dump = os.stat(dump_of(snap))
    assert (dump.st_uid, dump.st_gid) == (ini.st_uid, ini.st_gid)
    assert_dump_good(pg_cluster, snap, pg_db)
    # The manifest covers the dump and its directory (verify would check them).
    with open(os.path.join(m.store, "s1", "manifest")) as f:
        man = f.read()
    assert "\tdb\n" in man and "\t" + DUMP_REL + "\n" in man
    text = m.log_text()
    assert "snapshot s1:" in text and "lock held" in text, text
    assert_no_secret(text, "the daemon log")


def test_non_public_schema_only_trac_schema(pg_cluster, pg_db, pg_env, mount_factory):
    """?schema=NAME: the dump holds that schema only (CREATE SCHEMA included)
    and loads into an empty database."""
    c = trac_connect(pg_cluster, pg_db)
    try:
        cur = c.cursor()
        cur.execute("ALTER SCHEMA public RENAME TO trac_x")
        cur.execute("CREATE SCHEMA public")
        cur.execute("CREATE TABLE public.not_trac (a int)")
        cur.execute("INSERT INTO public.not_trac VALUES (42)")
    finally:
        c.close()
    env = pg_env(pg_db, schema="trac_x")
    m = mount_factory(env)
    os.mkdir(m.path("s"))
    with open(dump_of(m.path("s"))) as f:
        text = f.read()
    assert "CREATE SCHEMA trac_x;" in text
    assert "not_trac" not in text
    scratch = assert_dump_good(pg_cluster, m.path("s"), pg_db, schema="trac_x")
    assert query(pg_cluster, scratch, "SELECT count(*) FROM pg_tables WHERE schemaname='public'") == [(0,)]


def test_commits_before_snapshot_are_in_it(pg_cluster, pg_db, pg_env, mount_factory):
    """I1 by hand: a ticket committed before mkdir is in the dump, one
    committed after is not; an open transaction's row is not."""
    env = pg_env(pg_db)
    m = mount_factory(env)
    c = trac_connect(pg_cluster, pg_db)
    c2 = trac_connect(pg_cluster, pg_db)
    try:
        cur, cur2 = c.cursor(), c2.cursor()
        cur.execute("INSERT INTO ticket (type, time, changetime, status, summary, reporter)"
                    " VALUES ('defect', 1, 1, 'new', 'before', 'test')")
        cur2.execute("BEGIN")
        cur2.execute("INSERT INTO ticket (type, time, changetime, status, summary, reporter)"
                     " VALUES ('defect', 1, 1, 'new', 'uncommitted', 'test')")
        os.mkdir(m.path("s"))
        cur2.execute("COMMIT")
        cur.execute("INSERT INTO ticket (type, time, changetime, status, summary, reporter)"
                    " VALUES ('defect', 1, 1, 'new', 'after', 'test')")
    finally:
        c.close()
        c2.close()
    scratch = load_dump(pg_cluster, dump_of(m.path("s")))
    got = [r[0] for r in query(pg_cluster, scratch, "SELECT summary FROM ticket WHERE reporter='test'")]
    assert got == ["before"]


def test_cli_snapshot_and_no_database(pg_cluster, pg_db, pg_env, tmp_path):
    """`tracsnap snapshot` works the same; --no-database makes no db/."""
    env = pg_env(pg_db)
    store = str(tmp_path / "store")
    p = tracsnap("snapshot", "--store", store, env, "one")
    assert "snapshot one:" in p.stdout + p.stderr
    assert_no_secret(p.stdout + p.stderr, "tracsnap snapshot")
    assert_dump_good(pg_cluster, os.path.join(store, "one", "tree"), pg_db)
    tracsnap("snapshot", "--store", store, "--no-database", env, "two")
    assert not os.path.exists(os.path.join(store, "two", "tree", "db"))


def test_stale_dump_in_env_is_replaced(pg_cluster, pg_db, pg_env, mount_factory):
    """After the documented restore (cp -a SNAPSHOT/. ENV/) the environment has
    a db/postgres-db-backup.sql of its own: a snapshot holds a fresh dump
    instead, and writing it never alters an older snapshot's dump."""
    env = pg_env(pg_db)
    m = mount_factory(env)
    os.mkdir(m.path("a"))
    os.makedirs(os.path.join(env, "db"))
    with open(os.path.join(env, DUMP_REL), "w") as f:
        f.write("-- stale\n")
    os.mkdir(m.path("b"))
    with open(dump_of(m.path("a")), "rb") as f:
        a1 = f.read()
    c = trac_connect(pg_cluster, pg_db)
    try:
        c.cursor().execute("INSERT INTO ticket (type, time, changetime, status, summary, reporter)"
                           " VALUES ('defect', 1, 1, 'new', 'between', 'test')")
    finally:
        c.close()
    os.mkdir(m.path("c"))
    with open(dump_of(m.path("b"))) as f:
        assert "-- stale" not in f.read()
    with open(dump_of(m.path("a")), "rb") as f:
        assert f.read() == a1
    assert_dump_good(pg_cluster, m.path("c"), pg_db)
    with open(dump_of(m.path("b"))) as f:
        assert "between" not in f.read()


# ------------------------------------------------------------- the password

CMDLINE_RECORDER = """#!/bin/sh
/usr/bin/tr '\\0' '\\n' < /proc/$$/cmdline > %(rec)s.cmdline.$$
/usr/bin/tr '\\0' '\\n' < /proc/$$/environ > %(rec)s.environ.$$
exec %(real)s "$@"
"""


def test_password_never_on_command_line_or_in_log(pg_cluster, pg_db, pg_env, mount_factory,
                                                  tmp_path, monkeypatch):
    """The pg_dump child's /proc/PID/cmdline and environ never hold the
    password (it gets a password file on a descriptor); neither does the log."""
    rec = str(tmp_path / "rec")
    fb = fake_bin(tmp_path, CMDLINE_RECORDER % {"rec": rec, "real": real_pg_dump()})
    env = pg_env(pg_db)
    m = mount_factory(env, start=False)
    with monkeypatch.context() as mp:
        mp.setenv("PATH", fb)
        m.start()
    # Also watch the daemon's children live, as an administrator would with ps.
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    if ppid != m.proc.pid:
                        continue
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        seen.append(f.read().decode(errors="replace"))
                except (OSError, IndexError, ValueError):
                    pass
            time.sleep(0.001)
    t = threading.Thread(target=watch)
    t.start()
    try:
        for i in range(3):
            os.mkdir(m.path("s%d" % i))
    finally:
        stop.set()
        t.join()
    dumps = 0
    for f in os.listdir(str(tmp_path)):
        if f.startswith("rec."):
            with open(os.path.join(str(tmp_path), f)) as fh:
                text = fh.read()
            assert_no_secret(text, f)
            if ".cmdline." in f:       # pg_dump --version (the check at open) or the dump
                assert text.split("\n")[2:3] == ["--version"] or "--snapshot=" in text, text
                dumps += "--snapshot=" in text and '--schema="public"' in text
            else:
                assert "PGPASSFILE=/proc/self/fd/3" in text and "PGPASSWORD" not in text, text
    assert dumps == 3
    assert any("--snapshot=" in s for s in seen), "no pg_dump child seen: %s" % seen
    for s in seen:
        assert_no_secret(s, "a child's /proc/PID/cmdline")
    assert_no_secret(m.log_text(), "the daemon log")
    with open("/proc/%d/cmdline" % m.proc.pid, "rb") as f:
        assert_no_secret(f.read().decode(errors="replace"), "the daemon's command line")
    assert_dump_good(pg_cluster, m.path("s2"), pg_db)


# ------------------------------------------------------- errors at mount time

def refused(env, tmp_path, must_name):
    mnt = tmp_path / "mnt-r"
    mnt.mkdir(exist_ok=True)
    line = assert_refused(env, mnt, tmp_path / "store-r", must_name=must_name,
                          forbidden=[TRAC_PASSWORD, "s3cr3t"])
    return line


def test_refused_server_down(pg_cluster, pg_db, pg_env, tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))            # bound, never listening: connection refused
    try:
        port = s.getsockname()[1]
        env = pg_env(pg_db, uri=pg_cluster.uri(pg_db).replace(":%d/" % pg_cluster.port, ":%d/" % port))
        line = refused(env, tmp_path, ["postgres://trac@127.0.0.1:%d/%s" % (port, pg_db), "database",
                                       "trac.ini"])
    finally:
        s.close()
    assert "refused" in line.lower(), line


def test_refused_bad_password(pg_cluster, pg_db, pg_env, tmp_path):
    env = pg_env(pg_db, password="wrong-s3cr3t")
    line = refused(env, tmp_path, ["postgres://trac@127.0.0.1", "password authentication failed"])
    assert "wrong" not in line
    # The command says the same and exits 69 (unavailable), not 65, which
    # means damage (man page, EXIT STATUS).
    p = tracsnap("snapshot", "--store", str(tmp_path / "store-c"), env, "x", check=False)
    assert p.returncode == 69, p.stderr
    assert "password authentication failed" in p.stderr and "wrong" not in p.stderr


def test_refused_missing_database(pg_cluster, pg_env, tmp_path):
    env = pg_env("no_such_db")
    refused(env, tmp_path, ["no_such_db", "does not exist"])


def test_refused_missing_schema(pg_cluster, pg_db, pg_env, tmp_path):
    env = pg_env(pg_db, schema="nosuch")
    line = refused(env, tmp_path, ["schema 'nosuch' does not exist"])
    assert line.startswith("tracsnap: postgres://trac@127.0.0.1:%d/%s" % (pg_cluster.port, pg_db)), line


def test_refused_missing_attachment_table(pg_cluster, pg_db, pg_env, tmp_path):
    query(pg_cluster, pg_db, "DROP TABLE attachment")
    env = pg_env(pg_db)
    refused(env, tmp_path, ["schema 'public' has no attachment table"])


def test_refused_pg_dump_absent(pg_cluster, pg_db, pg_env, tmp_path, monkeypatch):
    env = pg_env(pg_db)
    monkeypatch.setenv("PATH", fake_bin(tmp_path))
    refused(env, tmp_path, ["pg_dump not found", "postgresql-client"])


# ------------------------------------------- errors of a mount that keeps serving

def serving_mount(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch, opts=()):
    """A mount whose daemon runs with PATH = a fake bin dir holding a link to
    the real pg_dump, with one good snapshot `good`.  Returns (mount, bindir)."""
    fb = fake_bin(tmp_path, real_pg_dump())
    m = mount_factory(pg_env(pg_db), opts=opts, start=False)
    with monkeypatch.context() as mp:
        mp.setenv("PATH", fb)
        m.start()
    os.mkdir(m.path("good"))
    # Sealed before anything fails: its "sealed" line must not land among
    # the lines a failure is judged by (assert_failed_cleanly).
    wait_sealed(m.store, "good")
    return m, fb


def assert_failed_cleanly(m, name, want_errno, must):
    """mkdir name fails with want_errno, one log line says why, nothing is
    left in the store, and the good snapshot is still served."""
    m.expect_log(r"^tracsnap: snapshot %s \(mkdir\) failed: " % re.escape(name))
    before = len(log_lines(m))
    assert mkdir_errno(m.path(name)) == want_errno
    assert snapshot_names(m.mnt) == ["good"]
    assert store_snapshots(m.store) == ["good"]
    assert [e for e in store_entries(m.store) if e.startswith(".tmp")] == []
    new = [l for l in log_lines(m)[before:] if name in l or "snapshot" in l]
    assert new, "nothing logged for the failed snapshot:\n" + m.log_text()
    line = new[-1]
    for text in must:
        assert text in line, "%r not in %r" % (text, line)
    assert_no_secret(m.log_text(), "the daemon log")
    # The older snapshot is still whole.
    with open(m.path("good", "VERSION")) as f:
        assert f.read().startswith("Trac Environment Version 1")
    with open(dump_of(m.path("good"))) as f:
        assert "PostgreSQL database dump complete" in f.read()
    return line


def test_server_down_while_mounted(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch):
    m, _ = serving_mount(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch)
    pg_cluster.stop_server()
    try:
        assert_failed_cleanly(m, "down", errno.EIO, ["postgres://trac@127.0.0.1:%d/%s" % (pg_cluster.port, pg_db),
                                                     "cannot connect"])
    finally:
        pg_cluster.start_server()
    os.mkdir(m.path("again"))


def test_password_changed_while_mounted(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch):
    m, _ = serving_mount(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch)
    pg_cluster.ensure_role(TRAC_USER, "other-s3cr3t-pw")
    try:
        line = assert_failed_cleanly(m, "auth", errno.EIO, ["password authentication failed"])
        assert "other" not in line
    finally:
        pg_cluster.ensure_role()


def test_attachment_table_gone_while_mounted(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch):
    m, _ = serving_mount(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch)
    query(pg_cluster, pg_db, "ALTER TABLE attachment RENAME TO attachment_old")
    assert_failed_cleanly(m, "notable", errno.EIO, ["has no attachment table"])


def test_pg_dump_gone_or_unusable_while_mounted(pg_cluster, pg_db, pg_env, mount_factory, tmp_path,
                                                monkeypatch):
    m, fb = serving_mount(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch)
    set_fake_pg_dump(fb, None)
    assert_failed_cleanly(m, "nodump", errno.ENOTSUP, ["pg_dump not found in PATH", "postgresql-client"])
    set_fake_pg_dump(fb, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.1.24'\n")
    assert_failed_cleanly(m, "olddump", errno.ENOTSUP, ["pg_dump 9.1.24 is too old"])
    set_fake_pg_dump(fb, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 11.22'\n")
    assert_failed_cleanly(m, "olderdump", errno.ENOTSUP, ["pg_dump 11.22 cannot dump a PostgreSQL 15",
                                                          "install postgresql-client-15"])
    # pg_dump that fails on its own: its message is passed on.
    set_fake_pg_dump(fb, "#!/bin/sh\n[ \"$1\" = --version ] && exec %s --version\n"
                         "echo 'pg_dump: error: something broke' >&2; exit 1\n" % real_pg_dump())
    assert_failed_cleanly(m, "brokendump", errno.EIO, ["pg_dump failed (exit 1): pg_dump: error: something broke"])
    set_fake_pg_dump(fb, real_pg_dump())
    os.mkdir(m.path("fine"))


def test_ebusy_while_attachment_write_open_ticket_writes_go_on(pg_cluster, pg_db, pg_env, mount_factory,
                                                               tmp_path, monkeypatch):
    """An attachment transaction that never commits: mkdir fails with EBUSY
    after lock_timeout, naming the table and the holder; ticket writes are
    never held."""
    m, _ = serving_mount(pg_cluster, pg_db, pg_env, mount_factory, tmp_path, monkeypatch,
                         opts=["lock_timeout=1"])
    holder = trac_connect(pg_cluster, pg_db)
    other = trac_connect(pg_cluster, pg_db)
    try:
        hc = holder.cursor()
        hc.execute("BEGIN")
        hc.execute("INSERT INTO attachment VALUES ('ticket', '1', 'held.bin', 1, 1, '', 'x')")
        hc.execute("SELECT pg_backend_pid()")
        pid = hc.fetchone()[0]
        done = []

        def ticket_writer():
            oc = other.cursor()
            while not done:
                t = time.monotonic()
                oc.execute("INSERT INTO ticket_change (ticket, time, author, field, oldvalue, newvalue)"
                           " VALUES (1, %s, 'w', 'comment', '', 'x')", (int(time.time() * 1e6),))
                done_wait.append(time.monotonic() - t)
                time.sleep(0.01)
        done_wait = []
        th = threading.Thread(target=ticket_writer)
        th.start()
        t0 = time.monotonic()
        try:
            line = assert_failed_cleanly(m, "busy", errno.EBUSY,
                                         ["could not lock public.attachment in postgres://trac@127.0.0.1",
                                          "within 1 s", "held by server process %d?" % pid])
        finally:
            done.append(1)
            th.join()
        took = time.monotonic() - t0
        assert took < 10, "EBUSY after %.1f s" % took
        assert done_wait and max(done_wait) < 0.5, "ticket writes waited up to %.3f s" % max(done_wait)
        hc.execute("ROLLBACK")
    finally:
        holder.close()
        other.close()
    assert "lock" in line
    os.mkdir(m.path("free"))
