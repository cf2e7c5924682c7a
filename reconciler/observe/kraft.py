"""Cluster view of a KRaft cluster, all through the Kafka Admin API (kafka-python).

One read: DescribeQuorum (leader, epoch, voters and observers with log end offsets and
last-caught-up times) sent straight to the controllers (KIP-919: they answer it on the controller
listener, so the quorum is readable while no broker runs: a new cluster, a broken one), then from
the brokers DescribeCluster (brokers, fenced or not), DescribeTopics (replicas, ISR, leaders),
ListPartitionReassignments, DescribeFeatures (finalized and supported levels) and DescribeConfigs
(topic min.insync.replicas overrides, replication throttles). A `SessionReader` keeps one admin
client for a whole apply (gates poll several times a second).

Nothing here raises to the caller: failures become `kafka_reachable=False` plus a reason.
"""

from __future__ import annotations

import base64
import logging
import socket
import struct
import uuid
from typing import TYPE_CHECKING, Any

from .connect import ClientTls, Endpoint
from .kafka_admin import _close, to_partitions
from .model import ClusterState, Quorum, QuorumMember

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

log = logging.getLogger(__name__)
logging.getLogger("kafka").addHandler(logging.NullHandler())

TOPIC_THROTTLES = ("leader.replication.throttled.replicas", "follower.replication.throttled.replicas")
BROKER_THROTTLES = ("leader.replication.throttled.rate", "follower.replication.throttled.rate")


def directory_id_b64(value: str | None) -> str | None:
    """A directory id as meta.properties and Kafka's tools write it (base64url, 22 characters);
    kafka-python reports it as a UUID string."""
    if not value:
        return None
    try:
        raw = uuid.UUID(value).bytes
    except ValueError:
        return value
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _members(items: list[dict[str, Any]]) -> tuple[QuorumMember, ...]:
    out = []
    for v in items or []:
        out.append(QuorumMember(
            node_id=int(v["replica_id"]),
            directory_id=directory_id_b64(v.get("replica_directory_id")),
            log_end_offset=int(v.get("log_end_offset", -1)),
            last_caught_up_ms=_ms(v.get("last_caught_up_timestamp")),
            last_fetch_ms=_ms(v.get("last_fetch_timestamp")),
        ))
    return tuple(sorted(out, key=lambda m: m.node_id))


def _ms(v: object) -> int | None:
    return int(v) if isinstance(v, int) and v >= 0 else None


def to_quorum(doc: dict[str, Any]) -> Quorum:
    """DescribeQuorum response -> Quorum (the __cluster_metadata partition)."""
    part = doc["topics"][0]["partitions"][0]
    endpoints: dict[int, str] = {}
    for n in doc.get("nodes") or []:
        for lst in n.get("listeners") or []:
            endpoints.setdefault(int(n["node_id"]), f"{lst['host']}:{lst['port']}")
    leader = part.get("leader_id")
    return Quorum(
        kind="kraft",
        leader_id=int(leader) if leader is not None and int(leader) >= 0 else None,
        leader_epoch=part.get("leader_epoch"),
        high_watermark=part.get("high_watermark"),
        voters=_members(part.get("current_voters") or []),
        observers=_members(part.get("observers") or []),
        endpoints=endpoints,
    )


class QuorumUnreadable(Exception):
    pass


def _describe_quorum_at(endpoint: str, timeout: float, tls: ClientTls | None = None) -> dict[str, Any]:
    """One DescribeQuorum (v2) request to one controller over a plain (or TLS) socket."""
    from kafka.protocol.admin import DescribeQuorumRequest, DescribeQuorumResponse

    topic = DescribeQuorumRequest.TopicData
    req = DescribeQuorumRequest(version=2, topics=[topic(topic_name="__cluster_metadata",
                                                         partitions=[topic.PartitionData(partition_index=0)])])
    req.with_header(correlation_id=1, client_id="kafkaform-observe")
    host, _, port = endpoint.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        s = tls.context().wrap_socket(raw, server_hostname=host) if tls is not None else raw
        s.settimeout(timeout)
        s.sendall(req.encode(version=2, header=True, framed=True))
        head = _recv(s, 4)
        size = struct.unpack(">i", head)[0]
        if not 0 < size < 16 * 2**20:
            raise QuorumUnreadable(f"{endpoint}: bad response size {size}")
        return DescribeQuorumResponse.decode(_recv(s, size), version=2, header=True).to_dict()


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise QuorumUnreadable("connection closed mid-response")
        buf += chunk
    return buf


def describe_quorum(controllers: list[str], timeout: float = 3.0, tls: ClientTls | None = None) -> Quorum:
    """The quorum from whichever controller leads it (the others answer NOT_LEADER_OR_FOLLOWER).
    Raises QuorumUnreadable with each controller's answer when none leads."""
    seen: list[str] = []
    for endpoint in controllers:
        try:
            doc = _describe_quorum_at(endpoint, timeout, tls)
        except (OSError, QuorumUnreadable, ValueError) as e:
            seen.append(f"{endpoint}: {type(e).__name__}: {e}")
            continue
        parts = [p for t in doc.get("topics") or [] for p in t.get("partitions") or []]
        if doc.get("error_code") or not parts or parts[0].get("error_code"):
            code = doc.get("error_code") or (parts[0].get("error_code") if parts else "no partition")
            seen.append(f"{endpoint}: not the leader (error {code})")
            continue
        return to_quorum(doc)
    raise QuorumUnreadable("no controller answers as the quorum's leader (" + "; ".join(seen) + ")")


