"""scripts/bench's code: the measurements of doc/performance.md.

scripts/bench is the command (its docstring says what it measures and how
to run it); this package holds the code, one module per job:

    common.py   paths, constants, progress log, running commands, caches,
                unmounting, sizes, the result rows and the table
    snap.py     taking snapshots the two ways measured: `mkdir MNT/NAME` on a
                mounted daemon (visible, then sealed) and `tracsnap snapshot`
    envs.py     the generated Trac environments, reused between runs
    writer.py   the B1 writer (the process `scripts/bench --_writer DB`)
    b1.py       B1 writer stall
    b2.py       B2 incremental snapshot
    b3.py       B3 first snapshot
    reads.py    B4 and B5, reading a snapshot through the mount
    b6.py       B6 daemon memory
    xfs.py      XFS, first snapshot on XFS with reflinks
    growth.py   GROWTH, the store's growth per snapshot of a large database on XFS
    pg.py       PG, writers' waits during a snapshot of a PostgreSQL environment
    restore.py  RS, the store's growth for the first snapshot after a restore
    incr.py     S1 writer stall and S2 incremental snapshot at many files
    verify.py   S3 verify of snapshots that share their files
    memory.py   S4 daemon memory at many files and many snapshots
    main.py     options, the run of every measurement, the table, exit status

The helpers the mount tests use are reused from tests/ (tests/tshelpers.py:
the binary, the daemon on a mount point, waiting for a seal, the fixture;
tests/tracwriter.py: where Trac keeps an attachment; tests/pgcluster.py: a
throwaway PostgreSQL cluster), so that the bench and the tests cannot drift
apart.  Importing the package puts tests/ on sys.path for that.
"""
import os
import sys

_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
