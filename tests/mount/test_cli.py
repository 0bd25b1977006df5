"""Issue 18, the command line: one source for every usage text, checked
against the man page; help in the forms git and restic use; a mistyped
command or option named; every exit status the man page documents produced
and checked; a mount refused on a mount point that already has one, and a
refused mount that leaves nothing behind."""
import fcntl
import os
import re
import subprocess

import pytest

from tshelpers import TOP, cli_snapshot, daemon_cmd, run, set_trac_database, tracsnap

MAN = os.path.join(TOP, "man", "tracsnap.1")
COMMANDS = ["snapshot", "list", "verify", "prune", "restore", "status", "hold", "release", "help"]


def man_section(title):
    with open(MAN) as f:
        text = f.read()
    start = text.index(".SH " + title + "\n") + len(".SH " + title + "\n")
    end = text.index("\n.SH ", start)
    return text[start:end]


def troff_text(s):
    """What troff prints of a piece of the man page, spaces collapsed."""
    s = re.sub(r"\\f[BIRP]", "", s).replace("\\-", "-")
    s = re.sub(r"^\.[A-Z]+ ?", "", s, flags=re.M)
    return " ".join(s.split())


def man_synopses():
    """{command word or 'mount': its synopsis after the word}, from SYNOPSIS."""
    out = {}
    for chunk in man_section("SYNOPSIS").split("\n.br\n"):
        line = troff_text(chunk)
        if not line.startswith("tracsnap") or line.startswith("tracsnap --help"):
            continue   # mount -t fuse.tracsnap; the --help | --version line
        words = line.split(" ", 2)
        if len(words) > 1 and words[1] in COMMANDS:
            out[words[1]] = words[2] if len(words) > 2 else ""
        else:
            out["mount"] = line[len("tracsnap "):]
    return out


def usage_of(name):
    """The synopsis `tracsnap help NAME` prints, continuation lines joined."""
    p = tracsnap("help", name)
    head = p.stdout.split("\n\n", 1)[0]
    assert head.startswith("usage: tracsnap"), p.stdout
    line = " ".join(head[len("usage: "):].split())
    prefix = "tracsnap " if name == "mount" else "tracsnap %s" % name
    return line[len(prefix):].strip()


def test_usage_matches_the_man_page():
    """Each command's usage comes from one table, and the man page's
    SYNOPSIS says exactly the same; every command has its entry under
    COMMANDS and in the overview."""
    man = man_synopses()
    assert sorted(man) == sorted(COMMANDS + ["mount"])
    for name, synopsis in man.items():
        assert usage_of(name) == synopsis, name
    overview = tracsnap("help").stdout
    listed = re.findall(r"^  (\S+) ", overview.split("Commands:\n", 1)[1], flags=re.M)
    assert sorted(listed) == sorted(COMMANDS + ["mount"])
    entries = re.findall(r"^\.TP\n\.B (\S+)\n", man_section("COMMANDS"), flags=re.M)
    assert sorted(entries) == sorted(COMMANDS)


def test_help_forms():
    overview = tracsnap("help").stdout
    assert overview.startswith("usage: tracsnap [-f] [-d] [-s]")
    assert tracsnap("--help").stdout == overview
    bare = tracsnap(check=False)
    assert bare.returncode == 64 and bare.stdout == overview and bare.stderr == ""
    for name in COMMANDS[:-1]:
        one = tracsnap("help", name).stdout
        assert one.startswith("usage: tracsnap %s " % name)
        assert tracsnap(name, "--help").stdout == one
        assert tracsnap(name, "-h").stdout == one
        assert tracsnap(name, "/srv/some/env", "--help").stdout == one
    mount = tracsnap("help", "mount").stdout
    assert "-o store=DIR" in mount and "-o keep=" in mount
    p = tracsnap("help", "lst", check=False)
    assert p.returncode == 64
    assert p.stderr == "tracsnap: 'lst' is not a tracsnap command; did you mean 'list'? (see 'tracsnap help')\n"


@pytest.mark.parametrize("word,near", [("snapshots", "snapshot"), ("lsit", "list"), ("verfy", "verify"),
                                       ("ver", "verify"), ("restor", "restore"), ("xyzzy", None)])
