"""Long commands show one progress line on a terminal and nothing otherwise."""
import os
import shlex

from tshelpers import run, tracsnap, tracsnap_bin


def _on_tty(cmd, tmp_path):
    """Run cmd under a pseudo-terminal (script(1)); return what the terminal got."""
    log = tmp_path / "tty.log"
    run(["script", "-qefc", " ".join(shlex.quote(str(a)) for a in cmd), str(log)])
    return log.read_bytes().decode("utf-8", "replace")


def _big(env):
    with open(os.path.join(env, "files", "big.bin"), "wb") as f:
        f.write(os.urandom(8 << 20))


def test_snapshot_progress_on_tty_only(env_sqlite, tmp_path):
    _big(env_sqlite)
    store = tmp_path / "store"
    out = _on_tty([tracsnap_bin(), "snapshot", "--store", store, env_sqlite, "p1"], tmp_path)
    assert "\rsnapshot p1: " in out or "\r\x1b[Ksnapshot p1: " in out, out
    assert " files, " in out and "/s" in out
    # the summary line starts on a cleared line
    assert "snapshot p1: 1" in out
    p = tracsnap("snapshot", "--store", store, env_sqlite, "p2")
    assert "\r" not in p.stdout + p.stderr
    assert p.stderr == ""
    assert p.stdout.count("\n") == 1


def test_restore_progress_on_tty_only(env_sqlite, tmp_path):
    _big(env_sqlite)
    store = tmp_path / "store"
    tracsnap("snapshot", "--store", store, env_sqlite, "r1")
    out = _on_tty([tracsnap_bin(), "restore", "--force", store / "r1" / "tree", env_sqlite], tmp_path)
    assert "restore: " in out and " files, " in out and "\r" in out, out
    p = tracsnap("restore", "--force", store / "r1" / "tree", env_sqlite)
    assert "\r" not in p.stdout + p.stderr and p.stderr == ""
