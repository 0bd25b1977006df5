#!/usr/bin/python3
"""An emulation of a running Trac that writes to an SQLite environment.

Used by the mount tests to check that snapshots taken while Trac writes are
consistent (doc/contract.md section 4), and usable on its own:

    /usr/bin/python3 tests/tracwriter.py ENV --seconds N --ack-log FILE

What it does is what Trac (1.6/1.7, trac/db/sqlite_backend.py and
trac/attachment.py) does:

- The connection: python sqlite3, busy timeout 10 s (Trac's default `timeout`),
  DEFERRED transactions.  Trac sets `isolation_level = 'DEFERRED'`, so Python
  issues `BEGIN` right before the first INSERT/UPDATE/DELETE of a transaction;
  SELECTs made before it run outside the transaction.  We use
  isolation_level=None and issue that same `BEGIN` ourselves at that same place.
  (Issuing BEGIN *before* a SELECT and then writing is not what Trac does, and
  it fails at once with "database is locked" whenever anybody else holds the
  write lock, busy timeout or not: SQLite does not wait when upgrading a read
  transaction to a write transaction in rollback-journal mode.  That order is
  available as `select_in_txn=True` / `--select-in-txn` to show it.)
- Ticket change: SELECT max(id) FROM ticket; BEGIN; INSERT a ticket (summary =
  a unique marker); SELECT max(id) inside the transaction (the new id); COMMIT.
  Or a comment: BEGIN; INSERT INTO ticket_change (..., newvalue=marker); COMMIT.
- Attachment upload, in Trac's order: the file
  files/attachments/ticket/<sha1(id)[:3]>/<sha1(id)>/<sha1(filename)><ext>
  is created EMPTY with O_CREAT|O_EXCL before the transaction; BEGIN; INSERT the
  attachment row; write the content through the open descriptor; COMMIT; close.
- Attachment delete: BEGIN; DELETE the row; unlink the file; COMMIT.
- Failed upload: empty file created, BEGIN, INSERT, ROLLBACK: an empty file and
  no row are left behind, as Trac leaves them.

After each COMMIT (or ROLLBACK of a failed upload) returns, one JSON line is
appended to the acknowledgement log:

    {"op": "ticket"|"comment"|"attach"|"delete"|"fail", "key": ..., "t_begin": ...,
     "t_end": ..., ...}

t_begin is time.monotonic() just before BEGIN was sent (before the ticket's
SELECT for tickets), t_end just after COMMIT returned; CLOCK_MONOTONIC is one
clock for every process of the machine, so the log can be compared with times
taken by the test.  Every sqlite3 error is recorded as {"op": "error", ...} and
the transaction rolled back.  The last line is {"op": "summary", ...} with the
counts, the errors and the longest wait from BEGIN to COMMIT returning.
"""
import argparse
import hashlib
import json
import os
import random
import re
import sqlite3
import sys
import threading
import time

_EXT_RE = re.compile(r"\.[A-Za-z0-9]+$")


def attachment_relpath(realm, res_id, filename):
    """Where Trac 1.0+ keeps an attachment, relative to the environment."""
    hid = hashlib.sha1(str(res_id).encode("utf-8")).hexdigest()
    hname = hashlib.sha1(filename.encode("utf-8")).hexdigest()
    m = _EXT_RE.search(filename)
    ext = m.group(0) if m else ""
    return os.path.join("files", "attachments", realm, hid[:3], hid, hname + ext)


def now_us():
    return int(time.time() * 1000000)


