"""The stage (snapshot/take/stage.h): once a snapshot is sealed, the daemon makes
the next snapshot's tree ahead in STORE/.stage (the newest snapshot's
directories and hard links to its files), and the next mkdir starts from it.

Checked with the real daemon on a real mount and ordinary tools: the stage
appears after the seal and never in the view; a snapshot made from it is the
environment exactly after every kind of change (files changed, removed and
added, a directory removed, a file become a directory and a directory a file,
symlinks, database rows), shares unchanged files with the previous snapshot
and leaves that one intact (`tracsnap verify`); deleting the snapshot a stage
was made from releases its files, and the stage is made again from the newest
snapshot left.

The daemon also keeps the stage current (fs/fs_stage.c): a new attachment is
copied into it once written, and the next snapshot takes that copy (same
inode in the store) instead of copying again; writes to the database alone
never start a refresh.
"""
import os
import shutil
import sqlite3
import subprocess
import time

from tshelpers import (assert_same_files, snapshot_names, stage_base, tracsnap, wait_refreshed,
                       wait_sealed, wait_stage, wait_staged_file)







def sqlite3_cli(db, sql):
    """What the sqlite3 tool prints for sql on db (a snapshot's copy)."""
    return subprocess.run(["sqlite3", db, sql], capture_output=True, text=True, check=True).stdout


def first_attachment(env):
    base = os.path.join(env, "files", "attachments", "ticket")
    for dirpath, _, files in sorted(os.walk(base)):
        for f in sorted(files):
            return os.path.relpath(os.path.join(dirpath, f), env)
    raise AssertionError("no attachment in %s" % env)


def mount_staged(env, mount_factory):
    """A mount of env with snapshot s1 taken, sealed and staged."""
    m = mount_factory(env)
    os.mkdir(m.path("s1"))
    wait_sealed(m.store, "s1")
    wait_stage(m.store, "s1")
    return m


def test_snapshot_from_stage_is_the_environment(env_sqlite, mount_factory):
    m = mount_staged(env_sqlite, mount_factory)
    env = m.env
    assert ".stage" not in os.listdir(m.mnt)
    assert snapshot_names(m.mnt) == ["s1"]
    kept = first_attachment(env)
    s1_kept = os.stat(os.path.join(m.store, "s1", "tree", kept))
    assert s1_kept.st_nlink == 2          # s1's own, and the stage's

    # Every kind of change.
    with open(os.path.join(env, "conf", "trac.ini"), "a") as f:
        f.write("\n[tracsnap-test]\nstaged = yes\n")
    os.unlink(os.path.join(env, "README"))
    os.mkdir(os.path.join(env, "README"))                # a file becomes a directory
    with open(os.path.join(env, "README", "inside.txt"), "w") as f:
        f.write("inside\n")
    shutil.rmtree(os.path.join(env, "templates"))        # a directory with files goes
    with open(os.path.join(env, "templates"), "w") as f:  # and a file takes its name
        f.write("now a file\n")
    os.makedirs(os.path.join(env, "files", "attachments", "wiki", "NewPage"))
    with open(os.path.join(env, "files", "attachments", "wiki", "NewPage", "new.bin"), "wb") as f:
        f.write(os.urandom(100000))
    os.symlink("../conf/trac.ini", os.path.join(env, "htdocs", "ini-link"))
    db = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    db.execute("INSERT INTO system (name, value) VALUES ('tracsnap_stage_test', 'row')")
    db.commit()
    db.close()

    os.mkdir(m.path("s2"))
    assert stage_base(m.store) is None or stage_base(m.store) == "s2"   # adopted, not left
    assert_same_files(env, m.path("s2"))
    out = sqlite3_cli(m.path("s2", "db", "trac.db"),
                      "SELECT value FROM system WHERE name='tracsnap_stage_test'")
    assert out == "row\n"
    s2_kept = os.stat(os.path.join(m.store, "s2", "tree", kept))
    assert s2_kept.st_ino == s1_kept.st_ino          # shared, not copied
    assert os.path.isfile(m.path("s1", "README"))     # the first snapshot is as it was
    assert os.path.isdir(m.path("s1", "templates"))
    assert not os.path.exists(m.path("s1", "htdocs", "ini-link"))
    wait_sealed(m.store, "s2")
    wait_stage(m.store, "s2")
    assert tracsnap("verify", "--store", m.store, env, check=False).returncode == 0


