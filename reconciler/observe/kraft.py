"""Cluster view of a KRaft cluster, all through the Kafka Admin API (kafka-python).

One read: DescribeCluster (brokers, fenced or not), DescribeQuorum (leader, epoch, voters and
observers with log end offsets and last-caught-up times), DescribeTopics (replicas, ISR,
leaders), ListPartitionReassignments, DescribeFeatures (finalized and supported levels) and
DescribeConfigs (topic min.insync.replicas overrides, replication throttles). A `SessionReader`
keeps one admin client for a whole apply (gates poll several times a second).

Nothing here raises to the caller: failures become `kafka_reachable=False` plus a reason.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import TYPE_CHECKING, Any

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
    return int(v) if isinstance(v, int) and v >= 0 else None  # type: ignore[arg-type]


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


def _admin(bootstrap: list[str], timeout: float) -> KafkaAdminClient:
    from kafka.admin import KafkaAdminClient

    ms = int(timeout * 1000)
    admin = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        admin.__init__(bootstrap_servers=bootstrap, client_id="kafkaform-observe", request_timeout_ms=ms,
                       bootstrap_timeout_ms=ms, reconnect_backoff_max_ms=min(ms, 1000))
    except Exception:
        _close(admin)
        raise
    return admin


def read_with(admin: KafkaAdminClient) -> ClusterState:
    """Everything the plan and the gates need, through one admin client. Raises on failure."""
    from kafka.admin import ConfigResource, ConfigResourceType

    desc = admin.describe_cluster()
    brokers = desc.get("brokers") or []
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


def read_cluster(bootstrap: list[str], timeout: float = 3.0) -> ClusterState:
    """One read with a client of its own; never raises."""
    admin = None
    try:
        admin = _admin(bootstrap, timeout)
        return read_with(admin)
    except Exception as e:
        return ClusterState(mode="kraft", kafka_error=_reason(e, bootstrap))
    finally:
        if admin is not None:
            _close(admin)


class SessionReader:
    """One admin client reused across many reads; reconnects after a failure; never raises."""

    def __init__(self, bootstrap: list[str], timeout: float = 3.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._admin: KafkaAdminClient | None = None

    def read(self) -> ClusterState:
        try:
            if self._admin is None:
                self._admin = _admin(self.bootstrap, self.timeout)
            return read_with(self._admin)
        except Exception as e:  # the caller's gate reports it and keeps polling
            self.close()
            return ClusterState(mode="kraft", kafka_error=_reason(e, self.bootstrap))

    def close(self) -> None:
        if self._admin is not None:
            _close(self._admin)
            self._admin = None
