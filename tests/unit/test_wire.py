"""kafkaform's own Kafka wire reader against a fake broker on loopback whose requests are decoded
and whose answers are encoded by kafka-python's protocol classes (an independent codec), so a
field read or written out of place in `observe/wire.py` breaks these tests."""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.protocol.admin import (
    DescribeClusterRequest,
    DescribeClusterResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
)
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse

from reconciler.observe import kraft, wire
from reconciler.observe.connect import Endpoint

PAIRS = {18: (ApiVersionsRequest, ApiVersionsResponse), 3: (MetadataRequest, MetadataResponse),
         32: (DescribeConfigsRequest, DescribeConfigsResponse), 60: (DescribeClusterRequest, DescribeClusterResponse),
         46: (ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse),
         55: (DescribeQuorumRequest, DescribeQuorumResponse)}
DIR_ID = "1c9ecc8a-5fb0-4686-ac13-aef31e6fd9c9"


def build(cls: Any, doc: dict[str, Any], version: int) -> Any:
    """A kafka-python message (nested structs included) from a plain dict."""
    vals: dict[str, Any] = {}
    for f in cls._struct._fields:
        if f.name not in doc:
            continue
        sub = getattr(cls, f.type_str, None)
        v = doc[f.name]
        vals[f.name] = [build(sub, x, version) for x in v] if sub is not None and isinstance(v, list) else v
    return cls(version=version, **vals)


