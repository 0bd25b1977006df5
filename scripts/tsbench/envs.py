"""The generated Trac environments the measurements run on.

Each is the SQLite fixture (tests/fixtures/trac-env-sqlite.tar.gz) plus
generated data, written as Trac writes it (files where Trac keeps
attachments, rows in the database):
    att-N     N attachments of 5 MiB, two per ticket, on 5 N new tickets
              (B1 at 0.5, 1 and 2 GB; "big", 2 GB, for B2, B3, B4, XFS);
    small-N   N wiki attachments of 1 KiB, 100 per page (B5, B6);
    files-N   N ticket attachments of 1 KiB, 10 per ticket on N / 10 new
              tickets (S1-S4: 2,000, 200,000 and, with --large, 1,000,000
              files; 200,000 files are 20,000 ticket directories).
They live under WORKDIR/envs (envs-quick with --quick, sizes / 10) and are
reused while their spec file (ENV.json) and their files check out.  How
long a generation took is logged and kept in Envs.gen_s for the rows'
notes.
"""
import hashlib
import json
import os
import sqlite3
import time

import tracwriter
import tshelpers
from tsbench.common import ATT_SIZE, MiB, BenchError, log, rm_rf, sync, tree_bytes

FIXTURE = os.path.join(tshelpers.FIXTURES, "trac-env-sqlite.tar.gz")
SMALL_SIZE = 1024           # one file of the "many" environments
FILES_PER_TICKET = 10       # files-N: attachments per ticket
FILES_FIRST_TICKET = 31     # files-N: the fixture has tickets 1-30
FILES_AUTHOR = "bench-files"
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


def files_env_file(i):
    """(ticket id, filename) of files-N's attachment number i."""
    return FILES_FIRST_TICKET + i // FILES_PER_TICKET, "file%07d.txt" % i


def files_env_sample(env, n):
    """(ticket id, filename, path) of about 1,000 of files-N's attachments, the
    first and the last among them: what the cheap check looks at."""
    step = max(1, n // 1000)
    out = []
    for i in sorted(set(range(0, n, step)) | {n - 1}):
        tid, fn = files_env_file(i)
        out.append((tid, fn, att_path(env, "ticket", tid, fn)))
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


def gen_files_env(env, n):
    """files-N, written fast: one directory descriptor per ticket, plain
    os.open/os.write/os.close per file, no fsync, every row in one
    transaction.  Paths are tracwriter.attachment_relpath's (the check
    compares a sample with it); the content is unique per file, so that
    nothing could share two of them by content."""
    extract_fixture(env)
    db = os.path.join(env, "db", "trac.db")
    n_tickets = n // FILES_PER_TICKET
    root = os.path.join(env, "files", "attachments", "ticket")
    os.makedirs(root, exist_ok=True)
    filler = b"0123456789abcdef" * (SMALL_SIZE // 16)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    dflags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    now = int(time.time() * 1e6)
    rows = []
    rootfd = os.open(root, dflags)
    try:
        prefixes = set(os.listdir(rootfd))
        for k in range(n_tickets):
            tid = FILES_FIRST_TICKET + k
            hid = hashlib.sha1(str(tid).encode()).hexdigest()
            if hid[:3] not in prefixes:
                os.mkdir(hid[:3], 0o755, dir_fd=rootfd)
                prefixes.add(hid[:3])
            rel = hid[:3] + "/" + hid
            os.mkdir(rel, 0o755, dir_fd=rootfd)
            dfd = os.open(rel, dflags, dir_fd=rootfd)
            try:
                for j in range(FILES_PER_TICKET):
                    i = k * FILES_PER_TICKET + j
                    fn = "file%07d.txt" % i
                    head = ("tracsnap-bench files-%d ticket %d attachment %d\n" % (n, tid, i)).encode()
                    fd = os.open(hashlib.sha1(fn.encode()).hexdigest() + ".txt", flags, 0o644, dir_fd=dfd)
                    try:
                        os.write(fd, head + filler[len(head):])
                    finally:
                        os.close(fd)
                    rows.append(("ticket", str(tid), fn, SMALL_SIZE, now + i, "", FILES_AUTHOR))
            finally:
                os.close(dfd)
    finally:
        os.close(rootfd)
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("BEGIN")
    insert_tickets(c, n_tickets)
    c.executemany("INSERT INTO attachment VALUES (?,?,?,?,?,?,?)", rows)
    c.execute("COMMIT")
    c.close()


class Envs:
    """Generated environments under WORKDIR/envs, reused while their marker and files check out."""

    def __init__(self, workdir, quick):
        self.dir = os.path.join(workdir, "envs-quick" if quick else "envs")
        self.quick = quick
        self.gen_s = {}         # environment name -> seconds its generation took, in this run
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
                n_bench = c.execute("SELECT count(*) FROM attachment WHERE author IN (?,?,?)",
                                    ("bench", "bench-small", FILES_AUTHOR)).fetchone()[0]
            finally:
                c.close()
            if n_bench != spec["n"] or n_rows != spec["n"] + 6:   # fixture has 6 attachments
                return False
            if spec["kind"] == "att":
                files, size = att_env_files(env, spec["n"]), ATT_SIZE
            elif spec["kind"] == "files":
                # A sample, not 1,000,000 stats; and the tickets a
                # measurement adds attachments to hold only their own
                # (a run killed before its cleanup leaves more).
                files, size = files_env_sample(env, spec["n"]), SMALL_SIZE
                for k in range(min(4, spec["n"] // FILES_PER_TICKET)):
                    tid = FILES_FIRST_TICKET + k
                    d = os.path.dirname(att_path(env, "ticket", tid, "x"))
                    if len(os.listdir(d)) != FILES_PER_TICKET:
                        return False
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
        elif kind == "files":
            gen_files_env(env, n)
        else:
            gen_small_env(env, n)
        t_written = time.monotonic() - t
        sync()
        with open(env + ".json", "w") as f:
            json.dump(spec, f)
        if not self._valid(env, spec):
            raise BenchError("generated environment %s does not validate" % env)
        self.gen_s[name] = time.monotonic() - t
        # files-N's size is known; walking 1,000,000 files for it would take a minute
        size = "%d x 1 KiB" % n if kind == "files" else "%.0f MiB" % (tree_bytes(env) / MiB)
        log("generated %s in %.1f s (%.1f s writing, the rest sync and check; %s)"
            % (name, self.gen_s[name], t_written, size))
        return env

    def att(self, n_full):
        n = max(2, n_full // 10) if self.quick else n_full
        return self.get("att", n, n_tickets=5 * n)

    def big(self):
        return self.att(400)

    def small(self, n_full):
        n = n_full // 10 if self.quick else n_full
        return self.get("small", n)

    def files_n(self, n_full):
        """How many files files(n_full) has (--quick: a tenth, whole tickets)."""
        n = n_full // 10 if self.quick else n_full
        return max(FILES_PER_TICKET, n - n % FILES_PER_TICKET)

    def files(self, n_full):
        return self.get("files", self.files_n(n_full))

    def gen_note(self, env):
        """'; generated in N s in this run' when env was, else ''."""
        s = self.gen_s.get(os.path.basename(env))
        return "" if s is None else "; environment generated in %.0f s in this run" % s

