"""Spec section 6: after a restore, the next snapshot shares every file whose
content is unchanged (issue 17).

A restore writes every file of ENV anew (new inodes), and the newest
snapshot is the pre-restore one, whose content is not what was restored.
So the restore records the restored state as the sealed snapshot
restored-<time> of the snapshot's store: its files are hard links to the
restored snapshot's copies.  The next snapshot (`tracsnap snapshot`, or
mkdir on a mount) then shares every regular file not changed since the
restore with the restored snapshot's copy (same inode) and copies the rest:
the store grows by about the new data only.  `tracsnap verify` passes and
`tracsnap list` shows the record.  A failure while recording never fails
the restore: one warning line, no record, nothing left in the store.
"""
import os
import re
import stat

from tshelpers import cli_snapshot, run, tracsnap, tracsnap_bin, tree_entries, wait_sealed
from conftest_pg import DUMP_REL, pg_cluster, pg_db, pg_env  # noqa: F401

MiB = 1024 * 1024
RECORD = re.compile(r"restored-\d{4}-\d\d-\d\dT\d{6}(-\d+)?")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def add_data(env, n=3, size=MiB):
    """Attachments enough that copying them again shows in the store."""
    for i in range(n):
        write(os.path.join(env, "files", "attachments", "ticket", "f%02d" % i, "data%d.bin" % i),
              os.urandom(size))


def store_bytes(store):
    """Bytes the store holds, each inode once (du counts hard links once)."""
    return int(run(["du", "-sB1", store]).stdout.split()[0])


def regular_files(tree):
    return {rel: st for rel, st in tree_entries(tree).items() if stat.S_ISREG(st.st_mode)}


def records(store):
    return sorted(n for n in os.listdir(store) if RECORD.fullmatch(n))


def assert_shared(old_tree, new_tree, changed, skip=("db/trac.db",)):
    """Every regular file of new_tree not in changed (nor skip) is old_tree's
    inode; every one in changed is a copy of its own."""
    old, new = regular_files(old_tree), regular_files(new_tree)
    for rel, st in sorted(new.items()):
        if rel in skip:
            continue
        if rel in changed:
            assert rel not in old or st.st_ino != old[rel].st_ino, "%s: changed but shared" % rel
        else:
            assert rel in old, "%s: new in %s" % (rel, new_tree)
            assert st.st_ino == old[rel].st_ino, "%s: copied again, not shared" % rel


def restore(snapshot, env, *opts):
    """tracsnap restore; its one stdout line, which names the record."""
    p = tracsnap("restore", *(list(opts) + [snapshot, env]))
    assert p.stderr == "", p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    return lines[0]


def test_cli_snapshot_after_restore_shares_unchanged_files(env_sqlite, tmp_path):
    env, store = env_sqlite, str(tmp_path / "store")
    add_data(env)
    one = cli_snapshot(env, store, "one").tree
    # ENV moves on: a new file and a changed one, which the restore undoes.
    write(os.path.join(env, "htdocs", "new.txt"), b"new\n")
    write(os.path.join(env, "README"), b"changed before the restore\n")
    line = restore(one, env)
    names = records(store)
    assert len(names) == 1, os.listdir(store)
    record = names[0]
    assert "; recorded as snapshot %s; " % record in line, line
    assert not os.path.exists(os.path.join(store, record, "unsealed"))
    listed = tracsnap("list", "--store", store, env).stdout
    assert re.search(r"\ssealed\s+%s$" % re.escape(record), listed, re.M), listed
    # The record is the restored snapshot, file for file, database included.
    assert_shared(one, os.path.join(store, record, "tree"), changed=(), skip=())

    # After the restore: new data, and one file changed.
    new = os.urandom(MiB)
    write(os.path.join(env, "files", "attachments", "ticket", "new", "after.bin"), new)
    write(os.path.join(env, "README"), b"changed after the restore\n")
    before = store_bytes(store)
    two = cli_snapshot(env, store, "two").tree
    growth = store_bytes(store) - before
    changed = {"files/attachments/ticket/new/after.bin", "README"}
    assert_shared(one, two, changed)
    with open(os.path.join(two, "README"), "rb") as f:
        assert f.read() == b"changed after the restore\n"
    # About the new data: the new file, the changed one, the database
    # (copied by every snapshot), directories and the manifest.  Copying
    # the environment again would be 3 MiB more.
    db = os.path.getsize(os.path.join(two, "db", "trac.db"))
    assert growth <= 1.2 * len(new) + db + 512 * 1024, (growth, len(new), db)
    assert tracsnap("verify", "--store", store, env, check=False).returncode == 0


