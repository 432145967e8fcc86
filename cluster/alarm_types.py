"""Alarms: cluster-wide conditions that change what the cluster accepts (etcd's AlarmMember).

An alarm is raised by one member (NOSPACE: its store outgrew --quota-backend-bytes)
but recorded by all of them, because it travels through the Raft log as an
`AlarmRequest` and is applied into the `alarms` table of state.db. So every
member refuses the same writes at the same Raft index, and an alarm survives
restarts until someone disarms it. Re-exported through `cluster.kv`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


class AlarmType(enum.StrEnum):
    """etcd's alarm names. NONE in a request means "any type" (used by disarm)."""

    NONE = "NONE"
    NOSPACE = "NOSPACE"
    CORRUPT = "CORRUPT"


class AlarmAction(enum.StrEnum):
    GET = "get"
    ACTIVATE = "activate"
    DEACTIVATE = "deactivate"


@dataclass(frozen=True, slots=True)
class AlarmMember:
    """One active alarm: which member raised which alarm."""

    member_id: int
    alarm: AlarmType

    def describe(self) -> str:
        """The text etcd's status shows in its errors list."""
        return f"memberID:{self.member_id:x} alarm:{self.alarm.value}"


@dataclass(frozen=True, slots=True)
class AlarmRequest:
    """Raise, clear or list alarms.

    ACTIVATE and DEACTIVATE go through the log (`member_id` 0 and alarm NONE
    are wildcards for DEACTIVATE only); GET is served by the member from its
    applied alarms table after a linearizable barrier.
    """

    op: ClassVar[str] = "alarm"
    action: AlarmAction = AlarmAction.GET
    member_id: int = 0
    alarm: AlarmType = AlarmType.NONE


@dataclass(frozen=True, slots=True)
class AlarmResult:
    """The alarms the request activated, deactivated or (GET) found."""

    alarms: tuple[AlarmMember, ...] = ()
    revision: int = 0