def test_unknown_command_is_named(tmp_path, word, near):
    p = tracsnap(word, "/srv/trac/proj", check=False, cwd=str(tmp_path))
    assert p.returncode == 64 and p.stdout == ""
    if near:
        want = "tracsnap: '%s' is not a tracsnap command; did you mean '%s'? (see 'tracsnap help')\n" % (word, near)
    else:
        want = "tracsnap: '%s' is not a tracsnap command, nor an existing ENV (see 'tracsnap help')\n" % word
    assert p.stderr == want


def test_a_directory_of_that_name_is_an_env(tmp_path):
    """The mount form with a relative ENV still works: an existing path is
    never taken for a mistyped command."""
    (tmp_path / "snapshots").mkdir()
    p = tracsnap("snapshots", check=False, cwd=str(tmp_path))
    assert p.returncode == 64
    assert "missing MOUNTPOINT" in p.stderr, p.stderr


def test_option_errors_name_the_option(env_sqlite, tmp_path):
    p = tracsnap("list", "--jsn", env_sqlite, check=False)
    assert p.returncode == 64
    assert p.stderr.splitlines() == ["tracsnap: list: unknown option '--jsn'",
                                     "usage: tracsnap list [--store DIR] [--json] ENV"]
    p = tracsnap("prune", env_sqlite, "--keep-last", check=False)
    assert p.returncode == 64
    assert p.stderr.splitlines()[0] == "tracsnap: prune: option '--keep-last' needs an argument"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for args, named in ((["-xy"], "-xy"), (["-o", "kernel_cache"], "-o kernel_cache"),
                        (["-o", "store=%s,bogus=1" % (tmp_path / "s")], "-o bogus=1")):
        store = tmp_path / "s"
        p = tracsnap(*args, env_sqlite, str(mnt), check=False)
        assert p.returncode == 64, p.stderr
        assert p.stderr == "tracsnap: unknown mount option '%s' (see 'tracsnap help mount')\n" % named
        assert not store.exists()
        assert not os.path.ismount(str(mnt))


