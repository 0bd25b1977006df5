"""Long commands show one progress line on a terminal and nothing otherwise."""
import os
import re
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


def test_verify_progress_like_the_others(env_sqlite, tmp_path):
    """verify's line has the same shape as snapshot's and restore's (files,
    done/total in binary units, rate), and no estimate in its first two
    seconds, whose rate says little."""
    _big(env_sqlite)
    store = tmp_path / "store"
    tracsnap("snapshot", "--store", store, env_sqlite, "v1")
    out = _on_tty([tracsnap_bin(), "verify", "--store", store, env_sqlite], tmp_path)
    assert re.search(r"verify v1: \d+/\d+ files, [\d.]+ (B|KiB|MiB) ?/[\d.]+ MiB, [\d.]+ (B|KiB|MiB|GiB)/s",
                     out), repr(out)
    assert "ETA" not in out   # all done well within 2 s
    assert "verified 1 snapshot: " in out
    p = tracsnap("verify", "--store", store, env_sqlite)
    assert "\r" not in p.stdout + p.stderr and p.stderr == ""