def test_deleting_the_staged_snapshot_releases_it(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite)
    env = m.env
    os.mkdir(m.path("s1"))
    wait_sealed(m.store, "s1")
    with open(os.path.join(env, "files", "only-in-s2.bin"), "wb") as f:
        f.write(os.urandom(50000))
    os.mkdir(m.path("s2"))
    wait_sealed(m.store, "s2")
    wait_stage(m.store, "s2")
    only = os.stat(os.path.join(m.store, "s2", "tree", "files", "only-in-s2.bin"))
    assert only.st_nlink == 2                 # s2's and the stage's

    os.rmdir(m.path("s2"))
    wait_stage(m.store, "s1")                 # made again from the newest left
    kept = os.stat(os.path.join(m.store, "s1", "tree", first_attachment(env)))
    assert kept.st_nlink == 2                 # s1's and the new stage's: s2's links are gone
    assert not [n for n in os.listdir(m.store) if n.startswith((".tmp-", ".del-"))]
    os.unlink(os.path.join(env, "files", "only-in-s2.bin"))
    os.mkdir(m.path("s3"))
    assert_same_files(env, m.path("s3"))
    assert snapshot_names(m.mnt) == ["s1", "s3"]


def test_new_attachment_is_staged_ahead(env_sqlite, mount_factory):
    m = mount_staged(env_sqlite, mount_factory)
    env = m.env
    wait_refreshed(m.store)

    # Database writes alone: no refresh (its manifest stays as it is).
    before = os.stat(os.path.join(m.store, ".stage", "manifest"))
    db = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    for i in range(5):
        db.execute("INSERT INTO system (name, value) VALUES (?, 'x')", ("tracsnap_db_only_%d" % i,))
        db.commit()
    db.close()
    time.sleep(1.0)
    after = os.stat(os.path.join(m.store, ".stage", "manifest"))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # A new attachment, written as Trac does: created, then written, then closed.
    rel = os.path.join("files", "attachments", "ticket", "staged-ahead", "report.bin")
    os.makedirs(os.path.join(env, os.path.dirname(rel)))
    data = os.urandom(300000)
    with open(os.path.join(env, rel), "wb") as f:
        f.write(data[:1000])
        f.flush()
        time.sleep(0.1)
        f.write(data[1000:])
    wait_staged_file(m.store, rel)
    staged = os.stat(os.path.join(m.store, ".stage", "tree", rel))
    assert staged.st_size == len(data)

    os.mkdir(m.path("s2"))
    with open(m.path("s2", rel), "rb") as f:
        assert f.read() == data
    assert os.stat(os.path.join(m.store, "s2", "tree", rel)).st_ino == staged.st_ino   # not copied again
    assert_same_files(env, m.path("s2"))
    out = sqlite3_cli(m.path("s2", "db", "trac.db"),
                      "SELECT count(*) FROM system WHERE name LIKE 'tracsnap_db_only_%'")
    assert out == "5\n"
    wait_sealed(m.store, "s2")
    assert tracsnap("verify", "--store", m.store, env, check=False).returncode == 0


def test_unchanged_stage_is_taken_as_is(env_sqlite, mount_factory):
    """Nothing but the database (and files only written to, such as Trac's
    log) changed since the stage's refresh: mkdir takes the staged tree and
    its manifest as they are (snapshot/take/snap_fast.c), and the snapshot
    is still the environment, database rows and written files included; a
    file created that the stage has not caught up with makes the next one
    check every entry again."""
    m = mount_staged(env_sqlite, mount_factory)
    env = m.env
    wait_refreshed(m.store)
    rel = os.path.join(os.path.dirname(first_attachment(env)), "added-later.txt")
    with open(os.path.join(env, rel), "w") as f:
        f.write("added after s1\n")
    wait_staged_file(m.store, rel)
    staged = os.stat(os.path.join(m.store, ".stage", "tree", rel))
    db = sqlite3.connect(os.path.join(env, "db", "trac.db"))
    db.execute("INSERT INTO system (name, value) VALUES ('tracsnap_as_is', 'row')")
    db.commit()
    db.close()

    os.mkdir(m.path("s2"))
    lines = [l for l in m.log_text().splitlines() if "snapshot s2: the stage as it was" in l]
    assert len(lines) == 1
    # Nothing wrote the database since the mark before its pre-copy: the
    # pre-copy is not read again under the lock, and has the row.
    assert ", database unchanged since its pre-copy" in lines[0]
    assert os.stat(os.path.join(m.store, "s2", "tree", rel)).st_ino == staged.st_ino
    assert_same_files(env, m.path("s2"))
    out = sqlite3_cli(m.path("s2", "db", "trac.db"), "SELECT value FROM system WHERE name='tracsnap_as_is'")
    assert out == "row\n"
    wait_sealed(m.store, "s2")
    assert not os.path.exists(os.path.join(m.store, "s2", "manifest.base"))
    with open(os.path.join(m.store, "s2", "manifest")) as f:
        assert "\t%s\n" % rel in f.read()

    # A file only written to (as Trac writes its log): copied, and the
    # stage still taken as it is.
    wait_stage(m.store, "s2")
    wait_refreshed(m.store)
    os.makedirs(os.path.join(env, "log"), exist_ok=True)
    with open(os.path.join(env, "log", "trac.log"), "a") as f:
        f.write("first line\n")
    rel = os.path.join(os.path.dirname(first_attachment(env)), "added-for-s3.txt")
    with open(os.path.join(env, rel), "w") as f:
        f.write("added after s2\n")
    wait_staged_file(m.store, rel)
    with open(os.path.join(env, "log", "trac.log"), "a") as f:
        f.write("written after the refresh\n")
    os.mkdir(m.path("s3"))
    assert "snapshot s3: the stage as it was" in m.log_text()
    with open(m.path("s3", "log", "trac.log")) as f:
        assert f.read().endswith("written after the refresh\n")
    assert_same_files(env, m.path("s3"))
    wait_sealed(m.store, "s3")

    # Created and not yet staged: every entry is checked, and the change is in.
    wait_stage(m.store, "s3")
    wait_refreshed(m.store)
    with open(os.path.join(env, "htdocs", "not-staged-yet.txt"), "w") as f:
        f.write("new\n")
    os.mkdir(m.path("s4"))
    assert "snapshot s4: the stage as it was" not in m.log_text()
    assert_same_files(env, m.path("s4"))
    wait_sealed(m.store, "s4")
    assert tracsnap("verify", "--store", m.store, env, check=False).returncode == 0


