"""`etcdlite lock` and `etcdlite elect`: the concurrency recipes from the shell, as etcdctl.

Both hold a session (a lease kept alive) for as long as they run; Ctrl-C
releases what they hold by revoking it, and a crash releases it when the
lease expires (after --ttl seconds).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading

import click

from cluster.cli_common import Settings
from cluster.concurrency import ConcurrencyError, Mutex, Session
from cluster.election import Election
from cluster.errors import EtcdliteError


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _release(session: Session) -> None:
    # If the cluster cannot be reached, the lease expires on its own within --ttl.
    with contextlib.suppress(EtcdliteError):
        session.close()


def _wait_until_lost(session: Session) -> None:
    """Block until the session's lease is gone (Ctrl-C interrupts the wait)."""
    stop = threading.Event()
    while not session.lost:
        stop.wait(0.2)  # wakes to notice a lost session


@click.command("lock", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--ttl", type=click.IntRange(min=1), default=10, show_default=True,
              help="Session TTL in seconds: how long a crashed holder keeps the lock.")
@click.pass_obj
def lock_cmd(s: Settings, name: str, command: tuple[str, ...], ttl: int) -> None:
    """Acquire the distributed lock NAME, print its key, and hold it.

    Without COMMAND, hold the lock until Ctrl-C. With COMMAND, run it while
    holding the lock (with ETCD_LOCK_KEY and ETCD_LOCK_REV set: the key's
    create revision is a fencing token), release the lock, and exit with the
    command's exit code.

    \b
    Examples:
      etcdlite lock mylock
      etcdlite lock mylock -- ./backup.sh --full
    """
    # Ctrl-C at any point is a normal way out: the session is revoked on the way.
    with contextlib.suppress(KeyboardInterrupt):
        _lock(s, name, command, ttl)


def _lock(s: Settings, name: str, command: tuple[str, ...], ttl: int) -> None:
    with s.client() as c:
        session = Session(c, ttl=ttl)
        try:
            mutex = Mutex(session, name)
            try:
                mutex.lock()
            except ConcurrencyError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(_text(mutex.key))
            if command:
                env = {**os.environ, "ETCD_LOCK_KEY": _text(mutex.key),
                       "ETCD_LOCK_REV": str(mutex.revision)}
                try:
                    code = subprocess.call(list(command), env=env)
                except OSError as exc:
                    raise click.ClickException(f"cannot run {command[0]}: {exc}") from None
                mutex.unlock()
                raise click.exceptions.Exit(code)
            _wait_until_lost(session)
            raise click.ClickException("session expired: the lock is lost")
        finally:
            _release(session)


@click.command("elect")
@click.argument("name")
@click.argument("proposal", required=False)
@click.option("-l", "--listen", is_flag=True, help="Observe the election: print each leader.")
@click.option("--ttl", type=click.IntRange(min=1), default=10, show_default=True,
              help="Session TTL in seconds: how long a crashed leader stays leader.")
@click.pass_obj
def elect_cmd(s: Settings, name: str, proposal: str | None, listen: bool, ttl: int) -> None:
    """Campaign in election NAME with PROPOSAL and hold leadership until Ctrl-C,
    or (-l) print the leader's key and value at every change.

    \b
    Examples:
      etcdlite elect myelection node-a
      etcdlite elect myelection --listen
    """
    if listen == (proposal is not None):
        raise click.UsageError("give either a PROPOSAL or --listen")
    with contextlib.suppress(KeyboardInterrupt):
        _elect(s, name, proposal, ttl)


def _elect(s: Settings, name: str, proposal: str | None, ttl: int) -> None:
    with s.client() as c:
        session = Session(c, ttl=ttl)
        try:
            election = Election(session, name)
            if proposal is None:
                for kv in election.observe():
                    click.echo(_text(kv.key))
                    click.echo(_text(kv.value))
                return
            try:
                election.campaign(proposal)
            except ConcurrencyError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(_text(election.key))
            click.echo(proposal)
            _wait_until_lost(session)
            raise click.ClickException("session expired: leadership is lost")
        finally:
            _release(session)
