"""`python -m cluster.torture.member_main <cluster.member flags>`: a real member + torture hooks.

This is `cluster.member` itself (same flags, same code), started the way
`etcdlite torture` needs it:

- It dies with the torture process (PR_SET_PDEATHSIG, as supervisor.py's
  members do), so an interrupted run never leaves members behind, whatever
  killed it. The parent's pid comes in `ETCDLITE_TORTURE_PARENT`.
- With `ETCDLITE_FAULT_FILE` set, the WAL's commit hook (`SqliteWal.
  fault_before_commit`) sleeps for the control file's `fsync_delay_ms`: a
  slow disk. The peer-link faults of the same file are read by the transport
  itself (actors.fault_injection).
- With `ETCDLITE_BUG=stale-reads`, linearizable reads skip the ReadIndex
  barrier and are served from local state: a deliberate bug, so that a test
  can show the checkers catch it.

The hooks are installed by replacing names in `cluster.member`'s namespace
before it builds anything, so the member's own code is untouched.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from actors.fault_injection import FaultControl, fault_control_from_env
from actors.read_barrier import ReadBarrier
from cluster import member as member_module
from storage.wal import SqliteWal

log = logging.getLogger("etcdlite.torture")

PARENT_ENV = "ETCDLITE_TORTURE_PARENT"
BUG_ENV = "ETCDLITE_BUG"
BUGS = ("stale-reads",)


class StaleReadBarrier(ReadBarrier):
    """BUG INJECTION: a "linearizable" read that does not wait for anything."""

    async def wait(self) -> None:
        return


def _die_with_parent() -> None:
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the torture process reaps its members itself
    if os.getppid() != int(parent):
        sys.exit(0)  # the parent died before prctl took effect


def _install_slow_disk(control: FaultControl) -> None:
    def open_wal(path: Path | str) -> SqliteWal:
        wal = SqliteWal(path)
        wal.fault_before_commit = control.delay_commit
        return wal

    member_module.__dict__["SqliteWal"] = open_wal


def main() -> None:
    _die_with_parent()
    control = fault_control_from_env()
    if control is not None:
        _install_slow_disk(control)
    bug = os.environ.get(BUG_ENV, "")
    if bug == "stale-reads":
        member_module.__dict__["ReadBarrier"] = StaleReadBarrier
        print("BUG INJECTED: linearizable reads are served locally", file=sys.stderr)
    elif bug:
        raise SystemExit(f"unknown {BUG_ENV}={bug!r}; known: {', '.join(BUGS)}")
    member_module.main()


if __name__ == "__main__":
    main()