def refused_over_mount(env, mnt, store):
    """The daemon on a mount point that has a mount already: it must refuse
    at once (run_refused_mount would unmount what is there)."""
    try:
        p = subprocess.run(daemon_cmd(env, mnt, store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, text=True, timeout=10)
    except subprocess.TimeoutExpired as ex:
        raise AssertionError("the daemon mounted over %s instead of refusing" % mnt) from ex
    return p.returncode, p.stdout


def test_second_mount_is_refused(env_sqlite, mount_factory, tmp_path):
    m = mount_factory(env_sqlite)
    other = tmp_path / "other" / "store"
    rc, out = refused_over_mount(env_sqlite, m.mnt, str(other))
    assert rc == 64, out
    assert out == "tracsnap: mount point %s: already has a mount (fuse.tracsnap of %s); unmount it first\n" \
        % (os.path.realpath(m.mnt), env_sqlite)
    assert not (tmp_path / "other").exists()
    os.mkdir(m.path("still-served"))   # the first mount is untouched
    assert os.path.isdir(os.path.join(m.store, "still-served"))


def test_mount_over_any_mount_is_refused(env_sqlite, tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=1m", "tracsnap-test", str(mnt)])
    try:
        rc, out = refused_over_mount(env_sqlite, str(mnt), str(tmp_path / "store"))
    finally:
        run(["umount", str(mnt)])
    assert rc == 64, out
    assert out == "tracsnap: mount point %s: already has a mount (tmpfs of tracsnap-test); unmount it first\n" \
        % mnt
    assert not (tmp_path / "store").exists()


def kernel_refuses_mount(env, store, mnt):
    """The daemon without CAP_SYS_ADMIN (also for the setuid fusermount3:
    capsh drops it from the bounding set): the kernel refuses the mount
    after the store was made."""
    return run(["capsh", "--drop=cap_sys_admin", "--", "-c",
                '"$0" -f -o store="$1" "$2" "$3"', os.environ.get("TRACSNAP_BIN") or
                os.path.join(TOP, "build", "tracsnap"), store, env, mnt], check=False, timeout=60)


def test_refused_mount_leaves_no_store(env_sqlite, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = kernel_refuses_mount(env_sqlite, str(tmp_path / "made" / "for" / "store"), str(mnt))
    assert p.returncode == 71, p.stderr
    assert p.stderr == ("fusermount3: mount failed: Operation not permitted\n"
                        "tracsnap: mount point %s: not mounted (status 4; the line above says why)\n" % mnt)
    assert not (tmp_path / "made").exists()
    assert not os.path.ismount(str(mnt))


# -- exit statuses: each one the man page documents, produced -------------------------


def documented_codes():
    return sorted(int(c) for c in re.findall(r"^\.TP\n\.B (\d+)\n", man_section("EXIT STATUS"), flags=re.M))


def damage_one_file(tree):
    for root, _, files in os.walk(tree):
        for n in sorted(files):
            p = os.path.join(root, n)
            if os.path.getsize(p) > 0 and not n.endswith(".db"):
                with open(p, "r+b") as f:
                    b = f.read(1)
                    f.seek(0)
                    f.write(bytes([b[0] ^ 0xff]))
                return p
    raise AssertionError("no file to damage in " + tree)


def exit_scenarios(env, tmp_path):
    """{status: a function that runs the command expected to exit with it}."""
    store = str(tmp_path / "store")

    def usage():
        return tracsnap("list", check=False)

    def dataerr():
        p = cli_snapshot(env, store, "d")
        damage_one_file(p.tree)
        return tracsnap("verify", "--store", store, env, "d", check=False)

    def noinput():
        (tmp_path / "plain").mkdir()
        return tracsnap("list", "--store", store, str(tmp_path / "plain"), check=False)

    def unavailable():
        other = str(tmp_path / "mysql-env")
        run(["cp", "-a", env, other])
        set_trac_database(other, "mysql://trac:secret@localhost/trac")
        return tracsnap("list", "--store", store, other, check=False)

    def oserr():
        (tmp_path / "mnt").mkdir()
        return kernel_refuses_mount(env, str(tmp_path / "st71"), str(tmp_path / "mnt"))

    def cantcreat():
        cli_snapshot(env, store, "twice")
        return tracsnap("snapshot", "--store", store, env, "twice", check=False)

    def ioerr():
        ro = str(tmp_path / "ro-store")
        cli_snapshot(env, ro, "a")
        run(["mount", "--bind", ro, ro])
        try:
            run(["mount", "-o", "remount,bind,ro", ro])
            return tracsnap("snapshot", "--store", ro, env, "b", check=False)
        finally:
            run(["umount", ro])

    def tempfail():
        cli_snapshot(env, store, "first")
        with open(os.path.join(store, ".lock"), "r") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            return tracsnap("snapshot", "--store", store, "--lock-timeout", "1", env, "second", check=False)

    def noperm():
        open_store = tmp_path / "open-store"
        open_store.mkdir(mode=0o777)
        os.chmod(str(open_store), 0o777)
        return tracsnap("list", "--store", str(open_store), env, check=False)

    def config():
        other = str(tmp_path / "bad-env")
        run(["cp", "-a", env, other])
        set_trac_database(other, "nonsense")
        return tracsnap("list", "--store", store, other, check=False)

    return {0: lambda: tracsnap("help"), 64: usage, 65: dataerr, 66: noinput, 69: unavailable, 71: oserr,
            73: cantcreat, 74: ioerr, 75: tempfail, 77: noperm, 78: config}


def test_every_documented_exit_status(env_sqlite, tmp_path):
    scenarios = exit_scenarios(env_sqlite, tmp_path)
    assert documented_codes() == sorted(scenarios)
    for code, make in sorted(scenarios.items()):
        p = make()
        assert p.returncode == code, (code, p.returncode, p.stderr)
        if code:
            lines = [l for l in p.stderr.splitlines() if l.startswith("tracsnap: ")]
            assert lines, (code, p.stderr)


def test_database_failure_is_not_damage(env_sqlite, tmp_path):
    """A PostgreSQL server that cannot be reached is 69 (unavailable), not 65,
    which means damage (a wrong password takes the same path: libpq's
    connection failure, test_postgres.py)."""
    other = str(tmp_path / "pg-env")
    run(["cp", "-a", env_sqlite, other])
    set_trac_database(other, "postgres://trac:wrong@127.0.0.1:1/trac")
    p = tracsnap("snapshot", "--store", str(tmp_path / "store"), other, "a", check=False)
    assert p.returncode == 69, p.stderr
    assert "wrong" not in p.stderr   # the password is never shown