def test_mkdir_on_mount_after_restore_shares_unchanged_files(env_sqlite, mount_factory):
    env = env_sqlite
    add_data(env)
    m = mount_factory(env)
    os.mkdir(m.path("one"))
    wait_sealed(m.store, "one")
    write(os.path.join(env, "htdocs", "new.txt"), b"new\n")
    # Through the mount, as an administrator would name it.
    line = restore(m.path("one"), env)
    names = records(m.store)
    assert len(names) == 1 and names[0] in line, (os.listdir(m.store), line)
    assert os.path.isdir(m.path(names[0]))   # the view shows it
    write(os.path.join(env, "README"), b"changed after the restore\n")
    new = os.urandom(MiB)
    write(os.path.join(env, "files", "attachments", "ticket", "new", "after.bin"), new)
    os.mkdir(m.path("two"))
    wait_sealed(m.store, "two")
    one, two = os.path.join(m.store, "one", "tree"), os.path.join(m.store, "two", "tree")
    assert_shared(one, two, {"files/attachments/ticket/new/after.bin", "README"})
    with open(m.path("two", "README"), "rb") as f:
        assert f.read() == b"changed after the restore\n"
    # What two holds of its own (the daemon keeps changing the store, its
    # stage: no du here): the new data, README and the database.
    shared = {st.st_ino for st in regular_files(one).values()}
    own = sum(st.st_size for st in regular_files(two).values() if st.st_ino not in shared)
    db = os.path.getsize(os.path.join(two, "db", "trac.db"))
    assert own <= 1.2 * len(new) + db + 4096, (own, len(new), db)
    assert tracsnap("verify", "--store", m.store, env, check=False).returncode == 0


def test_postgres_snapshot_after_restore_shares_unchanged_files(pg_cluster, pg_db, pg_env,  # noqa: F811
                                                                tmp_path):
    env, store = pg_env(pg_db), str(tmp_path / "store")
    add_data(env)
    one = cli_snapshot(env, store, "one").tree
    write(os.path.join(env, "htdocs", "new.txt"), b"new\n")
    line = restore(one, env, "--force")   # the schema holds Trac's tables
    names = records(store)
    assert len(names) == 1 and names[0] in line, (os.listdir(store), line)
    # The record's dump is the restored snapshot's: what was loaded.
    rec = os.path.join(store, names[0], "tree")
    assert os.stat(os.path.join(rec, DUMP_REL)).st_ino == os.stat(os.path.join(one, DUMP_REL)).st_ino
    write(os.path.join(env, "htdocs", "after.txt"), b"after\n")
    two = cli_snapshot(env, store, "two").tree
    assert_shared(one, two, {"htdocs/after.txt"}, skip=(DUMP_REL,))
    assert tracsnap("verify", "--store", store, env, check=False).returncode == 0


def test_failure_to_record_never_fails_the_restore(env_sqlite, tmp_path):
    """Every link(2) fails (EMLINK, as on an inode linked too often): the
    pre-restore snapshot copies instead, as any snapshot does, and the
    record cannot be made.  The restore succeeds; one warning line says the
    restored state is not recorded; no record and no leftover is in the
    store."""
    env, store = env_sqlite, str(tmp_path / "store")
    add_data(env, n=1)
    one = cli_snapshot(env, store, "one").tree
    write(os.path.join(env, "htdocs", "new.txt"), b"new\n")
    opts = os.environ.get("ASAN_OPTIONS", "")
    p = run(["strace", "-f", "-o", "/dev/null", "-e", "inject=linkat:error=EMLINK",
             tracsnap_bin(), "restore", one, env], check=False,
            env=dict(os.environ, ASAN_OPTIONS=(opts + ":" if opts else "") + "detect_leaks=0"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("restored one into %s (previous state kept as snapshot " % env), p.stdout
    assert "recorded as" not in p.stdout, p.stdout
    err = p.stderr.splitlines()
    assert len(err) == 1, p.stderr
    assert err[0].startswith("tracsnap: warning: %s: the restored state is not recorded as a snapshot ("
                             % env), err[0]
    assert not os.path.exists(os.path.join(env, "htdocs", "new.txt"))
    assert records(store) == []
    assert [n for n in os.listdir(store) if n.startswith(".tmp-")] == []
    assert tracsnap("verify", "--store", store, env, check=False).returncode == 0
    # The next snapshot is made as before: by copying.
    cli_snapshot(env, store, "two")
