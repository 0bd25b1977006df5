"""Refusals at mount time and of `tracsnap snapshot` (doc/contract.md sections 1, 5, 7):
non-zero exit within seconds, exactly one `tracsnap: ` line naming the path
or setting, nothing mounted, no store created, no secret printed."""
import os
import subprocess
import time

import pytest

from tshelpers import (rewrite_trac_ini, run_refused_mount, set_trac_database, snapshot_names,
                       store_snapshots, trac_ini, tracsnap, tracsnap_lines)

def assert_refused(env, mnt, store, must_name, opts=(), forbidden=()):
    rc, out, elapsed = run_refused_mount(env, mnt, store, opts)
    assert rc != 0, "exit 0:\n" + out
    assert 64 <= rc <= 78, "exit %d is not a sysexits(3) code:\n%s" % (rc, out)
    assert elapsed < 5, "took %.1f s to refuse" % elapsed
    lines = tracsnap_lines(out)
    assert len(lines) == 1, "expected one 'tracsnap: ' line, got:\n" + out
    for text in must_name:
        assert text in lines[0], "%r not in %r" % (text, lines[0])
    for secret in forbidden:
        assert secret not in out, "output reveals %r:\n%s" % (secret, out)
    assert not os.path.ismount(str(mnt))
    assert not os.path.exists(str(store)), "store created: %s" % os.listdir(str(store))
    return lines[0]


