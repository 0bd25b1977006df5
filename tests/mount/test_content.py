"""What a snapshot contains (spec section 3) and how the store keeps it
(spec section 5), checked through the mount and in the store."""
import hashlib
import os
import shutil
import socket
import stat
import subprocess

from conftest import (fs_tree_state, run, set_trac_database, snapshot_names, sqlite_ro,
                      store_entries, store_snapshots, tree_entries)

JOURNAL_SUFFIXES = ("-journal", "-wal", "-shm", "-stmtjrnl", "-mj")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def sqlite_cli(db, sql):
    return run(["sqlite3", "-readonly", db, sql]).stdout.strip()


def rows(db, table, order):
    c = sqlite_ro(db)
    try:
        return c.execute("SELECT * FROM %s ORDER BY %s" % (table, order)).fetchall()
    finally:
        c.close()


def assert_same_files(env, snap, skip=("db/trac.db",)):
    """Same set of entries; same bytes for files, same targets for links."""
    envt = {k: v for k, v in tree_entries(env).items() if k not in skip}
    snapt = {k: v for k, v in tree_entries(snap).items() if k not in skip}
    missing = sorted(set(envt) - set(snapt))
    extra = sorted(set(snapt) - set(envt))
    assert not missing and not extra, "missing %s, extra %s" % (missing, extra)
    for rel, st in envt.items():
        e, s = os.path.join(env, rel), os.path.join(snap, rel)
        if stat.S_ISLNK(st.st_mode):
            assert os.readlink(s) == os.readlink(e), rel
        elif stat.S_ISREG(st.st_mode):
            assert stat.S_ISREG(snapt[rel].st_mode), rel
            with open(e, "rb") as f1, open(s, "rb") as f2:
                assert f1.read() == f2.read(), rel
        else:
            assert stat.S_ISDIR(snapt[rel].st_mode), rel


def assert_db_good(db, tickets=30):
    assert sqlite_cli(db, "select count(*) from ticket") == str(tickets)
    assert sqlite_cli(db, "PRAGMA integrity_check") == "ok"
    assert sqlite_cli(db, "PRAGMA journal_mode") == "delete"


# ---------------------------------------------------------------- content

def test_every_file_identical(mnt):
    os.mkdir(mnt.path("s"))
    assert_same_files(mnt.env, mnt.path("s"))
    assert os.path.isfile(mnt.path("s", "db", "trac.db"))


def test_database_by_sql(mnt):
    env_db = os.path.join(mnt.env, "db", "trac.db")
    os.mkdir(mnt.path("s"))
    db = mnt.path("s", "db", "trac.db")
    assert_db_good(db)
    for table, order in (("ticket", "id"), ("wiki", "name, version"),
                         ("attachment", "type, id, filename"), ("system", "name")):
        assert rows(db, table, order) == rows(env_db, table, order), table
    assert len(rows(db, "attachment", "id")) == 6
    # reading it on the read-only mount left no side file behind
    assert sorted(os.listdir(mnt.path("s", "db"))) == ["trac.db"]


def _make_journal_lookalikes(env):
    db = os.path.join(env, "db")
    for n in ("trac.db-stmtjrnl", "trac.db-mj1234ab"):
        open(os.path.join(db, n), "wb").close()
    # not journals: must be copied
    with open(os.path.join(db, "trac.db-old"), "wb") as f:
        f.write(b"not a journal\n")
    with open(os.path.join(db, "notes.txt"), "wb") as f:
        f.write(b"notes\n")


def _check_journals_skipped(m, name):
    os.mkdir(m.path(name))
    assert sorted(os.listdir(m.path(name, "db"))) == ["notes.txt", "trac.db", "trac.db-old"]
    assert not [n for n in os.listdir(os.path.join(m.store, name, "tree", "db"))
                if n.startswith("trac.db-") and n != "trac.db-old"]
    assert open(m.path(name, "db", "trac.db-old"), "rb").read() == b"not a journal\n"
    assert_db_good(m.path(name, "db", "trac.db"))
    # the live environment keeps them
    assert os.path.exists(os.path.join(m.env, "db", "trac.db-stmtjrnl"))
    assert os.path.exists(os.path.join(m.env, "db", "trac.db-mj1234ab"))


