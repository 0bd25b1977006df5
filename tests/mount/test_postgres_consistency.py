"""Spec section 4 for PostgreSQL: snapshots taken while Trac writes are
consistent between files and database.

PgTracWriter plays Trac on PostgreSQL (psycopg2, role trac with its password)
in the order trac/attachment.py uses:
- ticket: SELECT max(id); BEGIN; INSERT ticket ... RETURNING id; COMMIT;
  comment: BEGIN; INSERT ticket_change; UPDATE ticket; COMMIT;
- upload: the file created EMPTY with O_CREAT|O_EXCL before the transaction;
  BEGIN; INSERT the attachment row; write the content; COMMIT;
- delete: BEGIN; DELETE the row; unlink the file; COMMIT;
- failed upload: empty file, BEGIN, INSERT, ROLLBACK.
It writes the same acknowledgement records as tests/tracwriter.py, so the
same oracle (tracwriter.check_snapshot: I1, I2, I3) judges every snapshot:
each snapshot's dump is loaded into a scratch database with psql and the rows
the oracle reads are handed to it as a small SQLite file.

The writer must never see an error, and its ticket writes must never wait
for a snapshot (only attachment writes wait, for the file freeze).
"""
import hashlib
import os
import random
import sqlite3
import sys
import threading
import time

from tshelpers import TOP
from conftest_pg import (DUMP_REL, load_dump, pg_cluster, pg_db, pg_env,  # noqa: F401
                         trac_connect)
from test_consistency import take_snapshots

sys.path.insert(0, os.path.join(TOP, "tests"))
import tracwriter  # noqa: E402

AUTO_SEC = "%Y-%m-%dT%H%M%S"


