"""When a supervised member that exited is started again, and what to say about it.

docker's `restart: unless-stopped`, with an exponential backoff: pure decisions,
so that supervisor.py (the one place that applies them) stays about processes,
and tests can check the policy without starting any.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Backoff", "RestartDecision", "RestartPolicy", "decide_restart", "describe_exit",
           "exit_line"]


class RestartPolicy(enum.Enum):
    UNLESS_STOPPED = "unless-stopped"
    NO = "no"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart delay: 0.5 s doubling to 10 s; forgiven after 30 s of uptime."""

    initial_s: float = 0.5
    max_s: float = 10.0
    reset_after_s: float = 30.0

    def delay_s(self, failures: int) -> float:
        """Delay before the restart that follows the `failures`-th quick exit in a row."""
        assert failures >= 1
        return min(self.initial_s * 2 ** (failures - 1), self.max_s)


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    delay_s: float
    failures: int  # quick exits in a row, including this one


def decide_restart(policy: RestartPolicy, *, stopping: bool, uptime_s: float,
                   failures: int, backoff: Backoff = Backoff()) -> RestartDecision:
    """What to do about a member that just exited.

    Like docker's unless-stopped, the exit code does not matter: a member
    that exits 0 unasked is as absent as one that crashed.
    """
    failures = 1 if uptime_s >= backoff.reset_after_s else failures + 1
    if stopping or policy is RestartPolicy.NO:
        return RestartDecision(False, 0.0, failures)
    return RestartDecision(True, backoff.delay_s(failures), failures)


def describe_exit(returncode: int) -> str:
    """Popen's negative return codes mean "killed by signal"."""
    if returncode < 0:
        return f"signal {-returncode}"
    return f"code {returncode}"


def exit_line(name: str, returncode: int, decision: RestartDecision) -> str:
    how = describe_exit(returncode)
    if decision.restart:
        return f"{name} exited ({how}); restarting in {decision.delay_s:g}s"
    return f"{name} exited ({how}); not restarting"
