"""The stage (snapshot/stage.h): once a snapshot is sealed, the daemon makes
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
"""
import os
import shutil
import sqlite3
import subprocess
import time

from conftest import snapshot_names, tracsnap, wait_sealed
from test_seal import assert_same_files

STAGE_TIMEOUT = 30


def stage_base(store):
    """Name of the snapshot STORE/.stage was made from, or None."""
    try:
        with open(os.path.join(store, ".stage", "base")) as f:
            return f.read().split("\n")[0]
    except FileNotFoundError:
        return None


def wait_stage(store, name):
    deadline = time.monotonic() + STAGE_TIMEOUT
    while stage_base(store) != name:
        assert time.monotonic() < deadline, \
            "no stage of %s within %d s (now: %r)" % (name, STAGE_TIMEOUT, stage_base(store))
        time.sleep(0.02)


def first_attachment(env):
    base = os.path.join(env, "files", "attachments", "ticket")
    for dirpath, _, files in sorted(os.walk(base)):
        for f in sorted(files):
            return os.path.relpath(os.path.join(dirpath, f), env)
    raise AssertionError("no attachment in %s" % env)


def test_snapshot_from_stage_is_the_environment(env_sqlite, mount_factory):
    m = mount_factory(env_sqlite)
    env = m.env
    os.mkdir(m.path("s1"))
    wait_sealed(m.store, "s1")
    wait_stage(m.store, "s1")
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
    out = subprocess.run(["sqlite3", m.path("s2", "db", "trac.db"),
                          "SELECT value FROM system WHERE name='tracsnap_stage_test'"],
                         capture_output=True, text=True, check=True).stdout
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