class TracWriter:
    """One Trac process writing to ENV.  `run(seconds)` or `step()` by hand."""

    def __init__(self, env, ack_log=None, seed=None, pause=(0.005, 0.02),
                 max_size=64 * 1024, timeout=10.0, select_in_txn=False, db=None):
        self.env = env
        self.db_path = db or os.path.join(env, "db", "trac.db")
        self.cnx = sqlite3.connect(self.db_path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        self.rng = random.Random(seed)
        self.pause = pause
        self.max_size = max_size
        self.select_in_txn = select_in_txn
        self.ack = open(ack_log, "a") if ack_log else None
        self.tag = "tw%d.%d" % (os.getpid(), self.rng.randrange(1 << 30))
        self.seq = 0
        self.live = []            # (id, filename, size) of attachments this writer made
        self.errors = []          # every sqlite3 / OS error seen
        self.counts = {}
        self.max_wait = 0.0       # longest BEGIN .. COMMIT returned
        self.max_wait_op = None
        self.stop_event = threading.Event()

    # -- bookkeeping -----------------------------------------------------------
    def _log(self, rec):
        if self.ack:
            self.ack.write(json.dumps(rec, sort_keys=True) + "\n")
            self.ack.flush()

    def _done(self, op, key, t_begin, **extra):
        t_end = time.monotonic()
        wait = t_end - t_begin
        if wait > self.max_wait:
            self.max_wait, self.max_wait_op = wait, op
        self.counts[op] = self.counts.get(op, 0) + 1
        rec = {"op": op, "key": key, "t_begin": t_begin, "t_end": t_end, "wait": wait}
        rec.update(extra)
        self._log(rec)
        return rec

    def _error(self, op, exc, t_begin):
        rec = {"op": "error", "in": op, "error": "%s: %s" % (type(exc).__name__, exc),
               "t_begin": t_begin, "t_end": time.monotonic()}
        self.errors.append(rec)
        self._log(rec)
        try:
            self.cnx.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _marker(self):
        self.seq += 1
        return "%s.%d" % (self.tag, self.seq)

    # -- the operations ----------------------------------------------------------
    def new_ticket(self):
        marker = self._marker()
        t0 = time.monotonic()
        try:
            if self.select_in_txn:
                self.cnx.execute("BEGIN")
                self.cnx.execute("SELECT max(id) FROM ticket").fetchone()
            else:
                self.cnx.execute("SELECT max(id) FROM ticket").fetchone()
                self.cnx.execute("BEGIN")
            ts = now_us()
            self.cnx.execute(
                "INSERT INTO ticket (type, time, changetime, component, severity, priority, owner,"
                " reporter, cc, version, milestone, status, resolution, summary, description, keywords)"
                " VALUES ('defect', ?, ?, '', '', 'major', '', 'writer', '', '', '', 'new', '', ?, ?, '')",
                (ts, ts, marker, "written by tracwriter"))
            tid = self.cnx.execute("SELECT max(id) FROM ticket").fetchone()[0]
            self.cnx.execute("COMMIT")
        except sqlite3.Error as e:
            self._error("ticket", e, t0)
            return None
        return self._done("ticket", marker, t0, id=tid)

    def new_comment(self):
        marker = self._marker()
        t0 = time.monotonic()
        try:
            tid = self.cnx.execute("SELECT max(id) FROM ticket").fetchone()[0] or 1
            tid = self.rng.randint(1, tid)
            self.cnx.execute("BEGIN")
            self.cnx.execute(
                "INSERT INTO ticket_change (ticket, time, author, field, oldvalue, newvalue)"
                " VALUES (?, ?, 'writer', 'comment', '', ?)", (tid, now_us(), marker))
            self.cnx.execute("UPDATE ticket SET changetime=? WHERE id=?", (now_us(), tid))
            self.cnx.execute("COMMIT")
        except sqlite3.Error as e:
            self._error("comment", e, t0)
            return None
        return self._done("comment", marker, t0, ticket=tid)

    def _create_empty(self, tid, filename):
        rel = attachment_relpath("ticket", tid, filename)
        path = os.path.join(self.env, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        return rel, path, fd

    def upload(self, fail=False):
        marker = self._marker()
        tid = str(self.rng.randint(1, 30))
        filename = marker + ".bin"
        size = self.rng.randint(1024, self.max_size)
        data = self.rng.randbytes(size) if hasattr(self.rng, "randbytes") else os.urandom(size)
        t0 = time.monotonic()
        rel, path, fd = self._create_empty(tid, filename)
        try:
            try:
                self.cnx.execute("BEGIN")
                self.cnx.execute(
                    "INSERT INTO attachment (type, id, filename, size, time, description, author)"
                    " VALUES ('ticket', ?, ?, ?, ?, '', 'writer')", (tid, filename, size, now_us()))
                if fail:
                    self.cnx.execute("ROLLBACK")
                    return self._done("fail", "ticket:%s:%s" % (tid, filename), t0, path=rel)
                off = 0
                while off < size:
                    off += os.write(fd, data[off:])
                self.cnx.execute("COMMIT")
            except sqlite3.Error as e:
                self._error("fail" if fail else "attach", e, t0)
                return None
        finally:
            os.close(fd)
        self.live.append((tid, filename, size))
        return self._done("attach", "ticket:%s:%s" % (tid, filename), t0, path=rel, size=size,
                          sha1=hashlib.sha1(data).hexdigest())

    def delete(self):
        if not self.live:
            return None
        tid, filename, size = self.live.pop(self.rng.randrange(len(self.live)))
        rel = attachment_relpath("ticket", tid, filename)
        t0 = time.monotonic()
        try:
            self.cnx.execute("BEGIN")
            self.cnx.execute("DELETE FROM attachment WHERE type='ticket' AND id=? AND filename=?",
                             (tid, filename))
            p = os.path.join(self.env, rel)
            if os.path.isfile(p):
                os.unlink(p)
            self.cnx.execute("COMMIT")
        except sqlite3.Error as e:
            self._error("delete", e, t0)
            return None
        return self._done("delete", "ticket:%s:%s" % (tid, filename), t0, path=rel)

    def step(self):
        r = self.rng.random()
        if r < 0.40:
            return self.new_ticket()
        if r < 0.50:
            return self.new_comment()
        if r < 0.85:
            return self.upload()
        if r < 0.95:
            return self.delete()
        return self.upload(fail=True)

    def run(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop_event.is_set():
            self.step()
            if self.pause:
                time.sleep(self.rng.uniform(*self.pause))
        return self.summary()

    def summary(self):
        return {"op": "summary", "counts": self.counts, "errors": [e["error"] for e in self.errors],
                "max_wait": self.max_wait, "max_wait_op": self.max_wait_op}

    def close(self):
        s = self.summary()
        self._log(s)
        if self.ack:
            self.ack.close()
            self.ack = None
        self.cnx.close()
        return s


def read_ack_log(path):
    """-> (records without the summary, summary or None)."""
    recs, summary = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue          # a line cut by a kill
            if r["op"] == "summary":
                summary = r
            else:
                recs.append(r)
    return recs, summary


# -- the oracle: is a snapshot taken while this writer ran consistent? ---------------

WRITE_OPS = ("ticket", "comment", "attach", "delete", "fail")
JOURNAL_SUFFIXES = ("-journal", "-wal", "-shm", "-stmtjrnl")


def _file_sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 16), b""):
            h.update(b)
    return h.hexdigest()


def check_snapshot(snap, recs, t_start, t_end, hash_window=3.0, db_rel="db/trac.db"):
    """Check the snapshot directory `snap`, taken between monotonic t_start (before
    mkdir/stat) and t_end (after it returned), against the writer's ack records.
    Returns (problems, info): problems is a list of strings, empty when it is
    consistent; info says which cut of the writer's history the snapshot shows.

    - integrity_check is ok, no journal beside the database;
    - I1: every write acknowledged before t_start is there, no write whose BEGIN
      came after t_end is there, and the writer's rows are exactly those of one
      prefix of its (sequential) history: one instant;
    - I2: every attachment row has its file, of the row's size (and content, for
      uploads near the snapshot); every attachment file without a row is empty
      and belongs to an upload in flight at that instant or to a failed upload;
    - I3: no file of a deleted attachment; the empty files of failed uploads
      committed before t_start are there.
    """
    problems = []
    info = {}
    ops = [r for r in recs if r["op"] in WRITE_OPS]
    n = len(ops)
    dbp = os.path.join(snap, db_rel)
    dbdir = os.path.dirname(dbp)
    base = os.path.basename(dbp)
    for f in os.listdir(dbdir):
        if f.startswith(base) and f.endswith(JOURNAL_SUFFIXES):
            problems.append("journal file in snapshot: %s" % os.path.join(db_rel, "..", f))
    cnx = sqlite3.connect("file:%s?mode=ro" % dbp, uri=True)
    try:
        ic = [r[0] for r in cnx.execute("PRAGMA integrity_check")]
        if ic != ["ok"]:
            problems.append("integrity_check: %r" % ic[:10])
            return problems, info
        info["journal_mode"] = cnx.execute("PRAGMA journal_mode").fetchone()[0]
        summaries = [r[0] for r in cnx.execute("SELECT summary FROM ticket")]
        comments = [r[0] for r in cnx.execute(
            "SELECT newvalue FROM ticket_change WHERE author='writer' AND field='comment'")]
        rows = cnx.execute("SELECT type, id, filename, size, author FROM attachment").fetchall()
    finally:
        cnx.close()

    fixture_tickets = [s for s in summaries if s and s.startswith("ticket ")]
    if len(fixture_tickets) < 30:
        problems.append("only %d of the fixture's 30 tickets" % len(fixture_tickets))
    present = set(s for s in summaries if s and s.startswith("tw")) | set(comments)
    att_rows = {}
    for typ, rid, fn, size, author in rows:
        att_rows[(typ, str(rid), fn)] = (size, author)
    w_att = dict(("ticket:%s:%s" % (rid, fn), size)
                 for (typ, rid, fn), (size, author) in att_rows.items() if author == "writer")
    if len(rows) - len(w_att) < 6:
        problems.append("only %d of the fixture's 6 attachments" % (len(rows) - len(w_att)))

    # -- I1 by the clock --------------------------------------------------------
    up_idx, del_idx, rec_by_key = {}, {}, {}
    for i, r in enumerate(ops):
        if r["op"] == "attach":
            up_idx[r["key"]] = i
            rec_by_key[r["key"]] = r
        elif r["op"] == "delete":
            del_idx[r["key"]] = i
    known_markers = set(r["key"] for r in ops if r["op"] in ("ticket", "comment"))
    for mk in sorted(present - known_markers):
        problems.append("I1: row %r was never acknowledged by the writer" % mk)
    for k in sorted(set(w_att) - set(up_idx)):
        problems.append("I1: attachment row %s was never acknowledged by the writer" % k)
    c_min, c_max = -1, n - 1        # the cut must lie in [c_min, c_max]
    for i, r in enumerate(ops):
        if r["t_end"] < t_start:
            c_min = i
    for i, r in enumerate(ops):
        if r["t_begin"] > t_end:
            c_max = i - 1
            break
    info["acked_before"] = c_min + 1
    info["begun_after"] = n - (c_max + 1)
    for i, r in enumerate(ops):
        op, key = r["op"], r["key"]
        if i <= c_min:
            what = "acknowledged %.3fs before the snapshot started" % (t_start - r["t_end"])
            if op in ("ticket", "comment") and key not in present:
                problems.append("I1: %s %s missing, %s" % (op, key, what))
            elif op == "attach" and del_idx.get(key, n) > c_max and key not in w_att:
                problems.append("I1: attachment row %s missing, %s" % (key, what))
            elif op == "delete" and key in w_att:
                problems.append("I1: attachment row %s present although its delete was %s" % (key, what))
            elif op == "fail" and not os.path.isfile(os.path.join(snap, r["path"])):
                problems.append("I3: empty file of failed upload %s (%s) missing, %s" % (key, r["path"], what))
        elif i > c_max:
            what = "begun %.3fs after the snapshot returned" % (r["t_begin"] - t_end)
            if op in ("ticket", "comment") and key in present:
                problems.append("I1: %s %s present, %s" % (op, key, what))
            elif op == "attach" and key in w_att:
                problems.append("I1: attachment row %s present, %s" % (key, what))
            elif op == "delete" and up_idx.get(key, n) <= c_min and key not in w_att:
                problems.append("I1: attachment row %s absent, its delete %s" % (key, what))

    # -- I1 as one instant: the writer's rows are one prefix of its history -----
    tc = [i for i, r in enumerate(ops) if r["op"] in ("ticket", "comment")]
    lo = max([i for i in tc if ops[i]["key"] in present], default=-1)
    hi = min([i for i in tc if ops[i]["key"] not in present], default=n)
    holes = [ops[i]["key"] for i in tc if i < lo and ops[i]["key"] not in present]
    if holes:
        problems.append("I1: not one instant: %s present but earlier %s missing"
                        % (ops[lo]["key"], holes[:5]))
    cuts = []
    for c in range(lo, hi):
        exp = {}
        for k, i in up_idx.items():
            if i <= c and del_idx.get(k, n) > c:
                exp[k] = rec_by_key[k]["size"]
        if exp == w_att:
            cuts.append(c)
    if not holes and not cuts:
        # explain with the cut nearest to the tickets' window
        c = lo
        exp = dict((k, rec_by_key[k]["size"]) for k, i in up_idx.items()
                   if i <= c and del_idx.get(k, n) > c)
        extra = sorted(set(w_att) - set(exp))[:5]
        miss = sorted(set(exp) - set(w_att))[:5]
        bad = sorted(k for k in set(exp) & set(w_att) if exp[k] != w_att[k])[:5]
        problems.append("I1: attachment rows match no instant between ops %d and %d "
                        "(unexpected %s, missing %s, wrong size %s)" % (lo, hi, extra, miss, bad))
    elif cuts and not any(c_min <= c <= c_max for c in cuts):
        problems.append("I1: the snapshot shows ops 0..%d, outside the window %d..%d of its mkdir"
                        % (cuts[0], c_min, c_max))
    cut = cuts[0] if cuts else max(lo, c_min)
    info["cut"] = cut
    info["ops"] = n

    # -- I2: rows have their files; files without rows are empty in-flight uploads -
    want = {}
    for (typ, rid, fn), (size, author) in att_rows.items():
        rel = attachment_relpath(typ, rid, fn)
        want[rel] = size
        p = os.path.join(snap, rel)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            problems.append("I2: row %s:%s:%s has no file %s" % (typ, rid, fn, rel))
            continue
        if not (st.st_mode & 0o170000) == 0o100000:
            problems.append("I2: %s is not a regular file" % rel)
        elif st.st_size != size:
            problems.append("I2: %s has %d bytes, its row says %d" % (rel, st.st_size, size))
        else:
            r = rec_by_key.get("%s:%s:%s" % (typ, rid, fn))
            if r and author == "writer" and r["t_end"] >= t_start - hash_window:
                if _file_sha1(p) != r["sha1"]:
                    problems.append("I2: %s has the right size but not the uploaded content" % rel)
    may_be_empty = set(r["path"] for r in ops if r["op"] == "fail")
    may_be_empty |= set(r["path"] for i, r in enumerate(ops) if r["op"] == "attach" and i > cut)
    deleted = set(r["path"] for i, r in enumerate(ops) if r["op"] == "delete" and i <= cut)
    att_root = os.path.join(snap, "files", "attachments")
    nfiles = 0
    for dirpath, dirnames, filenames in os.walk(att_root):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            rel = os.path.relpath(p, snap)
            nfiles += 1
            if rel in want:
                continue
            st = os.lstat(p)
            if rel in deleted:
                problems.append("I3: file of deleted attachment still there (%d bytes): %s"
                                % (st.st_size, rel))
            elif st.st_size != 0:
                problems.append("I2: %s has %d bytes and no attachment row" % (rel, st.st_size))
            elif rel not in may_be_empty:
                problems.append("I2: empty %s belongs to no upload in flight" % rel)
    info["attachment_files"] = nfiles
    info["attachment_rows"] = len(att_rows)
    return problems, info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("env")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--ack-log", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--db", default=None, help="database path (default ENV/db/trac.db)")
    ap.add_argument("--pause-ms", type=float, nargs=2, default=(5, 20), metavar=("MIN", "MAX"))
    ap.add_argument("--max-size", type=int, default=64 * 1024)
    ap.add_argument("--select-in-txn", action="store_true",
                    help="BEGIN before the ticket's SELECT (not what Trac does; fails under any lock)")
    a = ap.parse_args(argv)
    w = TracWriter(a.env, a.ack_log, seed=a.seed, db=a.db, max_size=a.max_size,
                   pause=(a.pause_ms[0] / 1000.0, a.pause_ms[1] / 1000.0),
                   select_in_txn=a.select_in_txn)
    import signal
    signal.signal(signal.SIGTERM, lambda *_: w.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: w.stop_event.set())
    w.run(a.seconds)
    s = w.close()
    print(json.dumps(s, sort_keys=True))
    return 1 if s["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
