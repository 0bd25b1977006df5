"""Damage in the store never spreads (issue 16, case 1; doc/contract.md
section 5): a stored copy is shared into a new snapshot only when it is
provably the content its snapshot sealed (snapshot/take/share_check.h).

Checked with the real daemon and the CLI, and ordinary tools: one byte
flipped with `dd conv=notrunc` in the newest snapshot's copy of an
attachment (and the same with the mtime put back by `touch -r`); the next
`mkdir MNT/after` and `tracsnap snapshot` each hold a copy of their own (a
different inode in the store) with the environment's content, and say so in
exactly one line naming the damaged copy; the damaged copy itself is left
for `tracsnap verify`.  A normal sequence of snapshots and removals logs no
such line, keeps sharing unchanged files, and records each copy's identity
in the manifest (version 2).
"""
import os
import re
import time

import pytest

from tshelpers import (cli_snapshot, run, sha256_file, tracsnap, wait_refreshed, wait_sealed, wait_stage,
                       wait_staged_file)

DAMAGE_LINE = r"stored copy damaged \(.*\), copied afresh from the environment$"


def first_attachment(env):
    base = os.path.join(env, "files", "attachments", "ticket")
    for dirpath, _, files in sorted(os.walk(base)):
        for f in sorted(files):
            return os.path.relpath(os.path.join(dirpath, f), env)
    raise AssertionError("no attachment in %s" % env)


def flip_byte(path, keep_mtime, ref):
    """One byte flipped in place with dd conv=notrunc; with keep_mtime the
    mtime is put back with touch -r ref (the environment's file, whose
    mtime the copy has)."""
    with open(path, "rb") as f:
        b = f.read(1)
    time.sleep(0.02)   # a ctime that differs from the recorded one
    run(["dd", "of=" + path, "bs=1", "count=1", "seek=0", "conv=notrunc", "status=none"],
        input=bytes([b[0] ^ 0xff]).decode("latin-1"), encoding="latin-1")
    if keep_mtime:
        run(["touch", "-r", ref, path])


def damage_lines(text):
    return [l for l in text.splitlines() if re.search(DAMAGE_LINE, l)]


def check_fresh_copy(env, store, damaged, new, rel, text, what):
    """new's copy of rel is its own, with the environment's content; the
    one line names damaged/rel; damaged's copy is left damaged."""
    dmg = os.path.join(store, damaged, "tree", rel)
    cp = os.path.join(store, new, "tree", rel)
    live = os.path.join(env, rel)
    assert os.lstat(cp).st_ino != os.lstat(dmg).st_ino
    assert sha256_file(cp) == sha256_file(live)
    assert sha256_file(dmg) != sha256_file(live)
    lines = damage_lines(text)
    assert lines == ["tracsnap: warning: %s/%s: stored copy damaged (%s), copied afresh from "
                     "the environment" % (damaged, rel, what)], text


def mount_with_staged_a(env, mount_factory):
    """A mount with snapshot a sealed, staged and the stage refreshed (the
    refresh after the build checks the staged copies too: damage is made
    once it is done, not half seen by it); returns it and the attachment
    the tests damage."""
    m = mount_factory(env)
    m.expect_log(DAMAGE_LINE)
    os.mkdir(m.path("a"))
    wait_sealed(m.store, "a")
    wait_stage(m.store, "a")
    wait_refreshed(m.store)
    return m, first_attachment(env)


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["dd", "dd+touch-r"])
def test_damage_not_shared_by_mkdir(env_sqlite, mount_factory, keep_mtime):
    """The daemon: the newest snapshot sealed and staged (its stage's links
    share the damaged inode), then one byte flipped in its copy: the next
    mkdir copies the file afresh and logs the one line."""
    m, rel = mount_with_staged_a(env_sqlite, mount_factory)
    flip_byte(os.path.join(m.store, "a", "tree", rel), keep_mtime, os.path.join(env_sqlite, rel))
    os.mkdir(m.path("after"))
    wait_sealed(m.store, "after")
    check_fresh_copy(env_sqlite, m.store, "a", "after", rel, m.log_text(),
                     "content" if keep_mtime else "mtime")


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["dd", "dd+touch-r"])
def test_damage_not_shared_from_clean_stage(env_sqlite, mount_factory, keep_mtime):
    """The same when nothing but the database changed since the stage's
    last refresh, so that mkdir takes the staged tree as it is
    (snapshot/take/snap_fast.c): the damaged copy is found before the new
    snapshot is sealed, and replaced by the environment's file."""
    m, rel = mount_with_staged_a(env_sqlite, mount_factory)
    settled = os.path.join(os.path.dirname(rel), "settled.txt")
    with open(os.path.join(env_sqlite, settled), "w") as f:
        f.write("settled\n")
    wait_staged_file(m.store, settled)
    flip_byte(os.path.join(m.store, "a", "tree", rel), keep_mtime, os.path.join(env_sqlite, rel))
    os.mkdir(m.path("after"))
    assert "snapshot after: the stage as it was" in m.log_text()
    wait_sealed(m.store, "after")
    check_fresh_copy(env_sqlite, m.store, "a", "after", rel, m.log_text(),
                     "content" if keep_mtime else "mtime")
    assert not os.path.exists(os.path.join(m.store, "after", "manifest.base"))
    assert tracsnap("verify", "--store", m.store, env_sqlite, "after", check=False).returncode == 0
    # the other files are still shared
    other = "VERSION"
    assert os.lstat(os.path.join(m.store, "a", "tree", other)).st_ino == \
        os.lstat(os.path.join(m.store, "after", "tree", other)).st_ino
    # what the view shows is the fresh copy
    assert sha256_file(m.path("after", rel)) == sha256_file(os.path.join(env_sqlite, rel))


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["dd", "dd+touch-r"])
def test_damage_not_shared_by_cli(env_sqlite, tmp_path, keep_mtime):
    """`tracsnap snapshot`: the same, the line on its stderr."""
    store = str(tmp_path / "store")
    rel = first_attachment(env_sqlite)
    cli_snapshot(env_sqlite, store, "a")
    flip_byte(os.path.join(store, "a", "tree", rel), keep_mtime, os.path.join(env_sqlite, rel))
    p = cli_snapshot(env_sqlite, store, "after")
    check_fresh_copy(env_sqlite, store, "a", "after", rel, p.stderr,
                     "content" if keep_mtime else "mtime")
    other = "VERSION"
    assert os.lstat(os.path.join(store, "a", "tree", other)).st_ino == \
        os.lstat(os.path.join(store, "after", "tree", other)).st_ino
    # verify still finds the damage where it is, and only there
    v = tracsnap("verify", "--store", store, env_sqlite, check=False)
    assert v.returncode != 0
    assert rel in v.stdout + v.stderr


