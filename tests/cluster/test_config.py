"""Configuration: defaults, precedence (flags > env > file > defaults), ids, validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cluster.config import (
    ClusterConfig,
    default_local_cluster,
    dump_toml,
    load_cluster_config,
    local_cluster_ipc,
    local_cluster_on_ports,
    make_cluster_config,
    member_id_for,
    parse_initial_cluster,
    parse_retention,
    resolve_member_config,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """A 3-member cluster file with some non-default settings."""
    cfg = default_local_cluster(3, tmp_path / "data", heartbeat_interval_ms=50,
                                election_timeout_ms=500, snapshot_count=300)
    path = tmp_path / "cluster.toml"
    path.write_text(dump_toml(cfg))
    return path


def test_default_local_cluster_uses_design_ports() -> None:
    cfg = default_local_cluster(7, Path("data"))
    bases = [2379, 22379, 32379, 42379, 52379, 62379, 12379]
    assert [m.name for m in cfg.members] == [f"m{k}" for k in range(1, 8)]
    for m, b in zip(cfg.members, bases, strict=True):
        assert m.peer_url == f"tcp://127.0.0.1:{b + 1}"
        assert m.client_url == f"tcp://127.0.0.1:{b - 1}"
        assert m.etcd_client_url == f"http://127.0.0.1:{b}"


def test_default_local_cluster_refuses_more_members_than_ports() -> None:
    with pytest.raises(ValueError, match=r"1\.\.7 members"):
        default_local_cluster(8, Path("data"))


def test_defaults_are_etcds() -> None:
    cfg = default_local_cluster(1, Path("data"))
    assert (cfg.heartbeat_interval_ms, cfg.election_timeout_ms) == (100, 1000)
    assert (cfg.heartbeat_ticks, cfg.election_ticks, cfg.tick_interval_s) == (1, 10, 0.1)
    assert (cfg.max_request_bytes, cfg.max_txn_ops) == (1572864, 128)
    assert (cfg.quota_backend_bytes, cfg.snapshot_count) == (2 * 1024**3, 10_000)
    assert (cfg.state, cfg.auto_compaction_mode, cfg.auto_compaction_retention_s) == (
        "new", "periodic", 0.0)


def test_member_ids_are_deterministic_nonzero_63_bit() -> None:
    a = member_id_for("m1", "tcp://127.0.0.1:2380", "tok")
    assert a == member_id_for("m1", "tcp://127.0.0.1:2380", "tok")
    others = {member_id_for("m2", "tcp://127.0.0.1:2380", "tok"),
              member_id_for("m1", "tcp://127.0.0.1:2381", "tok"),
              member_id_for("m1", "tcp://127.0.0.1:2380", "tok2")}
    assert a not in others
    assert len(others) == 3
    assert 0 < a < 2**63


def test_cluster_id_depends_on_token_and_membership_not_order() -> None:
    one = default_local_cluster(3, Path("data"))
    again = make_cluster_config([(m.name, m.peer_url, m.client_url, m.etcd_client_url)
                                 for m in reversed(one.members)], data_dir=Path("data"))
    assert again.cluster_id == one.cluster_id
    assert default_local_cluster(3, Path("data"), token="other").cluster_id != one.cluster_id
    assert default_local_cluster(2, Path("data")).cluster_id != one.cluster_id


def test_forged_ids_are_refused() -> None:
    cfg = default_local_cluster(1, Path("data"))
    with pytest.raises(ValueError, match="id does not match"):
        replace(cfg, members=(replace(cfg.members[0], member_id=42),))
    with pytest.raises(ValueError, match="cluster_id"):
        replace(cfg, cluster_id=42)


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    cfg = default_local_cluster(5, tmp_path / "d \"quoted\"", auto_compaction_mode="revision",
                                auto_compaction_retention="1000", state="existing")
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(cfg))
    assert load_cluster_config(path) == cfg


@pytest.mark.parametrize("name", ["local-3.toml", "local-5.toml", "multi-host-example.toml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_cluster_config(REPO / "configs" / name)
    assert isinstance(cfg, ClusterConfig)


def test_local_3_file_is_the_default_local_cluster() -> None:
    assert load_cluster_config(REPO / "configs/local-3.toml") == default_local_cluster(
        3, Path("data"))


def test_test_clusters_use_their_own_ports_or_sockets(tmp_path: Path) -> None:
    tcp = local_cluster_on_ports(3, tmp_path, first_port=30_100)
    assert [m.client_url for m in tcp.members] == [
        "tcp://127.0.0.1:30100", "tcp://127.0.0.1:30103", "tcp://127.0.0.1:30106"]
    assert tcp.members[2].peer_url == "tcp://127.0.0.1:30108"
    assert local_cluster_on_ports(2, tmp_path).members[0].peer_url.startswith("tcp://")
    ipc = local_cluster_ipc(2, tmp_path)
    assert ipc.members[1].peer_url == f"ipc://{tmp_path.resolve()}/m2-peer.ipc"
    assert ipc.members[1].client_url == f"ipc://{tmp_path.resolve()}/m2-client.ipc"


def test_file_values_beat_defaults(three: Path) -> None:
    mc = resolve_member_config(config_path=three, name="m2", flags={}, env={})
    assert mc.me.name == "m2"
    assert mc.cluster.heartbeat_interval_ms == 50
    assert mc.cluster.snapshot_count == 300
    assert mc.cluster.max_txn_ops == 128  # default
    assert mc.data_dir == three.parent / "data" / "m2"
    assert mc.wal_path == mc.data_dir / "wal.db"


def test_env_beats_file_and_flags_beat_env(three: Path) -> None:
    env = {"ETCD_SNAPSHOT_COUNT": "700", "ETCD_MAX_TXN_OPS": "64", "ETCD_NAME": "m3"}
    mc = resolve_member_config(config_path=three, name=None, flags={}, env=env)
    assert (mc.me.name, mc.cluster.snapshot_count, mc.cluster.max_txn_ops) == ("m3", 700, 64)
    flags: dict[str, object] = {"snapshot_count": 900, "max-txn-ops": None, "name": "m1"}
    mc = resolve_member_config(config_path=three, name=None, flags=flags, env=env)
    assert (mc.me.name, mc.cluster.snapshot_count, mc.cluster.max_txn_ops) == ("m1", 900, 64)
    mc = resolve_member_config(config_path=three, name="m2", flags=flags, env=env)
    assert mc.me.name == "m2"


def test_config_file_from_environment(three: Path) -> None:
    mc = resolve_member_config(config_path=None, name="m1",
                               flags={}, env={"ETCD_CONFIG_FILE": str(three)})
    assert mc.cluster.heartbeat_interval_ms == 50


def test_data_dir_flag_is_the_members_own_dir(three: Path, tmp_path: Path) -> None:
    env = {"ETCD_DATA_DIR": str(tmp_path / "env")}
    assert resolve_member_config(config_path=three, name="m1", flags={}, env=env
                                 ).data_dir == tmp_path / "env"
    assert resolve_member_config(config_path=three, name="m1",
                                 flags={"data-dir": str(tmp_path / "flag")}, env=env
                                 ).data_dir == tmp_path / "flag"


def test_initial_cluster_flag_alone_derives_client_urls() -> None:
    flags = {"initial-cluster": "a=tcp://10.0.0.1:7380,b=tcp://10.0.0.2:7380",
             "initial-cluster-token": "t", "heartbeat-interval": "20",
             "election-timeout": "200"}
    mc = resolve_member_config(config_path=None, name="b", flags=flags, env={})
    assert mc.me.client_url == "tcp://10.0.0.2:7378"
    assert mc.me.etcd_client_url == "http://10.0.0.2:7379"
    assert mc.me.member_id == member_id_for("b", "tcp://10.0.0.2:7380", "t")
    assert (mc.cluster.election_ticks, mc.data_dir) == (10, Path("data/b"))


def test_initial_cluster_from_env_overrides_file_members(three: Path) -> None:
    env = {"ETCD_INITIAL_CLUSTER": "m1=tcp://127.0.0.1:2380,m9=tcp://127.0.0.1:9380"}
    mc = resolve_member_config(config_path=three, name="m9", flags={}, env=env)
    assert [m.name for m in mc.cluster.members] == ["m1", "m9"]
    assert mc.cluster.member("m1").client_url == "tcp://127.0.0.1:2378"  # from the file
    assert mc.me.client_url == "tcp://127.0.0.1:9378"


def test_listen_urls_move_the_bind_address_but_not_the_id(three: Path) -> None:
    flags = {"listen-peer-urls": "tcp://0.0.0.0:2380", "listen-client-urls": "tcp://0.0.0.0:2378"}
    mc = resolve_member_config(config_path=three, name="m1", flags=flags, env={})
    assert (mc.me.peer_url, mc.me.client_url) == ("tcp://0.0.0.0:2380", "tcp://0.0.0.0:2378")
    assert mc.me.member_id == mc.cluster.member("m1").member_id
    assert mc.cluster.member("m1").peer_url == "tcp://127.0.0.1:2380"


def test_no_configuration_at_all_gives_a_one_member_cluster() -> None:
    mc = resolve_member_config(config_path=None, name=None, flags={}, env={})
    assert (mc.me.name, mc.me.peer_url, len(mc.cluster.members)) == (
        "default", "tcp://127.0.0.1:2380", 1)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"election-timeout": 200}, r"\(200 ms\) must be at least 5 x heartbeat-int"),
        ({"heartbeat-interval": 0}, "must be > 0"),
        ({"election-timeout": 60_000}, "<= 50000"),
        ({"heartbeat-interval": "fast"}, "expected an integer"),
        ({"initial-cluster-state": "old"}, "new or existing"),
        ({"auto-compaction-mode": "sometimes"}, "periodic or revision"),
        ({"auto-compaction-retention": "1 fortnight"}, "use e.g. 1h"),
        ({"initial-cluster": "m1=ws://127.0.0.1:2380"}, "tcp:// or ipc://"),
        ({"initial-cluster": "m1=tcp://127.0.0.1"}, "tcp://host:port"),
        ({"initial-cluster": "m1=tcp://h:1,m1=tcp://h:2"}, "listed twice"),
        ({"initial-cluster": "m1"}, "name=url"),
        ({"listen-client-urls": "http://0.0.0.0:2379"}, "tcp:// or ipc://"),
        ({"listen-peer-urls": "tcp://a:1,tcp://b:1"}, "exactly one url"),
    ],
)
def test_invalid_settings_raise_clear_errors(
    three: Path, flags: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_member_config(config_path=three, name="m1", flags=flags, env={})


def test_unknown_member_name_lists_the_known_ones(three: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown member name 'm7'.*m1, m2, m3"):
        resolve_member_config(config_path=three, name="m7", flags={}, env={})


def test_missing_name_in_a_multi_member_cluster_is_an_error(three: Path) -> None:
    with pytest.raises(ValueError, match="pass --name"):
        resolve_member_config(config_path=three, name=None, flags={}, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cluster]\nheartbeat-intervall = 100\n", "unknown setting 'heartbeat-intervall'"),
        ("[clusters]\n", "unknown table"),
        ('[[member]]\nname = "a"\npeer-url = "tcp://h:1"\ncolour = "red"\n', "colour"),
        ('[[member]]\nname = "a"\n', "needs string name and peer-url"),
        ('[[member]]\nname = "a"\npeer-url = "tcp://h:9"\n'
         '[[member]]\nname = "a"\npeer-url = "tcp://h:19"\n', "duplicate member name"),
        ("", "at least one member"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_cluster_config(path)


@pytest.mark.parametrize(
    ("mode", "text", "value"),
    [("periodic", "0", 0), ("periodic", "1", 3600), ("periodic", "1h30m", 5400),
     ("periodic", "30m", 1800), ("periodic", "0.5", 1800), ("periodic", "45s", 45),
     ("revision", "1000", 1000)],
)
def test_retention_parsing(mode: str, text: str, value: float) -> None:
    assert parse_retention(mode, text) == value


def test_revision_retention_must_be_a_count() -> None:
    with pytest.raises(ValueError, match="needs a count"):
        parse_retention("revision", "1h")


def test_etcd_style_http_and_unix_peer_urls_are_the_same_nng_endpoints() -> None:
    pairs = parse_initial_cluster("m1=http://10.0.0.1:2380,m2=unix:///run/m2.sock,"
                                  "m3=tcp://10.0.0.3:2380")
    assert pairs == [("m1", "tcp://10.0.0.1:2380"), ("m2", "ipc:///run/m2.sock"),
                     ("m3", "tcp://10.0.0.3:2380")]
    cfg = resolve_member_config(config_path=None, name="m1", env={}, flags={
        "initial-cluster": "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380"})
    same = resolve_member_config(config_path=None, name="m1", env={}, flags={
        "initial-cluster": "m1=tcp://127.0.0.1:2380,m2=tcp://127.0.0.1:22380"})
    assert cfg.me.member_id == same.me.member_id  # ids come from the nng form
    with pytest.raises(ValueError, match="no TLS"):
        resolve_member_config(config_path=None, name="m1", env={}, flags={
            "initial-cluster": "m1=https://127.0.0.1:2380"})