def _admin(brokers: Endpoint, timeout: float) -> KafkaAdminClient:
    from kafka.admin import KafkaAdminClient

    ms = int(timeout * 1000)
    admin = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        admin.__init__(**brokers.kafka_kwargs(), client_id="kafkaform-observe", request_timeout_ms=ms,
                       bootstrap_timeout_ms=ms, reconnect_backoff_max_ms=min(ms, 1000))
    except Exception:
        _close(admin)
        raise
    return admin


def read_with(admin: KafkaAdminClient, quorum: Quorum | None = None) -> ClusterState:
    """Everything the plan and the gates need, through one admin client (the quorum as read from
    the controllers, else through the brokers). Raises on failure."""
    from kafka.admin import ConfigResource, ConfigResourceType

    desc = admin.describe_cluster()
    brokers = desc.get("brokers") or []
    if quorum is None:
        quorum = to_quorum(admin.describe_metadata_quorum())
    parts = to_partitions(admin.describe_topics())
    moving = {(tp.topic, tp.partition) for tp in (admin.list_partition_reassignments() or {})}
    parts = tuple(p.model_copy(update={"reassigning": True}) if (p.topic, p.partition) in moving else p
                  for p in parts)
    feats = admin.describe_features()
    finalized = {k: int(v["finalized"][1]) for k, v in feats.items() if v.get("finalized")}
    supported = {k: (int(v["supported"][0]), int(v["supported"][1])) for k, v in feats.items() if v.get("supported")}
    topics = sorted({p.topic for p in parts})
    min_isr: dict[str, int] = {}
    throttled_topics: list[str] = []
    if topics:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t,
                                                     configs=["min.insync.replicas", *TOPIC_THROTTLES])
                                      for t in topics], config_filter="all")
        for t, cfg in (res.get("topic") or {}).items():
            v = cfg.get("min.insync.replicas") or {}
            if v.get("config_source") == "TOPIC_CONFIG" and str(v.get("value", "")).isdigit():
                min_isr[t] = int(v["value"])
            if any((cfg.get(k) or {}).get("value") for k in TOPIC_THROTTLES):
                throttled_topics.append(t)
    throttled_brokers: list[int] = []
    live = [b for b in brokers if not b.get("is_fenced")]
    if live:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(b["broker_id"]),
                                                     configs=list(BROKER_THROTTLES)) for b in live],
                                     config_filter="all")
        for bid, cfg in (res.get("broker") or {}).items():
            if any((cfg.get(k) or {}).get("config_source") == "DYNAMIC_BROKER_CONFIG" for k in BROKER_THROTTLES):
                throttled_brokers.append(int(bid))
    return ClusterState(
        mode="kraft",
        kafka_reachable=True,
        cluster_id=desc.get("cluster_id"),
        broker_ids=tuple(sorted(int(b["broker_id"]) for b in brokers)),
        fenced_brokers=tuple(sorted(int(b["broker_id"]) for b in brokers if b.get("is_fenced"))),
        broker_endpoints={int(b["broker_id"]): f"PLAINTEXT://{b['host']}:{b['port']}" for b in brokers},
        controller_id=quorum.leader_id,
        quorum=quorum,
        partitions=parts,
        topic_min_isr=min_isr,
        features=finalized,
        supported_features=supported,
        throttled_topics=tuple(sorted(throttled_topics)),
        throttled_brokers=tuple(sorted(throttled_brokers)),
    )


def _reason(e: Exception, bootstrap: list[str]) -> str:
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return f"{','.join(bootstrap)}: {text}"


def read_cluster(brokers: Endpoint, controllers: Endpoint, timeout: float = 3.0) -> ClusterState:
    """One read with a client of its own; never raises."""
    reader = SessionReader(brokers, controllers, timeout)
    try:
        return reader.read()
    finally:
        reader.close()


class SessionReader:
    """The quorum from the controllers, the rest through one admin client reused across many reads
    (it reconnects after a failure); never raises. A cluster whose brokers do not answer still
    shows its quorum (kafka_reachable False)."""

    def __init__(self, brokers: Endpoint, controllers: Endpoint, timeout: float = 3.0) -> None:
        self.brokers = brokers
        self.bootstrap = list(brokers.addresses)
        self.controllers = list(controllers.addresses)
        self._controller_tls = controllers.tls
        self.timeout = timeout
        self._admin: KafkaAdminClient | None = None

    def _quorum(self) -> tuple[Quorum | None, str | None]:
        try:
            q = describe_quorum(self.controllers, self.timeout, self._controller_tls)
        except QuorumUnreadable as e:
            return None, str(e)
        leader = q.endpoints.get(q.leader_id) if q.leader_id is not None else None
        if leader in self.controllers:  # ask the leader first next time
            self.controllers.remove(leader)
            self.controllers.insert(0, leader)
        return q, None

    def read(self) -> ClusterState:
        quorum, quorum_error = self._quorum()
        try:
            if self._admin is None:
                self._admin = _admin(self.brokers, self.timeout)
            return read_with(self._admin, quorum)
        except Exception as e:  # the caller's gate reports it and keeps polling
            self.close()
            error = _reason(e, self.bootstrap) + (f"; quorum: {quorum_error}" if quorum_error else "")
            return ClusterState(mode="kraft", kafka_error=error, quorum=quorum,
                                controller_id=quorum.leader_id if quorum else None)

    def close(self) -> None:
        if self._admin is not None:
            _close(self._admin)
            self._admin = None
