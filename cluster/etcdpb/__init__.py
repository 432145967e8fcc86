"""etcd's v3 protobuf API (etcdserverpb, mvccpb, authpb, leasepb, v3lockpb, v3electionpb).

The .proto files here were written for etcdlite from etcd's public wire contract
(service, message and field names and numbers must be etcd's, or etcd clients
could not talk to us). The `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` modules
beside them are GENERATED and committed; after editing a .proto, regenerate them
from the repository root with:

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
        cluster/etcdpb/kv.proto cluster/etcdpb/rpc.proto \
        cluster/etcdpb/v3lock.proto cluster/etcdpb/v3election.proto \
        cluster/etcdpb/lease.proto cluster/etcdpb/auth.proto

(grpcio-tools, from the `dev` extra). The generated code checks the protobuf and
grpcio runtime versions it needs; pyproject.toml pins at least those.
"""