def manifest_identities(store, name):
    """{path: (store_ino, store_ctime)} of the 'f' entries; the manifest must
    be version 2 (snapshot/store/manifest.h)."""
    with open(os.path.join(store, name, "manifest")) as f:
        lines = f.read().split("\n")
    assert lines[0] == "tracsnap-manifest\t2", lines[0]
    out = {}
    for l in lines:
        f = l.split("\t")
        if f[0] == "f":
            assert len(f) == 12, l
            out[f[-1]] = (int(f[9]), f[10])
    return out


def test_normal_sequence_no_damage(env_sqlite, mount_factory):
    """mkdir a, mkdir b, rmdir a, mkdir c: the engine's own links and
    unlinks never look like damage (the strict log check fails on any
    warning), unchanged files stay shared, and each manifest records the
    identity of its copies as placed."""
    m = mount_factory(env_sqlite)
    rel = first_attachment(env_sqlite)
    for name in ("a", "b"):
        os.mkdir(m.path(name))
        wait_sealed(m.store, name)
    wait_stage(m.store, "b")
    os.rmdir(m.path("a"))
    os.mkdir(m.path("c"))
    wait_sealed(m.store, "c")
    wait_stage(m.store, "c")
    tracsnap("snapshot", "--store", m.store, env_sqlite, "d")
    b, c, d = (os.lstat(os.path.join(m.store, n, "tree", rel)) for n in ("b", "c", "d"))
    assert b.st_ino == c.st_ino == d.st_ino
    assert damage_lines(m.log_text()) == []
    ids = manifest_identities(m.store, "d")
    assert ids[rel][0] == d.st_ino
    for path, (ino, _) in ids.items():
        assert ino == os.lstat(os.path.join(m.store, "d", "tree", path)).st_ino, path
    # the engine's own links and unlinks are logged as intervals, and the
    # removals' guard found nothing changed by anyone else
    with open(os.path.join(m.store, ".linklog")) as f:
        log = f.read()
    assert log and not [l for l in log.splitlines() if l.startswith("S ")], log


def test_damage_not_hidden_by_rmdir(env_sqlite, mount_factory):
    """One byte flipped and the mtime put back in b's copy, then `rmdir a`
    (a shares that copy): the removal's unlinks move its ctime, yet the next
    mkdir still finds the damage (snapshot/store/linkguard.h)."""
    m = mount_factory(env_sqlite)
    m.expect_log(DAMAGE_LINE)
    rel = first_attachment(env_sqlite)
    for name in ("a", "b"):
        os.mkdir(m.path(name))
        wait_sealed(m.store, name)
    wait_stage(m.store, "b")
    wait_refreshed(m.store)   # its check of the staged copies, not half the damage
    flip_byte(os.path.join(m.store, "b", "tree", rel), True, os.path.join(env_sqlite, rel))
    os.rmdir(m.path("a"))
    os.mkdir(m.path("c"))
    wait_sealed(m.store, "c")
    check_fresh_copy(env_sqlite, m.store, "b", "c", rel, m.log_text(), "content")
