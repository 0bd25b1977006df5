"""PostgreSQL fixtures for the mount-level tests (imported by test_postgres*.py).

- `pg_cluster` (session): one throwaway cluster for the whole test session
  (tests/pgcluster.py: initdb as an unprivileged user, random port, socket in
  a temp dir, scram-sha-256 on TCP and on the socket), stopped at the end of
  the session, also after failures.  When it cannot start, every PostgreSQL
  test FAILS with the reason: nothing is skipped silently.
- `pg_db`: a fresh database owned by role `trac` holding the fixture
  (tests/fixtures/trac-env-postgres.sql.gz, loaded with psql), dropped after
  the test.
- `pg_env(db, tcp=True, ...)`: the fixture environment
  (tests/fixtures/trac-env-postgres.tar.gz) pointed at a database.
- helpers to load a snapshot's dump into a scratch database the way
  doc/contract.md section 3 says (`psql -U USER -d DATABASE -f
  db/postgres-db-backup.sql`) and to compare
  tables by row count and a checksum of their ordered contents.
"""
import itertools
import os
import sys
import tempfile

import pytest

from tshelpers import TOP, extract_fixture, set_trac_database

sys.path.insert(0, os.path.join(TOP, "tests"))
import pgcluster  # noqa: E402
from pgcluster import TRAC_PASSWORD, TRAC_USER, quote_uri  # noqa: E402,F401

DUMP_REL = os.path.join("db", "postgres-db-backup.sql")
# The password as it appears in trac.ini (URL-encoded) and as libpq gets it:
# neither may show up in a log, a message or a command line.
SECRETS = (TRAC_PASSWORD, quote_uri(TRAC_PASSWORD), "s3cr3t")

_state = {"cluster": None, "error": None}
_names = itertools.count(1)


def _stop_cluster():
    c, _state["cluster"] = _state["cluster"], None
    if c is not None:
        c.stop()


@pytest.fixture(scope="session")
def pg_cluster(request):
    """The session's PostgreSQL cluster (started on first use)."""
    # The fixture may be imported into several test modules; they share one
    # cluster, stopped once when the session ends.
    if _state["error"]:
        pytest.fail(_state["error"], pytrace=False)
    if _state["cluster"] is None:
        try:
            c = pgcluster.PgCluster.start()
            c.ensure_role()
        except Exception as e:   # noqa: BLE001 - the reason is the message
            _state["error"] = "PostgreSQL test cluster could not start: %s" % e
            pytest.fail(_state["error"], pytrace=False)
        _state["cluster"] = c
        request.config.add_cleanup(_stop_cluster)
    return _state["cluster"]


@pytest.fixture
def pg_db(pg_cluster):
    """Name of a fresh database holding the fixture, owned by role trac."""
    name = "tracfx_%d_%d" % (os.getpid(), next(_names))
    pg_cluster.create_trac_db(name)
    yield name
    try:
        pg_cluster.drop_db(name)
    except Exception:   # noqa: BLE001 - the cluster may be down after a failed test
        pass


def scratch_db(cluster, prefix="scratch"):
    name = "%s_%d_%d" % (prefix, os.getpid(), next(_names))
    cluster.ensure_role()
    cluster.drop_db(name)
    cluster.create_db(name)
    return name


@pytest.fixture
def pg_env(tmp_path, pg_cluster):
    """pg_env(db, tcp=True, schema=None, password=TRAC_PASSWORD) -> path of a
    fresh copy of the PostgreSQL fixture environment using database db."""
    n = itertools.count()

    def make(db, tcp=True, schema=None, password=TRAC_PASSWORD, uri=None):
        env = extract_fixture("trac-env-postgres", str(tmp_path / ("envs%d" % next(n))))
        set_trac_database(env, uri or pg_cluster.uri(db, tcp=tcp, schema=schema, password=password))
        ini = os.path.join(env, "conf", "trac.ini")
        assert os.stat(ini).st_mode & 0o777 == 0o600
        return env
    return make


def load_dump(cluster, dump, dbname=None):
    """Load a snapshot's dump into a new empty database as tracsnap restore
    does (doc/contract.md section 6), plus ON_ERROR_STOP, so that any failing
    statement fails the test;
    returns the database's name."""
    dbname = dbname or scratch_db(cluster)
    cluster.load_sql(dbname, path=dump)
    return dbname


def table_digests(cluster, dbname, schema="public"):
    """{table: (row count, md5 of the rows' text in order)} of a schema."""
    from psycopg2 import sql as q
    cnx = cluster.connect(dbname)
    try:
        cur = cnx.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,))
        out = {}
        for (t,) in cur.fetchall():
            cur.execute(q.SQL("SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), ''))"
                              " FROM {}.{} x").format(q.Identifier(schema), q.Identifier(t)))
            out[t] = cur.fetchone()
        return out
    finally:
        cnx.close()


def query(cluster, dbname, sql, args=None):
    cnx = cluster.connect(dbname)
    try:
        cur = cnx.cursor()
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None
    finally:
        cnx.close()


def trac_connect(cluster, dbname, tcp=True):
    """A connection as Trac makes it: role trac with its password."""
    return cluster.connect(dbname, user=TRAC_USER, password=TRAC_PASSWORD, tcp=tcp)


def assert_no_secret(text, where):
    for s in SECRETS:
        assert s not in text, "%s reveals the password (%r):\n%s" % (where, s, text)


def fake_bin(tmpdir, pg_dump=None):
    """A directory to be the daemon's whole PATH: links to what a daemon may
    run (fusermount3, mount, umount) and, when given, a `pg_dump`: a path to
    link to, or a shell script body (text starting with '#!')."""
    d = tempfile.mkdtemp(prefix="fakebin-", dir=str(tmpdir))
    for tool in ("fusermount3", "fusermount", "mount", "umount"):
        for base in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
            p = os.path.join(base, tool)
            if os.path.exists(p):
                os.symlink(p, os.path.join(d, tool))
                break
    if pg_dump is not None:
        set_fake_pg_dump(d, pg_dump)
    return d


def set_fake_pg_dump(d, pg_dump):
    p = os.path.join(d, "pg_dump")
    if os.path.lexists(p):
        os.unlink(p)
    if pg_dump is None:
        return
    if pg_dump.startswith("#!"):
        with open(p, "w") as f:
            f.write(pg_dump)
        os.chmod(p, 0o755)
    else:
        os.symlink(pg_dump, p)


def real_pg_dump():
    for p in ("/usr/bin/pg_dump",):
        if os.access(p, os.X_OK):
            return p
    return os.path.join(pgcluster.find_bindir(install=False), "pg_dump")
