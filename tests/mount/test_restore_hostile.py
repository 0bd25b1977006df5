"""`tracsnap restore` against the account that owns the environment (issue 14).

Restore runs as root over a tree that belongs to a less-trusted account.
Each test makes a real unprivileged user (tsh2<n>, removed again even when
the test fails) that owns a home directory holding ENV and, for SQLite, a
directory with the external database, next to a root-owned canary tree.
That user then attacks the restore: symlinks instead of directories after
the snapshot, a dump rewritten with `\\! id > FILE` while psql is about to
read it, directories swapped for symlinks during the copy, the swap and the
WAL switch.  After each: the canary tree is exactly as it was (owner, mode,
content, entries), no file that only root could have made appeared, and
restore either restored correctly or refused with one line.
"""
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import pytest

from tshelpers import cli_snapshot, extract_fixture, run, set_trac_database, tracsnap, tree_state
from conftest_pg import (DUMP_REL, pg_cluster, pg_db, table_digests,  # noqa: F401
                         trac_connect)

# ------------------------------------------------------------------ set-up


@pytest.fixture
def user():
    """A fresh unprivileged account: (name, uid, gid)."""
    name = "tsh2%d" % (os.getpid() % 100000)
    run(["userdel", name], check=False)
    run(["useradd", "-M", "-N", "-g", "nogroup", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name])
    try:
        pw = pwd.getpwnam(name)
        yield name, pw.pw_uid, pw.pw_gid
    finally:
        run(["pkill", "-KILL", "-u", name], check=False)
        run(["userdel", name], check=False)


@pytest.fixture
def base():
    """A root-owned 0755 directory in /tmp (the pytest tmp_path is 0700:
    the user could not reach anything below it)."""
    d = tempfile.mkdtemp(prefix="tsh2-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def chown_tree(path, uid, gid):
    os.lchown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), uid, gid)


