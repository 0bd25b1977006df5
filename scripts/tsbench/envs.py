"""The generated Trac environments the measurements run on.

Each is the SQLite fixture (tests/fixtures/trac-env-sqlite.tar.gz) plus
generated data, written as Trac writes it (files where Trac keeps
attachments, rows in the database):
    att-N     N attachments of 5 MiB, two per ticket, on 5 N new tickets
              (B1 at 0.5, 1 and 2 GB; "big", 2 GB, for B2, B3, B4, XFS);
    small-N   N wiki attachments of 1 KiB, 100 per page (B5, B6).
They live under WORKDIR/envs (envs-quick with --quick, sizes / 10) and are
reused while their spec file (ENV.json) and their files check out.
"""
import json
import os
import sqlite3
import time

import tracwriter
import tshelpers
from tsbench.common import ATT_SIZE, MiB, BenchError, log, rm_rf, sync, tree_bytes

FIXTURE = os.path.join(tshelpers.FIXTURES, "trac-env-sqlite.tar.gz")
SMALL_SIZE = 1024           # one file of the "many" environments
GEN_VERSION = 1             # bump when the generators change: forces regeneration


def att_path(env, realm, rid, filename):
    """Where Trac keeps attachment FILENAME of resource RID in ENV."""
    return os.path.join(env, tracwriter.attachment_relpath(realm, rid, filename))


def extract_fixture(dest):
    """Extract the fixture's trac-env-sqlite/ to dest (which must not exist)."""
    tmp = dest + ".extract"
    rm_rf(tmp)
    os.makedirs(tmp)
    os.rename(tshelpers.extract_fixture("trac-env-sqlite", tmp), dest)
    os.rmdir(tmp)


def att_env_files(env, n_att):
    """(ticket id, filename, path) for the big attachments; two per ticket, tickets 31...."""
    out = []
    for i in range(n_att):
        tid = 31 + i // 2
        fn = "bench%05d.bin" % i
        out.append((tid, fn, att_path(env, "ticket", tid, fn)))
    return out


def small_env_files(env, n_files):
    """(page, filename, path) for the 1 KiB wiki attachments, 100 per page."""
    out = []
    for i in range(n_files):
        page = "BenchMany%04d" % (i // 100)
        fn = "f%06d.txt" % i
        out.append((page, fn, att_path(env, "wiki", page, fn)))
    return out


def insert_tickets(c, n):
    now = int(time.time() * 1e6)
    rows = []
    for k in range(n):
        tid = 31 + k
        desc = ("Benchmark ticket %d. " % tid) + ("The quick brown fox jumps over the lazy dog. " * 6)
        rows.append((tid, "defect", now - (n - k) * 1000000, now - (n - k) * 1000000, "component1",
                     None, "major", "somebody", "bench", "", "", "", "new", None,
                     "bench ticket %d" % tid, desc, ""))
    c.executemany("INSERT INTO ticket (id,type,time,changetime,component,severity,priority,owner,"
                  "reporter,cc,version,milestone,status,resolution,summary,description,keywords) "
                  "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def gen_att_env(env, n_att, n_tickets):
    extract_fixture(env)
    db = os.path.join(env, "db", "trac.db")
    block = bytearray(os.urandom(ATT_SIZE))
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("BEGIN")
    insert_tickets(c, n_tickets)
    now = int(time.time() * 1e6)
    rows = []
    for i, (tid, fn, path) in enumerate(att_env_files(env, n_att)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        block[:64] = ("tracsnap-bench %s attachment %d" % (os.path.basename(env), i)).ljust(63).encode() + b"\n"
        with open(path, "wb") as f:
            f.write(block)
        rows.append(("ticket", str(tid), fn, ATT_SIZE, now + i, "bench attachment", "bench"))
    c.executemany("INSERT INTO attachment VALUES (?,?,?,?,?,?,?)", rows)
    c.execute("COMMIT")
    c.close()


def gen_small_env(env, n_files):
    extract_fixture(env)
    db = os.path.join(env, "db", "trac.db")
    filler = (b"0123456789abcdef" * (SMALL_SIZE // 16))
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("BEGIN")
    now = int(time.time() * 1e6)
    rows = []
    made = set()
    for i, (page, fn, path) in enumerate(small_env_files(env, n_files)):
        d = os.path.dirname(path)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        head = ("small file %d\n" % i).encode()
        with open(path, "wb") as f:
            f.write(head + filler[len(head):])
        rows.append(("wiki", page, fn, SMALL_SIZE, now + i, "", "bench-small"))
    c.executemany("INSERT INTO attachment VALUES (?,?,?,?,?,?,?)", rows)
    c.execute("COMMIT")
    c.close()


class Envs:
    """Generated environments under WORKDIR/envs, reused while their marker and files check out."""

    def __init__(self, workdir, quick):
        self.dir = os.path.join(workdir, "envs-quick" if quick else "envs")
        self.quick = quick
        os.makedirs(self.dir, exist_ok=True)

    def _spec(self, kind, n):
        return {"gen": GEN_VERSION, "kind": kind, "n": n,
                "fixture_size": os.path.getsize(FIXTURE)}

    def _valid(self, env, spec):
        try:
            with open(env + ".json") as f:
                if json.load(f) != spec:
                    return False
            if not os.path.isfile(os.path.join(env, "VERSION")):
                return False
            db = os.path.join(env, "db", "trac.db")
            c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
            try:
                n_rows = c.execute("SELECT count(*) FROM attachment").fetchone()[0]
                n_bench = c.execute("SELECT count(*) FROM attachment WHERE author IN ('bench','bench-small')"
                                    ).fetchone()[0]
            finally:
                c.close()
            if n_bench != spec["n"] or n_rows != spec["n"] + 6:   # fixture has 6 attachments
                return False
            if spec["kind"] == "att":
                files, size = att_env_files(env, spec["n"]), ATT_SIZE
            else:
                files, size = small_env_files(env, spec["n"]), SMALL_SIZE
            for _, _, path in files:
                if os.stat(path).st_size != size:
                    return False
            for sfx in ("-journal", "-wal"):
                if os.path.exists(db + sfx):
                    return False
            return True
        except (OSError, ValueError, sqlite3.Error):
            return False

    def get(self, kind, n, n_tickets=0):
        name = "%s-%d" % (kind, n)
        env = os.path.join(self.dir, name)
        spec = self._spec(kind, n)
        if kind == "att":
            spec["tickets"] = n_tickets
        if self._valid(env, spec):
            return env
        log("generating environment %s" % env)
        rm_rf(env)
        rm_rf(env + ".json")
        t = time.monotonic()
        if kind == "att":
            gen_att_env(env, n, n_tickets)
        else:
            gen_small_env(env, n)
        sync()
        with open(env + ".json", "w") as f:
            json.dump(spec, f)
        if not self._valid(env, spec):
            raise BenchError("generated environment %s does not validate" % env)
        log("generated %s in %.1f s (%.0f MiB)" % (name, time.monotonic() - t, tree_bytes(env) / MiB))
        return env

    def att(self, n_full):
        n = max(2, n_full // 10) if self.quick else n_full
        return self.get("att", n, n_tickets=5 * n)

    def big(self):
        return self.att(400)

    def small(self, n_full):
        n = n_full // 10 if self.quick else n_full
        return self.get("small", n)