class FakeBroker:
    """Answers each request with `answer(api_key, version, request dict)`; records the requests."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[tuple[int, int, dict[str, Any]]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn:
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                data = conn.recv(struct.unpack(">i", head)[0], socket.MSG_WAITALL)
                key, version, cid = struct.unpack(">hhi", data[:8])
                req_cls, resp_cls = PAIRS[key]
                req = req_cls.decode(data, version=version, header=True).to_dict()
                self.requests.append((key, version, req))
                body = bytes(build(resp_cls, self.answer(key, version, req), version).encode(version=version))
                header = struct.pack(">i", cid) + (b"" if key == 18 else b"\x00")
                conn.sendall(struct.pack(">i", len(header) + len(body)) + header + body)

    def close(self) -> None:
        self.server.close()


def api_versions(version: int, top: dict[int, int], kraft_version: int = 1) -> dict[str, Any]:
    supported = [{"name": "metadata.version", "min_version": 7, "max_version": 33},
                 {"name": "kraft.version", "min_version": 0, "max_version": 1}]
    if version < 4:  # KAFKA-17011: features supported from level 0 are left out below v4
        supported = [f for f in supported if f["min_version"] > 0]
    return {"error_code": 0, "throttle_time_ms": 0,
            "api_keys": [{"api_key": k, "min_version": 0, "max_version": v} for k, v in top.items()],
            "supported_features": supported, "finalized_features_epoch": 9,
            "finalized_features": [{"name": "metadata.version", "max_version_level": 33, "min_version_level": 33}]
            + ([{"name": "kraft.version", "max_version_level": kraft_version, "min_version_level": kraft_version}]
               if kraft_version else [])}  # a level 0 is left out


def cluster(top: dict[int, int], fail: dict[int, int] | None = None, kraft_version: int = 1) -> Any:
    """A 3-broker KRaft cluster: broker 3 fenced, `orders` with a min ISR override and a throttle,
    orders-1 being reassigned, a throttle rate on broker 1."""
    fail = fail or {}

    def answer(key: int, version: int, req: dict[str, Any]) -> dict[str, Any]:
        if key == 18:
            return api_versions(version, top, kraft_version)
        port = int(broker.address.rpartition(":")[2])
        if key == 60:
            brokers = [{"broker_id": i, "host": "127.0.0.1", "port": port, "rack": None, "is_fenced": i == 3}
                       for i in (1, 2, 3) if version >= 2 or i != 3]
            return {"throttle_time_ms": 0, "error_code": fail.get(60, 0), "error_message": None, "endpoint_type": 1,
                    "cluster_id": "abcdefghijklmnopqrstuv", "controller_id": 101, "brokers": brokers,
                    "authorized_operations": None}
        if key == 3:
            def part(index: int, leader: int, replicas: list[int], isr: list[int]) -> dict[str, Any]:
                return {"error_code": 0, "leader_epoch": 4, "offline_replicas": [], "partition_index": index,
                        "leader_id": leader, "replica_nodes": replicas, "isr_nodes": isr}

            def topic(name: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
                return {"error_code": 0, "name": name, "topic_id": uuid.uuid4(), "is_internal": False,
                        "partitions": parts, "authorized_operations": None}

            return {"throttle_time_ms": 0, "cluster_id": "x", "controller_id": 101,
                    "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": port, "rack": "r1"}],
                    "topics": [topic("orders", [part(0, 1, [1, 2, 3], [1, 2]), part(1, -1, [2, 3, 1], [])]),
                               topic("logs", [part(0, 2, [2], [2])])],
                    "authorized_operations": None}
        if key == 46:
            return {"throttle_time_ms": 0, "error_code": 0, "error_message": None,
                    "topics": [{"name": "orders", "partitions": [{"partition_index": 1, "replicas": [2, 3, 1],
                                                                  "adding_replicas": [1], "removing_replicas": []}]}]}
        if key == 32:
            results = []
            for res in req["resources"]:
                name = res["resource_name"]
                values = {("orders", "min.insync.replicas"): ("2", 1), ("logs", "min.insync.replicas"): ("1", 5),
                          ("orders", "leader.replication.throttled.replicas"): ("*", 1),
                          ("1", "leader.replication.throttled.rate"): ("1000", 2),
                          ("2", "leader.replication.throttled.rate"): ("1000", 3)}
                configs = [{"name": k, "value": values[(name, k)][0], "read_only": False,
                            "config_source": values[(name, k)][1], "is_sensitive": False, "synonyms": [],
                            "config_type": 3, "documentation": None}
                           for k in res["configuration_keys"] if (name, k) in values]
                results.append({"error_code": 0, "error_message": None, "resource_type": res["resource_type"],
                                "resource_name": name, "configs": configs})
            return {"throttle_time_ms": 0, "results": results}
        if key == 55:
            voter = {"replica_directory_id": uuid.UUID(DIR_ID), "log_end_offset": 50, "last_fetch_timestamp": 1000,
                     "last_caught_up_timestamp": 990}
            partition = {"partition_index": 0, "error_code": 0, "error_message": None, "leader_id": 102,
                         "leader_epoch": 7, "high_watermark": 50,
                         "current_voters": [{**voter, "replica_id": r} for r in (101, 102, 103)],
                         "observers": [{**voter, "replica_id": 1, "last_caught_up_timestamp": -1}]}
            return {"error_code": 0, "error_message": None,
                    "topics": [{"topic_name": "__cluster_metadata", "partitions": [partition]}],
                    "nodes": [{"node_id": 102,
                               "listeners": [{"name": "CONTROLLER", "host": "10.0.0.2", "port": 9093}]}]}
        raise AssertionError(key)

    broker = FakeBroker(answer)
    return broker


KAFKA_44 = {18: 4, 3: 13, 32: 4, 60: 2, 46: 0, 55: 2}
KAFKA_39 = {18: 3, 3: 12, 32: 4, 60: 1, 46: 0, 55: 2}


@pytest.fixture
def kafka44() -> Iterator[FakeBroker]:
    b = cluster(KAFKA_44)
    yield b
    b.close()


def test_the_whole_cluster_view_is_read_as_the_broker_sent_it(kafka44: FakeBroker) -> None:
    reader = kraft.SessionReader(Endpoint((kafka44.address,)), Endpoint(("127.0.0.1:1",)), timeout=2)
    try:
        st = reader.read()
    finally:
        reader.close()
    assert st.kafka_reachable, st.kafka_error
    assert st.cluster_id == "abcdefghijklmnopqrstuv"
    assert st.broker_ids == (1, 2, 3) and st.fenced_brokers == (3,)
    assert [(p.topic, p.partition, p.replicas, p.isr, p.leader, p.reassigning) for p in st.partitions] == [
        ("logs", 0, (2,), (2,), 2, False), ("orders", 0, (1, 2, 3), (1, 2), 1, False),
        ("orders", 1, (2, 3, 1), (), None, True)]
    assert st.topic_min_isr == {"orders": 2}  # the topic's own override, not the default of `logs`
    assert st.throttled_topics == ("orders",)
    assert st.throttled_brokers == (1,)  # broker 2's rate is the cluster default, broker 3 is fenced
    assert st.features == {"metadata.version": 33, "kraft.version": 1}
    assert st.supported_features == {"metadata.version": (7, 33), "kraft.version": (0, 1)}  # asked in v4
    # the controllers did not answer: the quorum came through the broker
    assert st.quorum is not None and st.quorum.leader_id == 102 and st.quorum.voter_ids == (101, 102, 103)
    assert st.quorum.endpoints == {102: "10.0.0.2:9093"}
    asked = {(k, v) for k, v, _ in kafka44.requests}
    assert {(18, 3), (18, 4), (60, 2), (3, 12), (46, 0), (32, 4), (55, 2)} <= asked
    by_key = {k: r for k, _, r in kafka44.requests}
    assert by_key[60]["include_fenced_brokers"] is True and by_key[3]["topics"] is None
    broker_configs = [r for k, _, r in kafka44.requests if k == 32 and r["resources"][0]["resource_type"] == 4]
    assert sorted(r["resources"][0]["resource_name"] for r in broker_configs) == ["1", "2"]  # not the fenced one


def test_an_older_broker_is_asked_in_the_versions_it_speaks() -> None:
    b = cluster(KAFKA_39)
    try:
        st = kraft.read_cluster(Endpoint((b.address,)), Endpoint(("127.0.0.1:1",)), timeout=2)
    finally:
        b.close()
    assert st.kafka_reachable, st.kafka_error
    assert st.broker_ids == (1, 2) and st.fenced_brokers == ()  # DescribeCluster v1 lists no fenced broker
    assert (60, 1) in {(k, v) for k, v, _ in b.requests}
    assert not any(k == 18 and v == 4 for k, v, _ in b.requests)
    assert st.supported_features == {"metadata.version": (7, 33)}


def test_an_error_in_an_answer_is_reported_by_name() -> None:
    b = cluster(KAFKA_44, fail={60: 31})
    try:
        st = kraft.read_cluster(Endpoint((b.address,)), Endpoint(("127.0.0.1:1",)), timeout=2)
    finally:
        b.close()
    assert not st.kafka_reachable
    assert "DescribeCluster: CLUSTER_AUTHORIZATION_FAILED" in (st.kafka_error or "")


def test_describe_quorum_straight_from_a_controller(kafka44: FakeBroker) -> None:
    q = kraft.describe_quorum(["127.0.0.1:1", kafka44.address], timeout=2)
    assert q.leader_id == 102 and q.leader_epoch == 7 and q.high_watermark == 50
    assert [m.last_caught_up_ms for m in q.voters] == [990, 990, 990] and q.observers[0].last_caught_up_ms is None
    assert q.voters[0].directory_id == kraft.directory_id_b64(DIR_ID)
    (req,) = [r for k, _, r in kafka44.requests if k == 55]
    assert req["topics"][0]["topic_name"] == "__cluster_metadata"


@pytest.mark.parametrize(("broker", "controller", "seen"), [(0, 1, 1), (1, 0, 1), (1, 1, 1), (0, 0, None)])
def test_kraft_version_is_the_quorum_leaders_when_a_broker_has_not_read_it(
        broker: int, controller: int, seen: int | None) -> None:
    """kraft.version lives in the quorum's own log: a broker's ApiVersions answer can stay behind the
    leading controller's (after a create whose first leader lost its epoch, one broker answered 0
    until it restarted); a controller older than Kafka 4.1 answers 0 whatever the level
    (KAFKA-18920), then the broker's level stands."""
    b, c = cluster(KAFKA_44, kraft_version=broker), cluster(KAFKA_44, kraft_version=controller)
    try:
        st = kraft.read_cluster(Endpoint((b.address,)), Endpoint((c.address,)), timeout=2)
    finally:
        b.close()
        c.close()
    assert st.kafka_reachable, st.kafka_error
    assert st.features.get("kraft.version") == seen and st.features["metadata.version"] == 33
    assert st.quorum is not None and st.quorum.kraft_version == (controller or None)
    assert not [k for k, _, _ in b.requests if k == 55]  # the quorum came from the controller


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16384, 2**31 - 1])
def test_unsigned_varints_round_trip(value: int) -> None:
    assert wire.In(wire.Out().uvarint(value).bytes()).uvarint() == value


def test_a_truncated_answer_is_an_error_not_a_hang() -> None:
    with pytest.raises(wire.WireError, match="truncated"):
        wire.In(b"\x05\x00\x00\x00\x01\x00").compact_array(wire.In.int32)  # 4 ints, 1.5 sent
