"""PG: Trac-like writers' waits during a snapshot of a PostgreSQL environment.

A throwaway cluster (tests/pgcluster.py) holds tests/fixtures/trac-env-postgres.sql.gz;
the fixture environment gets N attachments of ATT_SIZE (files and rows).  Two Trac-like
writers run, each on its own connection: ticket writes (one ticket_change row per 10 ms)
and attachment uploads in Trac's order (empty file with O_EXCL, BEGIN, INSERT attachment,
write 4 KiB, COMMIT; one per 10 ms).  Their longest commit wait while `tracsnap snapshot`
runs is compared with the one during Trac's own PostgreSQL hotcopy (BEGIN; UPDATE system
SET name=NULL WHERE name IS NULL; pg_dump -C --inserts -x -Z 8 -n public; cp -a; COMMIT),
which holds nobody (and is not consistent).  Target: ticket writes never wait for a
snapshot (<= 50 ms); attachment writes wait only for the file freeze (<= lock held + 50 ms).

Why its own writers, not tests/mount/test_postgres_consistency.py's
PgTracWriter: that one plays a whole Trac (a random mix of operations,
random pauses) so that an oracle can judge a snapshot's consistency; PG's
figures are the longest wait of each of two fixed writes at a fixed rate,
on two connections, which is what its targets and baselines were measured
with.
"""
import contextlib
import os
import statistics
import subprocess
import threading
import time

import pgcluster
import tshelpers
from tsbench.common import ATT_SIZE, BenchError, Row, fmt, fmt_vals, log, rm_rf, run, sync, tree_bytes, warm
from tsbench.envs import att_path
from tsbench.snap import ts_snapshot


