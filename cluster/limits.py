"""Named bounds: channel sizes, frame and batch sizes (TIGER_STYLE: limit everything)."""

from __future__ import annotations

PROTOCOL_VERSION = 1
"""Carried by every frame (peer and client); a member refuses other versions."""

request_bytes_max_default = int(1.5 * 1024 * 1024)
"""etcd's --max-request-bytes default."""

peer_frame_bytes_max = 64 * 1024 * 1024
"""A peer frame larger than this is dropped unread (snapshots travel in chunks)."""

client_frame_bytes_max_slack = 64 * 1024
"""Client frames may exceed max-request-bytes by this much envelope before being cut off."""

txn_ops_max_default = 128
"""etcd's --max-txn-ops default."""

append_entries_max = 256
"""Entries in one AppendEntries message."""

append_bytes_max = 1024 * 1024
"""Payload bytes in one AppendEntries message (at least one entry is always sent)."""

inflight_messages_max = 256
"""Pipelined AppendEntries in flight to one follower before the leader waits (flow control)."""

proposal_batch_max = 512
"""Proposals the raft node drains into one Ready."""

peer_outbox_buffer_max = 1024
"""Outbound messages queued per peer; beyond this they are dropped (Raft tolerates loss)."""

raft_inbox_buffer_max = 1024
"""Inbound work queued for the raft node (peer messages, proposals, reads)."""

apply_buffer_max = 64
"""Batches of committed entries waiting for the applier."""

client_contexts = 256
"""nng REP contexts serving client requests concurrently on one member. A waiting
watch long-poll holds one, so this is sized for watchers plus unary traffic."""

watch_polls_waiting_max = client_contexts - 64
"""Watch long-polls allowed to wait at once on one member; the other 64 contexts stay
free for unary requests. A poll over the cap gets `unavailable` (the client moves on)."""

watch_events_max = 1000
"""Events in one watch reply (a larger `limit` is cut to this); a revision is never split."""

watch_reply_bytes_max = 4 * 1024 * 1024
"""Key and value bytes in one watch reply; beyond it the reply ends at a revision boundary
(the first revision always goes whole, however large)."""

watch_timeout_ms_max = 30_000
"""Longest a watch long-poll waits for a new revision before answering empty."""

watch_scan_revisions_max = 10_000
"""Revisions one chunk of a watch catch-up scans, so a narrow watch far behind costs
bounded work per poll instead of walking all history at once."""

log_tail_entries = 5000
"""Entries kept in memory below a snapshot for slow followers (etcd keeps 5,000)."""
