"""`etcdlite torture`: a Jepsen-style fault harness for real etcdlite clusters.

It starts its own members (real processes on ipc:// sockets under a temporary
directory), runs a concurrent KV + lease + watch workload while a nemesis
kills, pauses, partitions and slows them, then checks what the clients saw:
linearizability per key (checker_linear), watch guarantees (checker_watch),
durability and replica agreement (checker_durability). See README "Fault
testing".
"""