class PgWriter:
    """One Trac-like writer thread on its own connection: kind 'ticket' or 'attach'."""

    def __init__(self, cluster, db, env, kind):
        self.cnx = cluster.connect(db, user=pgcluster.TRAC_USER, password=pgcluster.TRAC_PASSWORD, tcp=True)
        self.cur = self.cnx.cursor()
        self.env, self.kind = env, kind
        self.rec = []
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.n = 0
        # Unique per writer across runs: the environment keeps the files
        # of earlier runs, and id(self) comes back once an old writer is
        # freed (O_EXCL then failed and ended the writer thread).
        self.born = time.monotonic_ns()

    def _once(self):
        import psycopg2
        self.n += 1
        us = int(time.time() * 1e6)
        t0 = time.monotonic()
        ok = True
        fd = -1
        try:
            if self.kind == "ticket":
                self.cur.execute("BEGIN")
                self.cur.execute("INSERT INTO ticket_change (ticket,time,author,field,oldvalue,newvalue) "
                                 "VALUES (1,%s,'bench-writer','comment','','x')", (us + self.n,))
            else:
                fn = "pgbench-%d-%d-%d.bin" % (os.getpid(), self.born, self.n)
                path = att_path(self.env, "ticket", 2, fn)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                t0 = time.monotonic()
                self.cur.execute("BEGIN")
                self.cur.execute("INSERT INTO attachment VALUES ('ticket','2',%s,4096,%s,'','bench-writer')",
                                 (fn, us))
                os.write(fd, b"x" * 4096)
            self.cur.execute("COMMIT")
        except psycopg2.Error as e:
            ok = str(e).strip()
            with contextlib.suppress(psycopg2.Error):
                self.cur.execute("ROLLBACK")
        finally:
            if fd >= 0:
                os.close(fd)
        self.rec.append((t0, time.monotonic() - t0, ok))

    def _loop(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            self._once()
            nxt += 0.010
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            else:
                nxt = now

    def start(self):
        self.cnx.autocommit = True
        self.th.start()

    def stop(self):
        self.stop_ev.set()
        self.th.join(60)
        self.cnx.close()


def pg_with_writers(cluster, db, env, op):
    """Run op() while both writers run; returns (op result, {kind: max wait during op},
    {kind: failed commits}, {kind: median idle wait})."""
    ws = [PgWriter(cluster, db, env, k) for k in ("ticket", "attach")]
    for w in ws:
        w.start()
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        res = op()
        t1 = time.monotonic()
        time.sleep(0.5)
    finally:
        for w in ws:
            w.stop()
    waits, fails, idle = {}, {}, {}
    for w in ws:
        during = [r[1] for r in w.rec if r[0] + r[1] >= t0 and r[0] <= t1] or [0.0]
        waits[w.kind] = max(during)
        fails[w.kind] = sum(1 for r in w.rec if r[2] is not True)
        idle[w.kind] = statistics.median([r[1] for r in w.rec if r[0] + r[1] < t0] or [0.0])
    return res, waits, fails, idle


def bench_pg(ctx):
    out = ctx.out("pg")
    n_att = 20 if ctx.quick else 200
    try:
        cluster = pgcluster.PgCluster.start()
    except pgcluster.PgClusterError as e:
        raise BenchError("PostgreSQL cluster: %s" % e)
    rows = []
    try:
        db = "tracbench"
        log("PG: loading the fixture into a scratch cluster (port %d)" % cluster.port)
        cluster.create_trac_db(db)
        env = os.path.join(out, "env")
        os.rename(tshelpers.extract_fixture("trac-env-postgres", os.path.join(out, "extract")), env)
        tshelpers.set_trac_database(env, cluster.uri(db))
        log("PG: %d attachments of %s" % (n_att, fmt(ATT_SIZE, "B")))
        block = os.urandom(ATT_SIZE)
        c = cluster.connect(db, user=pgcluster.TRAC_USER, password=pgcluster.TRAC_PASSWORD, tcp=True)
        try:
            cur = c.cursor()
            for i in range(n_att):
                fn = "pgbench%05d.bin" % i
                path = att_path(env, "ticket", 3 + i % 20, fn)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(block)
                cur.execute("INSERT INTO attachment VALUES ('ticket',%s,%s,%s,%s,'','bench')",
                            (str(3 + i % 20), fn, ATT_SIZE, i))
        finally:
            c.close()
        sync()
        warm(env)
        penv = cluster.psql_env(tcp=True)
        ts_w = {"ticket": [], "attach": []}
        base_w = {"ticket": [], "attach": []}
        held, fails_ts, fails_base, idle = [], 0, 0, []
        for r in range(ctx.runs):
            log("PG run %d/%d" % (r + 1, ctx.runs))
            for which in (("ts", "base") if r % 2 == 0 else ("base", "ts")):
                store, dest = os.path.join(out, "store"), os.path.join(out, "cp")
                rm_rf(store)
                rm_rf(dest)
                sync()
                if which == "ts":
                    # a first snapshot, then the measured one (the usual case: incremental)
                    ts_snapshot(env, store, "s0")
                    (_, lk, _, _), w, nf, idl = pg_with_writers(cluster, db, env,
                                                                lambda: ts_snapshot(env, store, "s1"))
                    held.append(lk / 1000.0)
                    fails_ts += sum(nf.values())
                    idle.append(idl["ticket"])
                    for k in w:
                        ts_w[k].append(w[k])
                else:
                    def hotcopy():
                        hc = cluster.connect(db, user=pgcluster.TRAC_USER, password=pgcluster.TRAC_PASSWORD,
                                             tcp=True, autocommit=False)
                        try:
                            hc.cursor().execute("UPDATE system SET name=NULL WHERE name IS NULL")
                            os.makedirs(os.path.join(dest, "db"))
                            dump = os.path.join(dest, "db", "postgres-db-backup.sql.gz")
                            cp = subprocess.run(["pg_dump", "-C", "--inserts", "-x", "-Z", "8", "-n", "public",
                                                 "-f", dump, "-d", db], env=penv, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, timeout=3600)
                            if cp.returncode != 0:
                                raise BenchError("pg_dump: %s" % cp.stderr.decode(errors="replace")[-500:])
                            run(["cp", "-a", env + "/.", dest])
                        finally:
                            hc.commit()
                            hc.close()
                    _, w, nf, _ = pg_with_writers(cluster, db, env, hotcopy)
                    fails_base += sum(nf.values())
                    for k in w:
                        base_w[k].append(w[k])
        rm_rf(os.path.join(out, "store"))
        rm_rf(os.path.join(out, "cp"))
        note = "lock held %s; idle commit median %.1f ms; %s" % (
            fmt_vals(held, "ms"), statistics.median(idle) * 1000, fmt(tree_bytes(env), "B"))
        if fails_ts or fails_base:
            note += "; FAILED COMMITS: ts %d, base %d" % (fails_ts, fails_base)
        tmed = statistics.median(ts_w["ticket"])
        rows.append(Row("PG ticket writes: max commit wait during snapshot (base: hotcopy)", "ms",
                        ts_w["ticket"], base_w["ticket"], target="<= 50 ms",
                        passed=tmed <= 0.050 and not fails_ts, note=note))
        amed, hmed = statistics.median(ts_w["attach"]), statistics.median(held)
        rows.append(Row("PG attachment writes: max commit wait during snapshot (base: hotcopy)", "ms",
                        ts_w["attach"], base_w["attach"], target="<= held + 50 ms",
                        passed=amed <= hmed + 0.050 and not fails_ts,
                        note="lock held median %.0f ms" % (hmed * 1000)))
    finally:
        cluster.stop()
    return rows
