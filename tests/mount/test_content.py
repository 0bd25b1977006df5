"""What a snapshot contains (doc/contract.md section 3) and how the store keeps it
(doc/contract.md section 5), checked through the mount and in the store."""
import hashlib
import os
import shutil
import socket
import stat
import subprocess

from tshelpers import (assert_same_files, run, set_trac_database, sha256_file, snapshot_names, sqlite_ro,
                       store_entries, store_snapshots, tracsnap, tree_entries, tree_state, wait_sealed)

JOURNAL_SUFFIXES = ("-journal", "-wal", "-shm", "-stmtjrnl", "-mj")




def sqlite_cli(db, sql):
    return run(["sqlite3", "-readonly", db, sql]).stdout.strip()


def rows(db, table, order):
    c = sqlite_ro(db)
    try:
        return c.execute("SELECT * FROM %s ORDER BY %s" % (table, order)).fetchall()
    finally:
        c.close()


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
        specials = ("htdocs/pipe", "plugins/nulldev", "plugins/sock")
        m.expect_log(*[r"^tracsnap: warning: .*/%s: skipped " % rel for rel in specials])
        os.mkdir(m.path("s"))
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


def test_env_given_through_symlink_with_trailing_slash(env_sqlite, mount_factory, tmp_path):
    link = tmp_path / "env-link"
    os.symlink(env_sqlite, str(link))
    m = mount_factory(str(link) + "/")
    os.mkdir(m.path("s"))
    assert_same_files(env_sqlite, m.path("s"))
    assert_db_good(m.path("s", "db", "trac.db"))


# ---------------------------------------------------------------- store

def _read_manifest(path):
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", "surrogateescape").split("\n")
    # fields are TAB-separated (snapshot/store/manifest.h), header lines included
    assert lines[0].split() == ["tracsnap-manifest", "2"], lines[0]
    # entries: 12 fields, the path last (version 2: the store copy's inode
    # and ctime before it)
    entries = [l.split("\t") for l in lines[1:] if l.count("\t") == 11]
    counts = [l.split() for l in lines if l.split()[:1] == ["entries"]]
    assert len(counts) == 1 and int(counts[0][1]) == len(entries), (counts, len(entries))
    assert [l for l in lines if l][-1] == "end"
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

    wait_sealed(store, "s")   # the daemon hashes in the background
    lines, entries = _read_manifest(os.path.join(snapdir, "manifest"))
    viewt = tree_entries(m.path("s"))
    by_path = {e[-1]: e for e in entries}
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
    before = tree_state(env_sqlite)
    db_sum = sha256_file(db)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("a"))
    os.mkdir(m.path("b"))
    os.rename(m.path("a"), m.path("c"))
    os.rmdir(m.path("b"))
    m.stop()
    after = tree_state(env_sqlite)
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


def test_view_reports_usable_sizes(mnt):
    os.mkdir(mnt.path("s"))
    for rel, st in tree_entries(mnt.path("s")).items():
        if stat.S_ISREG(st.st_mode) and st.st_size:
            assert st.st_blocks * 512 >= st.st_size, (rel, st.st_blocks, st.st_size)   # du
    vfs = os.statvfs(mnt.mnt)                                                           # df
    assert vfs.f_bsize > 0


# ---------------------------------------------------------------- unusual trees

def _unescape_manifest(text):
    out, i = bytearray(), 0
    b = os.fsencode(text)
    while i < len(b):
        if b[i:i + 1] == b"\\":
            c = b[i + 1:i + 2]
            if c == b"x":
                out.append(int(b[i + 2:i + 4], 16))
                i += 4
                continue
            out += {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}[c]
            i += 2
        else:
            out.append(b[i])
            i += 1
    return bytes(out)


def test_unusual_file_names(env_sqlite, mount_factory):
    base = os.fsencode(os.path.join(env_sqlite, "htdocs"))
    names = [b"with space", b"tab\there", b"new\nline", b"back\\slash", b"caf\xc3\xa9",
             b"latin1-\xe9\xff", b"-leading-dash", b".hidden", b"x" * 255, b"cr\rhere"]
    for i, n in enumerate(names):
        with open(os.path.join(base, n), "wb") as f:
            f.write(b"content %d\n" % i)
    deep = os.path.join(base, *[b"d%d" % i for i in range(20)])
    os.makedirs(deep)
    with open(os.path.join(deep, b"leaf"), "wb") as f:
        f.write(b"leaf\n")
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    snap = os.fsencode(m.path("s", "htdocs"))
    assert sorted(os.listdir(snap)) == sorted(names + [b"d0"])
    for i, n in enumerate(names):
        with open(os.path.join(snap, n), "rb") as f:
            assert f.read() == b"content %d\n" % i, n
    with open(os.path.join(snap, *[b"d%d" % i for i in range(20)], b"leaf"), "rb") as f:
        assert f.read() == b"leaf\n"
    # the manifest records every one of them, unambiguously
    _, entries = _read_manifest(os.path.join(m.store, "s", "manifest"))
    recorded = {_unescape_manifest(e[-1]) for e in entries}
    for n in names:
        assert b"htdocs/" + n in recorded, n


