"""Issue 18, the command line: one source for every usage text, checked
against the man page; help in the forms git and restic use; a mistyped
command or option named."""
import os
import re

import pytest

from tshelpers import TOP, tracsnap

MAN = os.path.join(TOP, "man", "tracsnap.1")
COMMANDS = ["snapshot", "list", "verify", "prune", "restore", "help"]


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


def test_option_errors_name_the_option(env_sqlite):
    p = tracsnap("list", "--jsn", env_sqlite, check=False)
    assert p.returncode == 64
    assert p.stderr.splitlines() == ["tracsnap: list: unknown option '--jsn'",
                                     "usage: tracsnap list [--store DIR] [--json] ENV"]
    p = tracsnap("prune", env_sqlite, "--keep-last", check=False)
    assert p.returncode == 64
    assert p.stderr.splitlines()[0] == "tracsnap: prune: option '--keep-last' needs an argument"
