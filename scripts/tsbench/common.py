"""What every measurement shares: paths and constants, the progress log,
running and timing commands, the page cache, unmounting, sizes, and the
result rows with the table they make.

Commands run through tests/tshelpers.py's run(); a failure here is a
BenchError, which scripts/bench reports as an ERROR row of its measurement.
"""
import os
import re
import shlex
import stat
import statistics
import subprocess
import sys
import time

import tshelpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
# The bench measures the binary it built (make -C REPO), whatever
# TRACSNAP_BIN says: main() points tests/tshelpers.py at it.
TS = os.path.join(REPO, "build", "tracsnap")
BENCH = os.path.join(REPO, "scripts", "bench")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
MiB = 1024 * 1024
ATT_SIZE = 5 * MiB          # one big attachment
NOISY_MIN_RUNS = 5          # B2, B4, B5, S1-S3: short samples on a noisy VM
T0 = time.monotonic()


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write("[bench %7.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# small process helpers

def run(cmd, timeout=3600, check=True, shell=False, cwd=None):
    """Run cmd (a list, or a bash command line with shell=True), capture its
    output as text, raise BenchError on failure."""
    args = ["/bin/bash", "-c", cmd] if shell else cmd
    try:
        cp = tshelpers.run(args, check=False, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError("timed out after %ss: %s" % (timeout, cmd if shell else shlex.join(cmd)))
    if check and cp.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (cmd if shell else shlex.join(cmd), cp.returncode,
                                               (cp.stderr or cp.stdout).strip()[-800:]))
    return cp


def timed(cmd, **kw):
    t = time.monotonic()
    cp = run(cmd, **kw)
    return time.monotonic() - t, cp


def sync():
    os.sync()


# After a measurement deletes gigabytes (the previous copy, store or hotcopy), this VM
# hands the freed memory back to its host (virtio-balloon free page reporting, every
# 2 s while there is some to report).  Measured here with the B1 writer and nothing
# else running: after deleting a 2 GB copy, commits stall 80-120 ms every 2.1 s for
# about 12 s (idle: at most ~20 ms).  Measurements that follow a big deletion let that
# pass first, so that no one is charged for the previous one's cleanup.
SETTLE_S = 15.0


def settle():
    os.sync()
    time.sleep(SETTLE_S)


DROP_OK = None


def drop_caches():
    global DROP_OK
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        DROP_OK = True
    except OSError as e:
        DROP_OK = False
        raise BenchError("cannot drop caches (%s): cold measurements need root" % e)


def rm_rf(path):
    if os.path.lexists(path):
        run(["rm", "-rf", "--one-file-system", path])


def mounted_paths():
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
            out.append((mp, fields[2]))
    return out


def is_mounted(path):
    path = os.path.realpath(path)
    return any(mp == path for mp, _ in mounted_paths())


def fuse_unmount(mnt):
    """fusermount3 -u, retried briefly, then -z."""
    if not is_mounted(mnt):
        return
    for _ in range(20):
        if subprocess.run(["fusermount3", "-u", mnt], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0 or not is_mounted(mnt):
            return
        time.sleep(0.1)
    log("fusermount3 -u %s failed; lazy unmount" % mnt)
    subprocess.run(["fusermount3", "-u", "-z", mnt], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def block_unmount(mnt):
    if not is_mounted(mnt):
        return
    for _ in range(20):
        if subprocess.run(["umount", mnt], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0 or not is_mounted(mnt):
            return
        time.sleep(0.2)
    log("umount %s failed; lazy unmount" % mnt)
    subprocess.run(["umount", "-l", mnt])


def tail(path, n=5):
    try:
        with open(path, "rb") as f:
            return " | ".join(f.read().decode(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


def du_bytes(path):
    return int(run(["du", "-sB1", path]).stdout.split()[0])


def tree_bytes(path):
    """The bytes of every entry of a tree that is neither a directory nor a symlink."""
    return sum(st.st_size for rel, st in tshelpers.tree_entries(path).items()
               if rel != "." and not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode))


def warm(path):
    run("tar -cf - -C %s . | cat > /dev/null" % shlex.quote(path), shell=True)


def count_label(n):
    """A number of files as the rows name it: 200000 -> '200k', 1000000 -> '1M'."""
    if n >= 1000000 and n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


def noisy_runs(ctx):
    """Runs for the short measurements (B2, B4, B5, S1-S3): at least NOISY_MIN_RUNS."""
    return ctx.runs if ctx.quick else max(ctx.runs, NOISY_MIN_RUNS)


# ---------------------------------------------------------------------------
# results

class Row:
    def __init__(self, name, unit, ts, base, target=None, higher_better=False, ratio_limit=None,
                 passed=None, note="", ts_label="ts", base_label="base", ratio=None):
        self.name, self.unit, self.ts, self.base = name, unit, ts, base
        self.target, self.note = target, note
        self.ts_label, self.base_label = ts_label, base_label
        self.ts_med = statistics.median(ts) if ts else None
        self.base_med = statistics.median(base) if base else None
        if ratio is not None:
            self.ratio = ratio
        elif self.ts_med is not None and self.base_med:
            self.ratio = self.ts_med / self.base_med
        else:
            self.ratio = None
        if passed is None and ratio_limit is not None and self.ratio is not None:
            passed = self.ratio >= ratio_limit if higher_better else self.ratio <= ratio_limit
        self.passed = passed
        self.error = None


def error_row(name, msg):
    r = Row(name, "", [], [])
    r.error = msg
    return r


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "s":
        return "%.3f s" % v if v < 10 else "%.1f s" % v
    if unit == "ms":
        return "%.1f ms" % (v * 1000) if v < 0.01 else "%.0f ms" % (v * 1000)
    if unit == "B/s":
        return "%.0f MB/s" % (v / 1e6)
    if unit == "B":
        return "%.1f MiB" % (v / MiB)
    return "%g %s" % (v, unit)


def fmt_vals(vals, unit):
    if unit == "ms":
        return ",".join("%.0f" % (v * 1000) if v >= 0.01 else "%.1f" % (v * 1000) for v in vals) + " ms"
    if unit == "s":
        return ",".join("%.3f" % v if v < 10 else "%.1f" % v for v in vals) + " s"
    if unit == "B/s":
        return ",".join("%.0f" % (v / 1e6) for v in vals) + " MB/s"
    if unit == "B":
        return ",".join("%.1f" % (v / MiB) for v in vals) + " MiB"
    return ",".join("%g" % v for v in vals) + " " + unit


def print_table(rows, out=sys.stdout):
    hdr = ["measurement", "tracsnap", "baseline", "ratio", "target", "result", "values"]
    lines = []
    for r in rows:
        if r.error:
            lines.append([r.name, "-", "-", "-", "-", "ERROR", r.error])
            continue
        vals = []
        if r.ts:
            vals.append("%s %s" % (r.ts_label, fmt_vals(r.ts, r.unit)))
        if r.base:
            vals.append("%s %s" % (r.base_label, fmt_vals(r.base, r.unit)))
        if r.note:
            vals.append(r.note)
        res = "info" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append([r.name, fmt(r.ts_med, r.unit), fmt(r.base_med, r.unit),
                      "-" if r.ratio is None else "%.3f" % r.ratio, r.target or "-", res, "; ".join(vals)])
    w = [max(len(hdr[i]), *(len(l[i]) for l in lines)) if lines else len(hdr[i]) for i in range(6)]
    def line(cells):
        return "  ".join(c.ljust(w[i]) for i, c in enumerate(cells[:6])) + "  " + cells[6]
    out.write(line(hdr) + "\n")
    out.write(line(["-" * x for x in w] + ["-" * 6]) + "\n")
    for l in lines:
        out.write(line(l) + "\n")
    out.flush()