def test_journals_never_copied(env_sqlite, mount_factory):
    _make_journal_lookalikes(env_sqlite)
    m = mount_factory(env_sqlite)
    _check_journals_skipped(m, "s")


def test_journals_never_copied_with_uri_params(env_sqlite, mount_factory):
    _make_journal_lookalikes(env_sqlite)
    set_trac_database(env_sqlite, "sqlite:db/trac.db?timeout=20&synchronous=NORMAL")
    assert stat.S_IMODE(os.stat(os.path.join(env_sqlite, "conf", "trac.ini")).st_mode) == 0o600
    m = mount_factory(env_sqlite)
    _check_journals_skipped(m, "s")
    assert "sqlite:db/trac.db?timeout=20&synchronous=NORMAL" in \
        open(m.path("s", "conf", "trac.ini")).read()


def test_special_files_skipped_with_warning(env_sqlite, mount_factory):
    os.mkfifo(os.path.join(env_sqlite, "htdocs", "pipe"))
    os.mknod(os.path.join(env_sqlite, "plugins", "nulldev"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(os.path.join(env_sqlite, "plugins"))
    try:
        sock.bind("sock")     # relative: the absolute path may exceed sun_path
    finally:
        os.chdir(cwd)
    try:
        m = mount_factory(env_sqlite)
        os.mkdir(m.path("s"))
        specials = ("htdocs/pipe", "plugins/nulldev", "plugins/sock")
        for rel in specials:
            assert not os.path.lexists(m.path("s", rel)), rel
        assert_same_files(env_sqlite, m.path("s"), skip=("db/trac.db",) + specials)
        log = m.log_text().splitlines()
        for rel in specials:
            assert [l for l in log if rel in l and "warning" in l.lower()], \
                "no warning naming %s in the log:\n%s" % (rel, "\n".join(log))
    finally:
        sock.close()


def test_no_database_option(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite, opts=["no_database"])
    os.mkdir(m.path("s"))
    assert not os.path.lexists(m.path("s", "db", "trac.db"))
    assert os.path.isdir(m.path("s", "db"))
    assert_same_files(env_sqlite, m.path("s"))


def test_database_outside_environment(env_sqlite, mount_factory, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(os.path.join(env_sqlite, "db", "trac.db"), str(outside / "trac.db"))
    set_trac_database(env_sqlite, "sqlite:%s" % (outside / "trac.db"))
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    ext = m.path("s", "tracsnap-external-db", "trac.db")
    assert os.path.isfile(ext)
    assert_db_good(ext)
    assert os.listdir(m.path("s", "db")) == []
    assert_same_files(env_sqlite, m.path("s"), skip=("tracsnap-external-db",
                                                     "tracsnap-external-db/trac.db"))
    assert sorted(os.listdir(m.path("s", "tracsnap-external-db"))) == ["trac.db"]
    # the original stays where it was
    assert os.listdir(str(outside)) == ["trac.db"]


# ---------------------------------------------------------------- store

def _read_manifest(path):
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", "surrogateescape").split("\n")
    assert lines[0] == "tracsnap-manifest 1", lines[0]
    entries = [l.split("\t") for l in lines[1:] if l.count("\t") == 9]
    return lines, entries


def test_store_layout_and_manifest(env_sqlite, mount_factory, tmp_path):
    store = str(tmp_path / "newstore")
    assert not os.path.exists(store)
    m = mount_factory(env_sqlite, store=store)
    os.mkdir(m.path("s"))
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    snapdir = os.path.join(store, "s")
    assert os.path.isdir(os.path.join(snapdir, "tree"))
    assert os.path.isfile(os.path.join(snapdir, "manifest"))
    # the tree in the store is what the view shows
    assert set(tree_entries(os.path.join(snapdir, "tree"))) == set(tree_entries(m.path("s")))

    lines, entries = _read_manifest(os.path.join(snapdir, "manifest"))
    viewt = tree_entries(m.path("s"))
    by_path = {e[9]: e for e in entries}
    assert len(by_path) == len(entries), "duplicate paths in the manifest"
    assert set(by_path) == set(viewt), (sorted(set(by_path) ^ set(viewt)))
    for rel, e in by_path.items():
        st = viewt[rel]
        typ = {stat.S_IFDIR: "d", stat.S_IFREG: "f", stat.S_IFLNK: "l"}[stat.S_IFMT(st.st_mode)]
        assert e[0] == typ, rel
        assert int(e[1], 8) == stat.S_IMODE(st.st_mode), rel
        assert (int(e[2]), int(e[3])) == (st.st_uid, st.st_gid), rel
        if typ == "f":
            assert int(e[4]) == st.st_size, rel
            assert e[6] == sha256_file(m.path("s", rel)), rel
    assert "db/trac.db" in by_path


def test_leftover_tmp_dir_hidden_and_removed(env_sqlite, mount_factory, tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    left = store / ".tmp-foo.abc123"
    (left / "tree").mkdir(parents=True)
    (left / "tree" / "VERSION").write_text("partial\n")
    m = mount_factory(env_sqlite, store=str(store))
    assert os.listdir(m.mnt) == []
    os.mkdir(m.path("s"))
    assert snapshot_names(m.mnt) == ["s"]
    assert not left.exists(), store_entries(str(store))
    assert store_snapshots(str(store)) == ["s"]


def test_live_environment_unchanged(env_sqlite, mount_factory):
    db = os.path.join(env_sqlite, "db", "trac.db")
    before = fs_tree_state(env_sqlite)
    db_sum = sha256_file(db)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("a"))
    os.mkdir(m.path("b"))
    os.rename(m.path("a"), m.path("c"))
    os.rmdir(m.path("b"))
    m.stop()
    after = fs_tree_state(env_sqlite)
    assert sha256_file(db) == db_sum
    for state in (before, after):
        state.pop("db/trac.db")
        state.pop("db")
    assert after == before
    assert sorted(os.listdir(os.path.join(env_sqlite, "db"))) == ["trac.db"]


def test_snapshot_independent_of_later_env_edits(mnt):
    readme = os.path.join(mnt.env, "README")
    old = open(readme, "rb").read()
    os.mkdir(mnt.path("a"))
    os.mkdir(mnt.path("b"))          # shares README with a in the store
    with open(readme, "r+b") as f:    # in-place edit of the live file
        f.write(b"CHANGED")
    with open(os.path.join(mnt.env, "plugins", "new.py"), "w") as f:
        f.write("x = 1\n")
    os.mkdir(mnt.path("c"))
    assert open(mnt.path("a", "README"), "rb").read() == old
    assert open(mnt.path("b", "README"), "rb").read() == old
    assert open(mnt.path("c", "README"), "rb").read().startswith(b"CHANGED")
    assert not os.path.exists(mnt.path("b", "plugins", "new.py"))
    assert os.path.isfile(mnt.path("c", "plugins", "new.py"))
    for n in ("a", "b"):
        assert open(os.path.join(mnt.store, n, "tree", "README"), "rb").read() == old


def test_tools_see_a_plain_tree(mnt, tmp_path):
    os.mkdir(mnt.path("s"))
    p = run(["tar", "-C", mnt.path("s"), "-cf", str(tmp_path / "s.tar"), "."], check=False)
    assert p.returncode == 0, p.stderr
    assert "changed as we read it" not in p.stderr
    run(["cp", "-a", mnt.path("s"), str(tmp_path / "copy")])
    p = subprocess.run(["diff", "-r", "--no-dereference", mnt.path("s"), str(tmp_path / "copy")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, p.stdout
    assert_db_good(str(tmp_path / "copy" / "db" / "trac.db"))