def test_large_file_and_offsets(env_sqlite, mount_factory):
    data = os.urandom(5 * 1024 * 1024 + 123)
    with open(os.path.join(env_sqlite, "plugins", "big.egg"), "wb") as f:
        f.write(data)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    p = m.path("s", "plugins", "big.egg")
    assert os.stat(p).st_size == len(data)
    with open(p, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    fd = os.open(p, os.O_RDONLY)
    try:
        for off, n in ((0, 1), (4095, 2), (131071, 200000), (len(data) - 10, 100), (len(data), 10),
                       (len(data) + 4096, 10)):
            assert os.pread(fd, n, off) == data[off:off + n], (off, n)
    finally:
        os.close(fd)


def test_large_directory(env_sqlite, mount_factory):
    d = os.path.join(env_sqlite, "htdocs", "many")
    os.mkdir(d)
    names = ["file-%05d-%s.txt" % (i, "n" * (i % 50)) for i in range(1500)]
    for n in names:
        with open(os.path.join(d, n), "w") as f:
            f.write(n)
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    got = os.listdir(m.path("s", "htdocs", "many"))
    assert len(got) == len(names)
    assert sorted(got) == sorted(names)
    assert open(m.path("s", "htdocs", "many", names[-1])).read() == names[-1]


def test_hard_links_in_env_copied_as_content(env_sqlite, mount_factory):
    a = os.path.join(env_sqlite, "plugins", "a.py")
    with open(a, "w") as f:
        f.write("shared = True\n")
    os.link(a, os.path.join(env_sqlite, "htdocs", "b.py"))
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    assert open(m.path("s", "plugins", "a.py")).read() == "shared = True\n"
    assert open(m.path("s", "htdocs", "b.py")).read() == "shared = True\n"
    # editing the live file later changes neither
    with open(a, "r+") as f:
        f.write("SHARED")
    assert open(m.path("s", "htdocs", "b.py")).read() == "shared = True\n"


# ---------------------------------------------------------------- the database, live

def _add_ticket(conn, n):
    conn.execute("INSERT INTO ticket (id, summary, time, changetime) VALUES (?, ?, 0, 0)",
                 (n, "ticket %d" % n))


def test_database_has_every_commit_before_the_snapshot(mnt):
    import sqlite3
    os.mkdir(mnt.path("a"))
    conn = sqlite3.connect(os.path.join(mnt.env, "db", "trac.db"), isolation_level=None)
    try:
        _add_ticket(conn, 31)
        os.mkdir(mnt.path("b"))
        _add_ticket(conn, 32)
    finally:
        conn.close()
    assert sqlite_cli(mnt.path("a", "db", "trac.db"), "select max(id) from ticket") == "30"
    assert sqlite_cli(mnt.path("b", "db", "trac.db"), "select max(id) from ticket") == "31"
    assert_db_good(mnt.path("b", "db", "trac.db"), tickets=31)


def test_database_in_wal_mode_includes_wal_contents(env_sqlite, mount_factory):
    import sqlite3
    dbp = os.path.join(env_sqlite, "db", "trac.db")
    conn = sqlite3.connect(dbp, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        conn.execute("PRAGMA wal_autocheckpoint=0")
        reader = sqlite3.connect(dbp, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM ticket").fetchone()   # pins the WAL
        for n in range(31, 41):
            _add_ticket(conn, n)
        assert os.path.getsize(dbp + "-wal") > 0
        m = mount_factory(env_sqlite)
        os.mkdir(m.path("s"))
        reader.execute("ROLLBACK")
        reader.close()
    finally:
        conn.close()
    db = m.path("s", "db", "trac.db")
    assert_db_good(db, tickets=40)
    assert sorted(os.listdir(m.path("s", "db"))) == ["trac.db"]


def test_damaged_store_copy_is_not_shared_again(env_sqlite, tmp_path):
    """A store copy that no longer matches its manifest (size, mode, mtime) is
    copied afresh by the next snapshot instead of being hard-linked into it."""
    store = tmp_path / "store"
    tracsnap("snapshot", "--store", store, env_sqlite, "a")
    damaged = store / "a" / "tree" / "README"
    good = open(os.path.join(env_sqlite, "README"), "rb").read()
    st = os.stat(damaged)
    with open(damaged, "ab") as f:          # damage: one byte appended
        f.write(b"x")
    os.utime(damaged, ns=(st.st_atime_ns, st.st_mtime_ns))
    chmodded = store / "a" / "tree" / "VERSION"
    os.chmod(chmodded, 0o600)
    tracsnap("snapshot", "--store", store, env_sqlite, "b")
    b_readme = store / "b" / "tree" / "README"
    assert os.stat(b_readme).st_ino != os.stat(damaged).st_ino
    assert open(b_readme, "rb").read() == good
    b_version = store / "b" / "tree" / "VERSION"
    assert os.stat(b_version).st_ino != os.stat(chmodded).st_ino
    assert stat.S_IMODE(os.stat(b_version).st_mode) == 0o644
    # untouched files are still shared
    assert os.stat(store / "b" / "tree" / "conf" / "trac.ini").st_ino == \
        os.stat(store / "a" / "tree" / "conf" / "trac.ini").st_ino
