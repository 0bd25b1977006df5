#!/usr/bin/python3
"""A throwaway PostgreSQL cluster for tracsnap's tests and benchmark.

    c = PgCluster.start()          # initdb + pg_ctl start, or raise PgClusterError
    try:
        c.create_trac_db("tracfx")             # role trac (password), fixture loaded
        uri = c.uri("tracfx", tcp=True)       # postgres://trac:PW@127.0.0.1:PORT/tracfx
    finally:
        c.stop()                               # pg_ctl stop -m immediate, files removed

What it sets up:
- the server binaries of the newest installed major version
  (/usr/lib/postgresql/N/bin); when none is installed, scripts/install-deps is
  run once (it installs Debian's `postgresql` package);
- initdb as an unprivileged user (the `postgres` system user that the Debian
  package creates, or a `tracsnap-pg` system user made for the purpose): tests
  run as root and the server refuses to run as root;
- a private directory /tmp/tracsnap-pg-XXXX holding the data directory, the
  Unix socket and the server log;
- a random free TCP port on 127.0.0.1 (also used for the socket's name);
- pg_hba: the superuser `postgres` may use the socket without a password
  (setup only); every other role authenticates with scram-sha-256 on the
  socket and on TCP, so that the tests exercise password transport both ways;
- fsync off: the data is thrown away anyway.

Also usable from a shell: `tests/pgcluster.py start|stop DIR` (see
scripts/pg-test-cluster).
"""
import glob
import gzip
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_SQL = os.path.join(TOP, "tests", "fixtures", "trac-env-postgres.sql.gz")

SUPERUSER = "postgres"
TRAC_USER = "trac"
# A password that needs URL-encoding in trac.ini (':', '@', '%', ' ') and
# that no libpq or server message could produce by accident.
TRAC_PASSWORD = "Tr@c:pw%20 s3cr3t-x9q"


class PgClusterError(Exception):
    pass


def _run(cmd, check=True, timeout=120, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.run(cmd, text=True, errors="replace", timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise PgClusterError("%s exited %d: %s" % (" ".join(cmd), p.returncode,
                                                   (p.stderr or p.stdout).strip()[-2000:]))
    return p


def find_bindir(install=True):
    """Directory with initdb/pg_ctl/postgres of the newest installed version."""
    def newest():
        dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
                if os.access(os.path.join(d, "initdb"), os.X_OK)
                and os.access(os.path.join(d, "pg_ctl"), os.X_OK)]
        def ver(d):
            try:
                return float(d.split("/")[-2])
            except ValueError:
                return 0.0
        return max(dirs, key=ver) if dirs else None
    d = newest()
    if d is None and install:
        p = _run([os.path.join(TOP, "scripts", "install-deps")], check=False, timeout=900)
        d = newest()
        if d is None:
            raise PgClusterError("no PostgreSQL server found under /usr/lib/postgresql and "
                                 "scripts/install-deps could not install it: %s"
                                 % (p.stderr or p.stdout).strip()[-1000:])
    if d is None:
        raise PgClusterError("no PostgreSQL server found under /usr/lib/postgresql")
    return d


def server_user():
    """An unprivileged system user to run the server as (created if needed)."""
    for name in ("postgres", "tracsnap-pg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tracsnap-pg"])
    return pwd.getpwnam("tracsnap-pg")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def quote_uri(s):
    """Percent-encode a user or password for a postgres:// URI."""
    from urllib.parse import quote
    return quote(s, safe="")