class PgTracWriter:
    """One Trac process writing to ENV and its PostgreSQL database."""

    def __init__(self, env, cnx, seed=None, pause=(0.005, 0.02), max_size=48 * 1024):
        import psycopg2
        self.Error = psycopg2.Error
        self.env = env
        self.cnx = cnx
        self.cnx.autocommit = True          # BEGIN/COMMIT are ours, where Trac has them
        self.cur = cnx.cursor()
        self.rng = random.Random(seed)
        self.pause = pause
        self.max_size = max_size
        self.tag = "tw%d.%d" % (os.getpid(), self.rng.randrange(1 << 30))
        self.seq = 0
        self.live = []
        self.recs = []
        self.errors = []
        self.stop_event = threading.Event()
        self.thread = None

    def _marker(self):
        self.seq += 1
        return "%s.%d" % (self.tag, self.seq)

    def _done(self, op, key, t_begin, **extra):
        t_end = time.monotonic()
        rec = {"op": op, "key": key, "t_begin": t_begin, "t_end": t_end, "wait": t_end - t_begin}
        rec.update(extra)
        self.recs.append(rec)
        return rec

    def _error(self, op, exc, t_begin):
        self.errors.append({"op": "error", "in": op, "error": "%s: %s" % (type(exc).__name__, exc),
                            "t_begin": t_begin, "t_end": time.monotonic()})
        try:
            self.cur.execute("ROLLBACK")
        except self.Error:
            pass

    def new_ticket(self):
        marker = self._marker()
        t0 = time.monotonic()
        try:
            self.cur.execute("SELECT max(id) FROM ticket")
            self.cur.fetchone()
            self.cur.execute("BEGIN")
            ts = tracwriter.now_us()
            self.cur.execute(
                "INSERT INTO ticket (type, time, changetime, component, severity, priority, owner,"
                " reporter, cc, version, milestone, status, resolution, summary, description, keywords)"
                " VALUES ('defect', %s, %s, '', '', 'major', '', 'writer', '', '', '', 'new', '', %s, %s, '')"
                " RETURNING id", (ts, ts, marker, "written by the PostgreSQL tracwriter"))
            tid = self.cur.fetchone()[0]
            self.cur.execute("COMMIT")
        except self.Error as e:
            self._error("ticket", e, t0)
            return None
        return self._done("ticket", marker, t0, id=tid)

    def new_comment(self):
        marker = self._marker()
        t0 = time.monotonic()
        try:
            self.cur.execute("SELECT max(id) FROM ticket")
            tid = self.rng.randint(1, self.cur.fetchone()[0] or 1)
            self.cur.execute("BEGIN")
            self.cur.execute("INSERT INTO ticket_change (ticket, time, author, field, oldvalue, newvalue)"
                             " VALUES (%s, %s, 'writer', 'comment', '', %s)", (tid, tracwriter.now_us(), marker))
            self.cur.execute("UPDATE ticket SET changetime=%s WHERE id=%s", (tracwriter.now_us(), tid))
            self.cur.execute("COMMIT")
        except self.Error as e:
            self._error("comment", e, t0)
            return None
        return self._done("comment", marker, t0, ticket=tid)

    def upload(self, fail=False):
        marker = self._marker()
        tid = str(self.rng.randint(1, 30))
        filename = marker + ".bin"
        size = self.rng.randint(1024, self.max_size)
        data = os.urandom(size)
        t0 = time.monotonic()
        rel = tracwriter.attachment_relpath("ticket", tid, filename)
        path = os.path.join(self.env, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            try:
                self.cur.execute("BEGIN")
                self.cur.execute("INSERT INTO attachment (type, id, filename, size, time, description, author)"
                                 " VALUES ('ticket', %s, %s, %s, %s, '', 'writer')",
                                 (tid, filename, size, tracwriter.now_us()))
                if fail:
                    self.cur.execute("ROLLBACK")
                    return self._done("fail", "ticket:%s:%s" % (tid, filename), t0, path=rel)
                off = 0
                while off < size:
                    off += os.write(fd, data[off:])
                self.cur.execute("COMMIT")
            except self.Error as e:
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
        rel = tracwriter.attachment_relpath("ticket", tid, filename)
        t0 = time.monotonic()
        try:
            self.cur.execute("BEGIN")
            self.cur.execute("DELETE FROM attachment WHERE type='ticket' AND id=%s AND filename=%s",
                             (tid, filename))
            p = os.path.join(self.env, rel)
            if os.path.isfile(p):
                os.unlink(p)
            self.cur.execute("COMMIT")
        except self.Error as e:
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

    def _run(self, seconds):
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and not self.stop_event.is_set():
                self.step()
                time.sleep(self.rng.uniform(*self.pause))
        except Exception as e:   # noqa: BLE001 - reported by the test
            self.errors.append({"op": "error", "in": "writer", "error": repr(e)})

    def start(self, seconds=60):
        self.thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.recs and time.monotonic() < deadline:
            assert self.alive(), "writer died: %s" % self.errors
            time.sleep(0.02)
        assert self.recs, "writer wrote nothing within 10 s: %s" % self.errors

    def alive(self):
        return self.thread is not None and self.thread.is_alive()

    @property
    def out(self):          # what take_snapshots reads when the writer ends early
        return os.devnull

    def stop(self):
        self.stop_event.set()
        if self.thread:
            self.thread.join(60)
        waits = {}
        for r in self.recs:
            waits[r["op"]] = max(waits.get(r["op"], 0.0), r["wait"])
        summary = {"op": "summary", "counts": dict((op, sum(1 for r in self.recs if r["op"] == op))
                                                   for op in set(r["op"] for r in self.recs)),
                   "errors": [e["error"] for e in self.errors], "max_wait_by_op": waits}
        return self.recs, summary


def sqlite_view(cluster, scratch, dest):
    """The rows tracwriter.check_snapshot reads, from the loaded dump, as an
    SQLite file at dest."""
    cnx = cluster.connect(scratch)
    try:
        cur = cnx.cursor()
        cur.execute("SELECT summary FROM ticket")
        tickets = cur.fetchall()
        cur.execute("SELECT ticket, time, author, field, oldvalue, newvalue FROM ticket_change")
        changes = cur.fetchall()
        cur.execute("SELECT type, id, filename, size, time, description, author FROM attachment")
        atts = cur.fetchall()
    finally:
        cnx.close()
    s = sqlite3.connect(dest)
    s.execute("CREATE TABLE ticket (summary text)")
    s.execute("CREATE TABLE ticket_change (ticket int, time int, author text, field text,"
              " oldvalue text, newvalue text)")
    s.execute("CREATE TABLE attachment (type text, id text, filename text, size int, time int,"
              " description text, author text)")
    s.executemany("INSERT INTO ticket VALUES (?)", tickets)
    s.executemany("INSERT INTO ticket_change VALUES (?,?,?,?,?,?)", changes)
    s.executemany("INSERT INTO attachment VALUES (?,?,?,?,?,?,?)", atts)
    s.commit()
    s.close()


def test_snapshots_consistent_while_trac_writes(pg_cluster, pg_db, pg_env, mount_factory, tmp_path):
    """24 snapshots (mkdir and first access) while the writer runs; each dump
    loads into an empty database; I1, I2, I3 hold; the writer saw no error and
    its ticket writes never waited for a snapshot."""
    env = pg_env(pg_db)
    m = mount_factory(env, opts=["auto=%Y-%m-%d:" + AUTO_SEC])
    w = PgTracWriter(env, trac_connect(pg_cluster, pg_db), seed=21)
    try:
        w.start(seconds=90)
        t = time.monotonic()
        taken = take_snapshots(m, w, 24, gap=(0.1, 0.4), extra_first=("%Y-%m-%d",))
        print("took %d snapshots in %.1f s" % (len(taken), time.monotonic() - t))
        time.sleep(0.3)
    finally:
        recs, summary = w.stop()
        w.cnx.close()
    assert sum(1 for r in recs if r["op"] in ("ticket", "attach")) > 50, \
        "the writer hardly wrote: %s" % (summary,)
    assert summary["errors"] == [], "the writer saw errors: %s" % summary["errors"][:5]
    listing = set(os.listdir(m.mnt))
    failures = []
    for i, (name, how, t0, t1) in enumerate(taken):
        assert name in listing, "snapshot %s (%s) not listed" % (name, how)
        snap = m.path(name)
        scratch = load_dump(pg_cluster, os.path.join(snap, DUMP_REL))
        view = tmp_path / ("view%02d" % i)
        view.mkdir()
        sqlite_view(pg_cluster, scratch, str(view / "trac.db"))
        pg_cluster.drop_db(scratch)
        problems, info = tracwriter.check_snapshot(snap, recs, t0, t1, db_rel=str(view / "trac.db"))
        print("snapshot %-22s %-24s %6.0f ms  %s" % (name, how, (t1 - t0) * 1000, info))
        failures += ["%s (%s): %s" % (name, how, p) for p in problems[:15]]
    print("writer:", summary)
    assert not failures, "inconsistent snapshots:\n" + "\n".join(failures)
    waits = summary["max_wait_by_op"]
    print("longest waits: %s" % waits)
    tw = max(waits.get("ticket", 0), waits.get("comment", 0))
    assert tw < 1.0, "a ticket write waited %.3f s: ticket writes must never wait for a snapshot" % tw