def test_quiet_site_is_taken_from_the_stage(env_sqlite, mount_factory):
    """Nothing changed in the environment since a snapshot (snapshots back to
    back, a quiet site): the stage built from it is the environment already,
    with a manifest of its own and no database in it or in its tree, and the
    next mkdir takes it as it is, without a refresh.  A change made right
    after a snapshot, before its stage is built, is in the next one."""
    m = mount_staged(env_sqlite, mount_factory)
    env = m.env
    os.mkdir(m.path("s2"))
    wait_sealed(m.store, "s2")
    wait_stage(m.store, "s2")
    with open(os.path.join(m.store, ".stage", "manifest")) as f:
        assert "\tdb/trac.db\n" not in f.read()
    assert not os.path.exists(os.path.join(m.store, ".stage", "tree", "db", "trac.db"))
    s2db = os.stat(m.path("s2", "db", "trac.db"))
    os.mkdir(m.path("s3"))
    assert "snapshot s3: the stage as it was" in m.log_text()
    with open(os.path.join(env, "htdocs", "after-s3.txt"), "w") as f:
        f.write("made right after s3\n")
    assert_same_files(env, m.path("s3"), skip=("db/trac.db", "htdocs/after-s3.txt"))
    assert not os.path.exists(m.path("s3", "htdocs", "after-s3.txt"))
    wait_sealed(m.store, "s3")
    st = os.stat(m.path("s2", "db", "trac.db"))     # the take wrote its own copy
    assert (st.st_ino, st.st_mtime_ns, st.st_size) == (s2db.st_ino, s2db.st_mtime_ns, s2db.st_size)
    wait_stage(m.store, "s3")
    os.mkdir(m.path("s4"))
    assert_same_files(env, m.path("s4"))
    wait_sealed(m.store, "s4")
    assert tracsnap("verify", "--store", m.store, env, check=False).returncode == 0


def test_replaced_environment_is_watched_again(env_sqlite, mount_factory):
    """A restore replaces the environment's directories (new inodes): the
    stager watches the new ones once the next snapshot is staged."""
    m = mount_staged(env_sqlite, mount_factory)
    env = m.env
    wait_refreshed(m.store)          # the old directories are watched
    # A settled change, so that the stage is one to take as it is: until
    # the environment is replaced, which no watch sees.
    with open(os.path.join(env, "htdocs", "settled.txt"), "w") as f:
        f.write("settled\n")
    wait_staged_file(m.store, "htdocs/settled.txt")
    shutil.copytree(env, env + ".new", symlinks=True)
    with open(os.path.join(env + ".new", "README"), "a") as f:
        f.write("only in the new environment\n")
    os.rename(env, env + ".old")
    os.rename(env + ".new", env)
    os.mkdir(m.path("s2"))
    assert "snapshot s2: the stage as it was" not in m.log_text()
    with open(m.path("s2", "README")) as f:
        assert f.read().endswith("only in the new environment\n")
    assert_same_files(env, m.path("s2"))
    wait_sealed(m.store, "s2")
    wait_stage(m.store, "s2")
    wait_refreshed(m.store)

    rel = os.path.join("files", "attachments", "ticket", "after-restore.bin")
    with open(os.path.join(env, rel), "wb") as f:
        f.write(os.urandom(20000))
    wait_staged_file(m.store, rel)
    shutil.rmtree(env + ".old")