@pytest.fixture
def paths(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    return mnt, tmp_path / "store"


# ---------------------------------------------------------------- the environment

def test_env_missing(tmp_path, paths):
    env = str(tmp_path / "no-such-env")
    assert_refused(env, *paths, must_name=[env])


def test_env_is_a_file(tmp_path, paths):
    env = tmp_path / "plainfile"
    env.write_text("hello\n")
    assert_refused(str(env), *paths, must_name=[str(env)])


def test_version_missing(env_sqlite, paths):
    os.unlink(os.path.join(env_sqlite, "VERSION"))
    assert_refused(env_sqlite, *paths, must_name=[env_sqlite, "VERSION"])


def test_version_wrong_first_line(env_sqlite, paths):
    with open(os.path.join(env_sqlite, "VERSION"), "w") as f:
        f.write("Subversion Repository Version 5\nTrac Environment Version 1\n")
    assert_refused(env_sqlite, *paths, must_name=[env_sqlite, "VERSION"])


def test_trac_ini_missing(env_sqlite, paths):
    os.unlink(trac_ini(env_sqlite))
    assert_refused(env_sqlite, *paths, must_name=["trac.ini"])


def test_no_trac_section(env_sqlite, paths):
    rewrite_trac_ini(env_sqlite, lambda t: t.replace(b"[trac]\n", b"[nottrac]\n"))
    assert_refused(env_sqlite, *paths, must_name=["trac.ini"])


def test_no_database_key(env_sqlite, paths):
    rewrite_trac_ini(env_sqlite, lambda t: t.replace(b"database = sqlite:db/trac.db\n", b""))
    assert_refused(env_sqlite, *paths, must_name=["trac.ini", "database"])


@pytest.mark.parametrize("value", ["sqlite:", "postgres:trac"])
def test_malformed_database_value(env_sqlite, paths, value):
    set_trac_database(env_sqlite, value)
    assert_refused(env_sqlite, *paths, must_name=["trac.ini", "database"])


def test_mysql_refused_without_password(env_sqlite, paths):
    set_trac_database(env_sqlite, "mysql://u:secret@h/db")
    assert_refused(env_sqlite, *paths, must_name=["database"], forbidden=["secret"])


def test_postgres_unreachable_without_password(env_sqlite, paths):
    # Port 1 on loopback: nothing listens there.
    set_trac_database(env_sqlite, "postgres://trac:secretpw@127.0.0.1:1/trac")
    line = assert_refused(env_sqlite, *paths, must_name=["127.0.0.1:1"], forbidden=["secretpw"])
    assert "connect" in line.lower(), line


def test_database_file_missing(env_sqlite, mount_factory):
    """Refused at mount time (a sysexits code, one line naming the file, no
    store, nothing mounted), or the mount is accepted and mkdir fails leaving
    nothing.  Either way the daemon does not create the missing database."""
    set_trac_database(env_sqlite, "sqlite:db/nothere.db")
    m = mount_factory(env_sqlite, start=False)
    m.start(wait=False)
    deadline = time.time() + 10
    while time.time() < deadline and not os.path.ismount(m.mnt) and m.proc.poll() is None:
        time.sleep(0.05)
    if m.proc.poll() is not None:
        rc = m.proc.returncode
        assert 64 <= rc <= 78, "exit %d is not a sysexits(3) code:\n%s" % (rc, m.log_text())
        m.expect_exit(rc)
        lines = tracsnap_lines(m.log_text())
        assert len(lines) == 1 and "nothere.db" in lines[0], m.log_text()
        assert not os.path.ismount(m.mnt)
        assert not os.path.exists(m.store)
    else:
        assert os.path.ismount(m.mnt), "neither refused nor mounted within 10 s:\n" + m.log_text()
        m.expect_log(r"nothere\.db")
        with pytest.raises(OSError):
            os.mkdir(m.path("s"))
        assert snapshot_names(m.mnt) == []
        assert store_snapshots(m.store) == []
        assert "nothere.db" in m.log_text()
    assert not os.path.exists(os.path.join(env_sqlite, "db", "nothere.db")), \
        "the daemon created the missing database in the environment"


# ---------------------------------------------------------------- store and mount point

def test_store_inside_env(env_sqlite, paths):
    mnt, _ = paths
    store = os.path.join(env_sqlite, "snapshots")
    assert_refused(env_sqlite, mnt, store, must_name=[store])


def test_store_is_env_itself_subdir_via_dotdot(env_sqlite, paths):
    mnt, _ = paths
    store = os.path.join(env_sqlite, "htdocs", "..", "snaps")
    rc, out, _ = run_refused_mount(env_sqlite, mnt, store)
    assert rc != 0, out
    assert len(tracsnap_lines(out)) == 1, out
    assert not os.path.exists(os.path.join(env_sqlite, "snaps"))


def test_store_under_mount_point(env_sqlite, paths):
    mnt, _ = paths
    store = os.path.join(str(mnt), "store")
    assert_refused(env_sqlite, mnt, store, must_name=[store])


def test_mount_point_missing(env_sqlite, tmp_path):
    mnt = tmp_path / "no-such-mnt"
    store = tmp_path / "store"
    rc, out, elapsed = run_refused_mount(env_sqlite, mnt, store)
    assert rc != 0, out
    assert elapsed < 5
    assert not os.path.exists(str(store))
    assert not os.path.exists(str(mnt))
    lines = tracsnap_lines(out)
    assert len(lines) == 1, out
    assert str(mnt) in lines[0], lines[0]


# ---------------------------------------------------------------- tracsnap snapshot

def test_cli_snapshot_good_env(env_sqlite, tmp_path):
    store = tmp_path / "store"
    p = tracsnap("snapshot", "--store", store, env_sqlite, "nightly", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    out = [l for l in (p.stdout + p.stderr).splitlines() if l.strip()]
    assert len(out) == 1, "expected one summary line:\n" + p.stdout + p.stderr
    assert "nightly" in out[0], out[0]
    assert store_snapshots(str(store)) == ["nightly"]
    tree = store / "nightly" / "tree"
    assert (tree / "VERSION").read_bytes() == open(os.path.join(env_sqlite, "VERSION"), "rb").read()
    assert (store / "nightly" / "manifest").is_file()
    p = subprocess.run(["sqlite3", "-readonly", str(tree / "db" / "trac.db"),
                        "select count(*) from ticket"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.strip() == "30"
    # a second run with the same name refuses to overwrite
    p = tracsnap("snapshot", "--store", store, env_sqlite, "nightly", check=False)
    assert p.returncode != 0
    assert len(tracsnap_lines(p.stdout + p.stderr)) == 1, p.stdout + p.stderr


def test_cli_snapshot_bad_env(env_sqlite, tmp_path):
    os.unlink(os.path.join(env_sqlite, "VERSION"))
    store = tmp_path / "store"
    p = tracsnap("snapshot", "--store", store, env_sqlite, "nightly", check=False)
    assert p.returncode != 0
    lines = tracsnap_lines(p.stdout + p.stderr)
    assert len(lines) == 1, p.stdout + p.stderr
    assert env_sqlite in lines[0] and "VERSION" in lines[0], lines[0]
    assert store_snapshots(str(store)) == []


def test_daemon_output_is_tracsnap_lines_only(env_sqlite, mount_factory):
    """A clean start and snapshot print only tracsnap's own lines (no stray
    library warnings in syslog/stderr)."""
    m = mount_factory(env_sqlite)
    os.mkdir(m.path("s"))
    m.stop()
    stray = [l for l in m.log_text().splitlines() if l and not l.startswith("tracsnap: ")]
    assert not stray, m.log_text()