class PgCluster:
    def __init__(self, base, bindir, user, port):
        self.base = base                   # private directory, everything lives below
        self.bindir = bindir
        self.user = user                   # pwd entry of the server's user
        self.port = port
        self.data = os.path.join(base, "data")
        self.sockdir = os.path.join(base, "sock")
        self.logfile = os.path.join(base, "server.log")
        self.running = False

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def start(cls, base=None, attempts=3):
        """initdb and start a new cluster; raises PgClusterError (with the
        server log) when it cannot."""
        bindir = find_bindir()
        user = server_user()
        if base is None:
            base = tempfile.mkdtemp(prefix="tracsnap-pg-", dir="/tmp")
        else:
            os.makedirs(base, exist_ok=True)
        os.chmod(base, 0o755)
        os.chown(base, user.pw_uid, user.pw_gid)   # the server writes its log there
        c = cls(base, bindir, user, 0)
        try:
            c._initdb()
            last = None
            for _ in range(attempts):
                c.port = free_port()
                try:
                    c._start()
                    break
                except PgClusterError as e:   # most likely the port was taken meanwhile
                    last = e
            else:
                raise last
            c._save_state()
        except BaseException:
            c.stop()
            raise
        return c

    def _as_user(self, cmd, **kw):
        if os.geteuid() == self.user.pw_uid:
            return _run(cmd, **kw)
        return _run(["setpriv", "--reuid=%d" % self.user.pw_uid, "--regid=%d" % self.user.pw_gid,
                     "--init-groups", "--"] + cmd, cwd="/", **kw)

    def _initdb(self):
        for d in (self.data, self.sockdir):
            os.makedirs(d, exist_ok=True)
            os.chown(d, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.data, 0o700)
        os.chmod(self.sockdir, 0o755)
        self._as_user([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", SUPERUSER,
                       "-E", "UTF8", "--no-locale", "--auth-local=trust",
                       "--auth-host=scram-sha-256", "--no-sync"], timeout=300)
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("# tracsnap test cluster: only the setup superuser goes without a password\n"
                    "local all %s trust\n"
                    "local all all scram-sha-256\n"
                    "host all all 127.0.0.1/32 scram-sha-256\n"
                    "host all all ::1/128 scram-sha-256\n" % SUPERUSER)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# tracsnap test cluster\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = '%s'\n"
                    "password_encryption = 'scram-sha-256'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 60\nshared_buffers = 32MB\n"
                    "log_min_messages = warning\nlogging_collector = off\n" % self.sockdir)

    def _start(self):
        p = self._as_user([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                           "-o", "-p %d" % self.port, "-w", "-t", "60", "start"],
                          check=False, timeout=90)
        if p.returncode != 0:
            raise PgClusterError("pg_ctl start (port %d) failed: %s\nserver log:\n%s"
                                 % (self.port, (p.stderr or p.stdout).strip(), self.log_tail()))
        self.running = True

    def _save_state(self):
        with open(os.path.join(self.base, "state"), "w") as f:
            f.write("%s\n%d\n%s\n" % (self.bindir, self.port, self.user.pw_name))

    @classmethod
    def attach(cls, base):
        """The cluster a shell `start` left in base."""
        with open(os.path.join(base, "state")) as f:
            bindir, port, name = f.read().split("\n")[:3]
        c = cls(base, bindir, pwd.getpwnam(name), int(port))
        c.running = True
        return c

    def log_tail(self, n=40):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no server log)"

    def stop_server(self, mode="immediate"):
        """Stop the server (the files stay, restart with start_server())."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            p = self._as_user([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", mode,
                               "-w", "-t", "30", "stop"], check=False, timeout=60)
            if p.returncode != 0:
                self._kill_postmaster()
        self.running = False

    def start_server(self):
        self._start()

    def _kill_postmaster(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def stop(self):
        """Stop the server and remove every file; never raises."""
        try:
            self.stop_server()
        except Exception:
            self._kill_postmaster()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- use ---------------------------------------------------------------------
    def conn_kw(self, dbname="postgres", user=SUPERUSER, password=None, tcp=False):
        kw = {"dbname": dbname, "user": user, "port": self.port,
              "host": "127.0.0.1" if tcp else self.sockdir, "connect_timeout": 10}
        if password is not None:
            kw["password"] = password
        return kw

    def connect(self, dbname="postgres", user=SUPERUSER, password=None, tcp=False, autocommit=True):
        import psycopg2
        cnx = psycopg2.connect(**self.conn_kw(dbname, user, password, tcp))
        cnx.autocommit = autocommit
        return cnx

    def psql_env(self, user=TRAC_USER, password=TRAC_PASSWORD, tcp=False):
        """Environment for psql/pg_dump run by a test (password in PGPASSWORD,
        never on the command line)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST="127.0.0.1" if tcp else self.sockdir, PGPORT=str(self.port), PGUSER=user,
                   PGCONNECT_TIMEOUT="10")
        if password is not None:
            env["PGPASSWORD"] = password
        return env

    def psql_bin(self):
        return os.path.join(self.bindir, "psql")

    def sql(self, statements, dbname="postgres"):
        """Run statements as the superuser (autocommit)."""
        cnx = self.connect(dbname)
        try:
            cur = cnx.cursor()
            for s in ([statements] if isinstance(statements, str) else statements):
                cur.execute(s)
            try:
                return cur.fetchall()
            except Exception:
                return None
        finally:
            cnx.close()

    def ensure_role(self, user=TRAC_USER, password=TRAC_PASSWORD):
        from psycopg2 import sql as q
        cnx = self.connect()
        try:
            cur = cnx.cursor()
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(q.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(q.Identifier(user)),
                        (password,))
        finally:
            cnx.close()

    def create_db(self, dbname, owner=TRAC_USER):
        from psycopg2 import sql as q
        cnx = self.connect()
        try:
            cnx.cursor().execute(q.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'")
                                 .format(q.Identifier(dbname), q.Identifier(owner)))
        finally:
            cnx.close()

    def drop_db(self, dbname):
        from psycopg2 import sql as q
        cnx = self.connect()
        try:
            cnx.cursor().execute(q.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(q.Identifier(dbname)))
        finally:
            cnx.close()

    def load_sql(self, dbname, path=None, text=None, user=TRAC_USER, password=TRAC_PASSWORD):
        """psql -v ON_ERROR_STOP=1 -U user -d dbname -f path (or the text on
        stdin), as tracsnap restore does (doc/contract.md section 6); raises
        with psql's output."""
        cmd = [self.psql_bin(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", dbname]
        cmd += ["-f", path] if path else ["-f", "-"]
        p = _run(cmd, check=False, input=text, env=self.psql_env(user, password), timeout=300)
        if p.returncode != 0:
            raise PgClusterError("loading %s into %s failed (exit %d): %s"
                                 % (path or "SQL", dbname, p.returncode, (p.stderr or p.stdout)[-2000:]))
        return p

    def create_trac_db(self, dbname, user=TRAC_USER, password=TRAC_PASSWORD):
        """A fresh database owned by user, holding the fixture (doc/contract.md section 3:
        load the plain dump into an empty database with psql)."""
        self.ensure_role(user, password)
        self.drop_db(dbname)
        self.create_db(dbname, owner=user)
        with gzip.open(FIXTURE_SQL, "rt") as f:
            text = f.read()
        self.load_sql(dbname, text=text, user=user, password=password)

    def uri(self, dbname, user=TRAC_USER, password=TRAC_PASSWORD, tcp=True, schema=None):
        """The [trac] database value for dbname."""
        auth = quote_uri(user) + (":" + quote_uri(password) if password is not None else "")
        if tcp:
            s = "postgres://%s@127.0.0.1:%d/%s" % (auth, self.port, dbname)
            q = []
        else:
            # Trac's Unix-socket form; the port picks the socket's name.
            s = "postgres://%s@:%d/%s" % (auth, self.port, dbname)
            q = ["host=" + self.sockdir]
        if schema:
            q.insert(0, "schema=" + schema)
        return s + ("?" + "&".join(q) if q else "")


def main(argv):
    if len(argv) == 3 and argv[1] == "start":
        c = PgCluster.start(base=argv[2])
        c.ensure_role()
        print("port=%d socket=%s user=%s password=%s" % (c.port, c.sockdir, TRAC_USER, TRAC_PASSWORD))
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        PgCluster.attach(argv[2]).stop()
        return 0
    sys.stderr.write("usage: %s start|stop DIR\n" % argv[0])
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