def make_sqlite(path, rows=3):
    c = sqlite3.connect(path)
    with c:
        c.execute("CREATE TABLE canary (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(rows):
            c.execute("INSERT INTO canary (v) VALUES (?)", ("root's row %d" % i,))
    c.close()


def make_canary(base):
    """base/rootonly: root's, 0755, with root-only files, one of them an
    SQLite database of root's at rootonly/victim, rootonly/trac.db and
    rootonly/db/trac.db (the names an attack would aim restore at)."""
    root = os.path.join(base, "rootonly")
    os.mkdir(root, 0o755)
    os.mkdir(os.path.join(root, "db"), 0o755)
    for rel in ("victim", "trac.db", "db/trac.db"):
        make_sqlite(os.path.join(root, rel))
        os.chmod(os.path.join(root, rel), 0o600)
    with open(os.path.join(root, "secret"), "w") as f:
        f.write("root only\n")
    os.chmod(os.path.join(root, "secret"), 0o600)
    return root


def canary_state(root):
    """Everything about the canary tree: entries, owners, modes, inodes,
    contents (not times: the test itself reaches into its directories)."""
    return tree_state(root, owners=True, inode=True, mtime=False, top=True)


def as_user(user, script, **kw):
    """Start python3 -c script as the user (Popen)."""
    name = user[0]
    return subprocess.Popen(["setpriv", "--reuid=" + name, "--regid=nogroup", "--clear-groups",
                             sys.executable, "-c", script] + [str(a) for a in kw.pop("args", [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def as_user_run(user, script, *args):
    p = as_user(user, script, args=args)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return out


def home_for(user, base):
    home = os.path.join(base, "home")
    os.mkdir(home, 0o755)
    os.chown(home, user[1], user[2])
    return home


def no_root_files(home):
    """Paths below home owned by root that the restore left behind (only
    root could have made them: the user owns everything else)."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(home):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.lstat(p).st_uid == 0:
                bad.append(p)
    return bad


def one_line(p):
    lines = p.stderr.strip().splitlines()
    return len(lines) == 1


# ------------------------------------------------------ external SQLite database


def external_env(user, base):
    home = home_for(user, base)
    env = extract_fixture("trac-env-sqlite", home)
    dbs = os.path.join(home, "dbs")
    os.mkdir(dbs, 0o755)
    db = os.path.join(dbs, "victim")
    shutil.move(os.path.join(env, "db", "trac.db"), db)
    set_trac_database(env, "sqlite:" + db)
    chown_tree(home, user[1], user[2])
    return home, env, dbs, db


def test_external_db_dir_swapped_for_symlink_is_refused(user, base):
    """Bug 1: after the snapshot the user replaces the database's directory
    with a symlink to a root-owned one; restore must not follow it."""
    canary = make_canary(base)
    home, env, dbs, db = external_env(user, base)
    store = os.path.join(base, "store")
    tree = cli_snapshot(env, store, "one").tree
    as_user_run(user, "import os, sys; os.rename(sys.argv[1], sys.argv[1] + '.real'); "
                      "os.symlink(sys.argv[2], sys.argv[1])", dbs, canary)
    before_canary, before_env = canary_state(canary), tree_state(env)
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode != 0, "restore through the symlink succeeded: " + p.stdout
    assert one_line(p) and dbs in p.stderr and "symbolic link" in p.stderr, p.stderr
    assert canary_state(canary) == before_canary
    assert tree_state(env) == before_env
    assert sorted(os.listdir(home)) == sorted(["trac-env-sqlite", "dbs", "dbs.real"])
    assert no_root_files(home) == []


def test_external_db_dir_writable_by_others_is_refused(user, base):
    """A database directory others may write is no place for root to write."""
    home, env, dbs, db = external_env(user, base)
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    os.chmod(dbs, 0o777)
    before = tree_state(home)
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode != 0 and one_line(p), p.stderr
    assert dbs in p.stderr and "writable by group or others" in p.stderr, p.stderr
    assert tree_state(home) == before


def test_external_db_restored_for_the_user(user, base):
    """Nothing hostile: the user's database comes back, still the user's."""
    home, env, dbs, db = external_env(user, base)
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    c = sqlite3.connect(db)
    with c:
        c.execute("INSERT INTO ticket (id, summary) VALUES (9001, 'after')")
    c.close()
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode == 0, p.stderr
    st = os.lstat(db)
    assert (st.st_uid, st.st_gid) == (user[1], user[2])
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    assert c.execute("SELECT count(*) FROM ticket WHERE id = 9001").fetchone() == (0,)
    c.close()
    assert no_root_files(home) == []


# ------------------------------------------- flipping during copy, swap and WAL

FLIPPER = r"""
import os, sys, time
home, canary, stop = sys.argv[1], sys.argv[2], sys.argv[3]
flips = 0
def swap(path):
    global flips
    try:
        os.rename(path, path + '.flipped%d' % flips)
        os.symlink(canary, path)
        flips += 1
    except OSError:
        pass
while not os.path.exists(stop):
    try:
        names = os.listdir(home)
    except OSError:
        names = []
    for n in names:
        p = os.path.join(home, n)
        if '.restore-tmp-' in n and not os.path.islink(p):
            # inside the copy (if it can be entered at all), then the copy
            for sub in ('db', 'conf'):
                if os.path.isdir(os.path.join(p, sub)) and not os.path.islink(os.path.join(p, sub)):
                    swap(os.path.join(p, sub))
print(flips)
"""


def test_flipper_during_copy_swap_and_wal(user, base):
    """The user swaps directories in ENV's parent and in the restore copy for
    symlinks to the canary while restore copies, switches the database to
    WAL and swaps: the canary stays as it was, and restore either restores
    or refuses in one line."""
    canary = make_canary(base)
    home = home_for(user, base)
    env = extract_fixture("trac-env-sqlite", home)
    db = os.path.join(env, "db", "trac.db")
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    c.close()
    # Bulk, so that the copy takes a while.
    for i in range(300):
        with open(os.path.join(env, "htdocs", "bulk%03d.bin" % i), "wb") as f:
            f.write(os.urandom(16384))
    chown_tree(home, user[1], user[2])
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    before = canary_state(canary)
    stop = os.path.join(base, "stop")
    results = []
    for attempt in range(3):
        # Restore gives the database the WAL mode of the live one, as far
        # as it can read it without following a link.  An earlier attempt
        # may have left ENV/db a link to the canary (below): the live mode
        # is then unknown, and the snapshot's rollback mode stays.
        live_wal = not os.path.islink(os.path.dirname(db)) and os.path.isfile(db) and \
            not os.path.islink(db) and open(db, "rb").read(20)[18:20] == b"\x02\x02"
        flipper = as_user(user, FLIPPER, args=[home, canary, stop])
        try:
            time.sleep(0.2)
            p = tracsnap("restore", "--force", tree, env, check=False)
        finally:
            with open(stop, "w"):
                pass
            out, err = flipper.communicate(timeout=60)
            os.unlink(stop)
        assert flipper.returncode == 0, err
        results.append((p.returncode, p.stderr.strip(), out.strip()))
        assert canary_state(canary) == before, results
        assert p.returncode == 0 or one_line(p), p.stderr
        assert no_root_files(home) == [], (results, no_root_files(home))
        if p.returncode == 0:
            st = os.lstat(env)
            assert (st.st_uid, st.st_mode & 0o7777) == (user[1], os.lstat(tree).st_mode & 0o7777)
            # The copy's top is the user's just before the exchange (step 6 of
            # snapshot/restore/restore.h), and the flipper may swap its db for
            # a link to the canary then: their own ENV, which root no longer
            # touches.  The restored database is then where they moved it.
            # The exchange may also fall between the flipper's rename and its
            # symlink, which then lands in the tree exchanged out: the
            # restored ENV has the renamed directory and no db at all.
            rdb = db
            if os.path.islink(os.path.dirname(db)) or not os.path.lexists(os.path.dirname(db)):
                moved = [n for n in os.listdir(env) if n.startswith("db.flipped")]
                assert len(moved) == 1, os.listdir(env)
                rdb = os.path.join(env, moved[0], "trac.db")
            assert os.path.isfile(rdb), (sorted(os.listdir(env)), results)
            hdr = open(rdb, "rb").read(20)
            assert hdr[18:20] == (b"\x02\x02" if live_wal else b"\x01\x01"), \
                "restored database's mode %r; the live one was %s" % (hdr[18:20], "WAL" if live_wal else
                                                                        "behind a link")
            c = sqlite3.connect("file:%s?mode=ro" % rdb, uri=True)
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            c.close()


FLIP_PARENT = r"""
import os, sys, time
home, envname, canary, stop = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
n = 0
while not os.path.exists(stop):
    for name in os.listdir(home):
        p = os.path.join(home, name)
        if name.startswith(envname + '.restore-tmp-') and not os.path.islink(p):
            try:
                os.rename(p, os.path.join(home, 'moved%d' % n))
                os.symlink(canary, p)
                n += 1
            except OSError:
                pass
print(n)
"""


def test_copy_replaced_in_parent_is_refused(user, base):
    """The user renames restore's copy away in ENV's parent (which is the
    user's) and puts a symlink to the canary in its place: restore must not
    put that in place of ENV, nor write through it."""
    canary = make_canary(base)
    home = home_for(user, base)
    env = extract_fixture("trac-env-sqlite", home)
    for i in range(300):
        with open(os.path.join(env, "htdocs", "bulk%03d.bin" % i), "wb") as f:
            f.write(os.urandom(16384))
    chown_tree(home, user[1], user[2])
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    before, before_env = canary_state(canary), tree_state(env)
    stop = os.path.join(base, "stop")
    flipper = as_user(user, FLIP_PARENT, args=[home, os.path.basename(env), canary, stop])
    try:
        p = tracsnap("restore", "--force", tree, env, check=False)
    finally:
        with open(stop, "w"):
            pass
        out, err = flipper.communicate(timeout=60)
    assert flipper.returncode == 0, err
    assert canary_state(canary) == before
    assert not os.path.islink(env)
    if int(out.strip() or 0) > 0:
        assert p.returncode != 0 and one_line(p), (p.returncode, p.stderr)
        assert tree_state(env) == before_env
    else:
        assert p.returncode == 0, p.stderr


# -------------------------------------------------------------- PostgreSQL

REWRITER = r"""
import os, sys
home, line, stop = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0
def plant(d):
    global n
    tmp = os.path.join(d, '.evil%d' % n)
    try:
        with open(tmp, 'w') as f:
            f.write(line + '\n')
        os.rename(tmp, os.path.join(d, 'postgres-db-backup.sql'))
        n += 1
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
while not os.path.exists(stop):
    try:
        names = os.listdir(home)
    except OSError:
        continue
    for name in names:
        d = os.path.join(home, name, 'db')
        if os.path.isdir(d):
            plant(d)
print(n)
"""


def pg_home_env(user, base, cluster, db):
    home = home_for(user, base)
    env = extract_fixture("trac-env-postgres", home)
    set_trac_database(env, cluster.uri(db, tcp=True))
    chown_tree(home, user[1], user[2])
    return home, env


def pg_change(cluster, db):
    cnx = trac_connect(cluster, db)
    try:
        cur = cnx.cursor()
        cur.execute("INSERT INTO ticket (id, summary) VALUES (9001, 'after the snapshot')")
        cur.execute("DELETE FROM wiki")
    finally:
        cnx.close()


def test_pg_dump_rewritten_during_restore_is_not_run(user, base, pg_cluster, pg_db):
    """Bug 3: the user keeps rewriting every postgres-db-backup.sql it can
    reach (ENV's, the copy's) to `\\! id > CANARY` while restore runs: psql
    must never run it, and the tables come back."""
    home, env = pg_home_env(user, base, pg_cluster, pg_db)
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    want = table_digests(pg_cluster, pg_db)
    pg_change(pg_cluster, pg_db)
    pwned = os.path.join(base, "pwned")
    stop = os.path.join(base, "stop")
    rewriter = as_user(user, REWRITER, args=[home, "\\! id > " + pwned, stop])
    try:
        time.sleep(0.2)
        p = tracsnap("restore", "--force", tree, env, check=False)
    finally:
        with open(stop, "w"):
            pass
        out, err = rewriter.communicate(timeout=60)
    assert rewriter.returncode == 0, err
    assert int(out.strip()) > 0, "the rewriter never got to write"
    assert not os.path.exists(pwned), "psql ran the user's command: " + open(pwned).read()
    assert p.returncode == 0, p.stderr
    assert table_digests(pg_cluster, pg_db) == want


def test_pg_dump_with_meta_command_in_snapshot_is_refused(base, tmp_path, pg_cluster, pg_db):
    """A snapshot whose dump itself holds `\\!` (a tampered store) is refused
    before anything changes."""
    home = os.path.join(base, "home")
    os.mkdir(home, 0o755)
    env = extract_fixture("trac-env-postgres", home)
    set_trac_database(env, pg_cluster.uri(pg_db, tcp=True))
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    bad = str(tmp_path / "bad")
    run(["cp", "-a", tree, bad])
    pwned = os.path.join(base, "pwned")
    with open(os.path.join(bad, DUMP_REL), "a") as f:
        f.write("\n\\! id > %s\n" % pwned)
    pg_change(pg_cluster, pg_db)
    changed = table_digests(pg_cluster, pg_db)
    before = tree_state(env)
    p = tracsnap("restore", "--force", "--store", os.path.join(base, "store2"), bad, env, check=False)
    assert not os.path.exists(pwned), "psql ran the dump's command"
    assert p.returncode != 0 and one_line(p), p.stderr
    assert "meta-command \\!" in p.stderr and DUMP_REL in p.stderr, p.stderr
    assert tree_state(env) == before
    assert sorted(os.listdir(home)) == ["trac-env-postgres"]
    assert table_digests(pg_cluster, pg_db) == changed


def test_pg_dump_without_trac_tables_is_refused(base, tmp_path, pg_cluster, pg_db):
    """A dump that loads but leaves no Trac tables: not "restored"; the
    database and ENV as they were."""
    home = os.path.join(base, "home")
    os.mkdir(home, 0o755)
    env = extract_fixture("trac-env-postgres", home)
    set_trac_database(env, pg_cluster.uri(pg_db, tcp=True))
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    bad = str(tmp_path / "bad")
    run(["cp", "-a", tree, bad])
    with open(os.path.join(bad, DUMP_REL), "w") as f:
        f.write("SELECT 1;\n")
    changed = table_digests(pg_cluster, pg_db)
    before = tree_state(env)
    p = tracsnap("restore", "--force", "--store", os.path.join(base, "store2"), bad, env, check=False)
    assert p.returncode != 0 and one_line(p), p.stderr
    assert "Trac's tables" in p.stderr and "restored" not in p.stdout, p.stderr
    assert tree_state(env) == before
    assert sorted(os.listdir(home)) == ["trac-env-postgres"]
    assert table_digests(pg_cluster, pg_db) == changed


def test_env_symlinked_to_roots_environment_is_refused(user, base):
    """After the snapshot the user replaces ENV with a symlink to a Trac
    environment of root's: restore (given the user's ENV path) must not put
    the user's files in place of root's."""
    home = home_for(user, base)
    env = extract_fixture("trac-env-sqlite", home)
    chown_tree(home, user[1], user[2])
    tree = cli_snapshot(env, os.path.join(base, "store"), "one").tree
    rootenvs = os.path.join(base, "rootenvs")
    os.mkdir(rootenvs, 0o755)
    rootenv = extract_fixture("trac-env-sqlite", rootenvs)
    before = canary_state(rootenvs)
    as_user_run(user, "import os, sys; os.rename(sys.argv[1], sys.argv[1] + '.real'); "
                      "os.symlink(sys.argv[2], sys.argv[1])", env, rootenv)
    p = tracsnap("restore", tree, env, check=False)
    assert p.returncode != 0 and one_line(p), (p.returncode, p.stdout, p.stderr)
    # The path now leads to another environment than the snapshot's...
    assert "not of %s" % rootenv in p.stderr and "--force" in p.stderr, p.stderr
    assert canary_state(rootenvs) == before
    # ... and even --force does not put the user's files in place of root's.
    p = tracsnap("restore", "--force", "--store", os.path.join(base, "store2"), tree, env, check=False)
    assert p.returncode != 0 and one_line(p), (p.returncode, p.stdout, p.stderr)
    assert rootenv in p.stderr and "owned by uid 0" in p.stderr, p.stderr
    assert canary_state(rootenvs) == before
