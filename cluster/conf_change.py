"""Single-server membership changes, as carried in CONF_CHANGE log entries.

The change is decided by the leader when proposed and takes effect on every
member when the entry is applied (see cluster/raft.py for why single-server
changes are enough). `apply_to` is pure so the applier and the simulator
compute the same membership from the same entry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cluster import codec
from cluster.errors import BadRequestError
from cluster.messages import ConfState


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0  # add a voter, or promote a learner
    REMOVE_NODE = 1
    UPDATE_NODE = 2  # address change only; membership unchanged
    ADD_LEARNER = 3


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""  # member attributes (name, urls), CBOR, opaque to Raft

    def to_bytes(self) -> bytes:
        return codec.dumps([int(self.type), self.node_id, self.context])

    @staticmethod
    def from_bytes(data: bytes) -> ConfChange:
        w = codec.loads(data)
        try:
            ctype, node_id, context = w
            if not isinstance(node_id, int) or not isinstance(context, bytes):
                raise BadRequestError("malformed conf change")
            return ConfChange(ConfChangeType(ctype), node_id, context)
        except (ValueError, TypeError):
            raise BadRequestError("malformed conf change") from None

    def apply_to(self, conf: ConfState) -> ConfState:
        """The membership after this change; a no-op change returns `conf` unchanged."""
        voters, learners = set(conf.voters), set(conf.learners)
        if self.type is ConfChangeType.ADD_NODE:
            learners.discard(self.node_id)
            voters.add(self.node_id)
        elif self.type is ConfChangeType.ADD_LEARNER:
            if self.node_id in voters:
                return conf  # demotion is not supported, as in etcd
            learners.add(self.node_id)
        elif self.type is ConfChangeType.REMOVE_NODE:
            voters.discard(self.node_id)
            learners.discard(self.node_id)
            if not voters:
                return conf  # never remove the last voter
        return ConfState(voters=frozenset(voters), learners=frozenset(learners))
