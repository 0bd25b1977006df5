"""The B1 writer: `scripts/bench --_writer DB`, a Trac-like process that
commits one ticket comment every 10 ms while B1 takes a snapshot or a
hotcopy, and reports how long each commit waited.

Why not tests/tracwriter.py: B1's figure is the longest wait of one fixed,
small write at a fixed rate.  tracwriter.py plays a whole Trac (a random mix
of tickets, comments that also update the ticket, uploads and deletes, with
random pauses) to check a snapshot's consistency; its waits would depend on
which operation happened to fall in the lock, and B1's baselines were
measured with this writer.  It keeps Trac's connection (sqlite3, DEFERRED
via BEGIN, busy timeout 10 s), as tracwriter.py does.

Only the standard library: it runs as its own process, started from the
launcher before anything else is imported.
"""
import json
import signal
import sqlite3
import sys
import time


def writer_main(db):
    """Trac-like writer: a deferred transaction inserting one ticket_change row every 10 ms.
    Prints 'ready' after its first commit, stops on SIGTERM, then prints a JSON list of
    [begin (monotonic), wait seconds, ok]."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    c = sqlite3.connect(db, timeout=10, isolation_level=None)
    cur = c.cursor()
    rec = []
    period = 0.010
    nxt = time.monotonic()
    last_us = 0
    ready = False
    while not stop:
        t0 = time.monotonic()
        us = max(int(time.time() * 1e6), last_us + 1)
        last_us = us
        ok = True
        try:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO ticket_change (ticket,time,author,field,oldvalue,newvalue) "
                        "VALUES (?,?,?,?,?,?)", (31, us, "bench-writer", "comment", "", "x"))
            cur.execute("COMMIT")
        except sqlite3.OperationalError as e:
            ok = str(e)
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        t1 = time.monotonic()
        rec.append((t0, t1 - t0, ok))
        if not ready:
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            ready = True
        nxt += period
        now = time.monotonic()
        if nxt > now:
            time.sleep(nxt - now)
        else:
            nxt = now
    c.close()
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()
