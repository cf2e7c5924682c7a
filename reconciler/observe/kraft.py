"""Cluster view of a KRaft cluster, all through the Kafka protocol (`wire`, no kafka-python).

One read: DescribeQuorum (leader, epoch, voters and observers with log end offsets and
last-caught-up times) sent straight to the controllers (KIP-919: they answer it on the controller
listener, so the quorum is readable while no broker runs: a new cluster, a broken one), with the
leader's kraft.version from its ApiVersions (the level lives in the quorum's own log: a broker's
answer can lag), then from the brokers ApiVersions (finalized and supported feature levels),
DescribeCluster (brokers, fenced or not), Metadata (replicas, ISR, leaders), ListPartitionReassignments
and DescribeConfigs (topic min.insync.replicas overrides, replication throttles; a broker's own configs
from that broker).
A `SessionReader` keeps its connections for a whole apply (gates poll several times a second).

Nothing here raises to the caller: failures become `kafka_reachable=False` plus a reason.
"""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import Callable
from typing import Any

from . import wire
from .connect import ClientTls, Endpoint
from .kafka_admin import to_partitions
from .model import ClusterState, Quorum, QuorumMember

TOPIC_THROTTLES = ("leader.replication.throttled.replicas", "follower.replication.throttled.replicas")
BROKER_THROTTLES = ("leader.replication.throttled.rate", "follower.replication.throttled.rate")
CLIENT_ID = "kafkaform-observe"


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
    listeners: dict[int, tuple[str, ...]] = {}
    for n in doc.get("nodes") or []:
        for lst in n.get("listeners") or []:
            endpoints.setdefault(int(n["node_id"]), f"{lst['host']}:{lst['port']}")
        listeners[int(n["node_id"])] = tuple(lst["name"] for lst in n.get("listeners") or [])
    leader = part.get("leader_id")
    return Quorum(
        kind="kraft",
        leader_id=int(leader) if leader is not None and int(leader) >= 0 else None,
        leader_epoch=part.get("leader_epoch"),
        high_watermark=part.get("high_watermark"),
        voters=_members(part.get("current_voters") or []),
        observers=_members(part.get("observers") or []),
        endpoints=endpoints,
        listeners=listeners,
    )


class QuorumUnreadable(Exception):
    pass


class _NotLeading(Exception):
    """A controller answered DescribeQuorum with an error: it does not lead (the error code)."""


def _quorum_at(endpoint: str, timeout: float, tls: ssl.SSLContext | None) -> Quorum:
    """The quorum from one controller over a plain (or TLS) socket, with that leader's kraft.version
    (its ApiVersions, asked on the same connection; the quorum stands without it). Raises
    _NotLeading when the controller does not lead."""
    conn = wire.Connection(endpoint, timeout, tls, CLIENT_ID)
    try:
        doc = conn.describe_quorum()
        parts = [p for t in doc.get("topics") or [] for p in t.get("partitions") or []]
        if doc.get("error_code") or not parts or parts[0].get("error_code"):
            raise _NotLeading(doc.get("error_code") or (parts[0].get("error_code") if parts else "no partition"))
        q = to_quorum(doc)
        try:
            level = conn.api_versions()["finalized"].get("kraft.version", 0)
        except (OSError, wire.WireError, ValueError):
            return q
        return q.model_copy(update={"kraft_version": level}) if level >= 1 else q
    finally:
        conn.close()


def describe_quorum(controllers: list[str], timeout: float = 3.0,
                    tls: ClientTls | ssl.SSLContext | None = None) -> Quorum:
    """The quorum from whichever controller leads it (the others answer NOT_LEADER_OR_FOLLOWER).
    Raises QuorumUnreadable with each controller's answer when none leads."""
    seen: list[str] = []
    ctx = tls.context() if isinstance(tls, ClientTls) else tls
    for endpoint in controllers:
        try:
            return _quorum_at(endpoint, timeout, ctx)
        except _NotLeading as e:
            seen.append(f"{endpoint}: not the leader (error {e})")
        except (OSError, wire.WireError, ValueError) as e:
            seen.append(f"{endpoint}: {type(e).__name__}: {e}")
    raise QuorumUnreadable("no controller answers as the quorum's leader (" + "; ".join(seen) + ")")


Connect = Callable[[str], wire.Connection]


def read_from(conn: wire.Connection, connect: Connect, quorum: Quorum | None = None,
              timeout_ms: int = 3000) -> ClusterState:
    """Everything the plan and the gates need: through `conn` (any broker), a broker's own configs
    through `connect(its address)`; the quorum as read from the controllers, else through the
    broker. Raises on failure."""
    features = conn.api_versions()
    desc = conn.describe_cluster()
    brokers = desc["brokers"]
    if quorum is None:
        quorum = to_quorum(conn.describe_quorum())
    finalized = dict(features["finalized"])
    if quorum.kraft_version:  # the quorum's own level; a broker may not have read it yet
        finalized["kraft.version"] = max(finalized.get("kraft.version", 0), quorum.kraft_version)
    parts = to_partitions(conn.metadata())
    moving = set(conn.list_partition_reassignments(timeout_ms))
    parts = tuple(p.model_copy(update={"reassigning": True}) if (p.topic, p.partition) in moving else p
                  for p in parts)
    topics = sorted({p.topic for p in parts})
    min_isr: dict[str, int] = {}
    throttled_topics: list[str] = []
    if topics:
        for t, cfg in conn.describe_configs(wire.RESOURCE_TOPIC, topics,
                                            ["min.insync.replicas", *TOPIC_THROTTLES]).items():
            v = cfg.get("min.insync.replicas") or {}
            if v.get("config_source") == "DYNAMIC_TOPIC_CONFIG" and str(v.get("value", "")).isdigit():
                min_isr[t] = int(v["value"])
            if any((cfg.get(k) or {}).get("value") for k in TOPIC_THROTTLES):
                throttled_topics.append(t)
    throttled_brokers: list[int] = []
    for b in brokers:
        if b["is_fenced"]:
            continue
        bid = str(b["broker_id"])
        cfg = connect(f"{b['host']}:{b['port']}").describe_configs(wire.RESOURCE_BROKER, [bid],
                                                                  list(BROKER_THROTTLES)).get(bid, {})
        if any((cfg.get(k) or {}).get("config_source") == "DYNAMIC_BROKER_CONFIG" for k in BROKER_THROTTLES):
            throttled_brokers.append(int(bid))
    return ClusterState(
        mode="kraft",
        kafka_reachable=True,
        cluster_id=desc.get("cluster_id"),
        broker_ids=tuple(sorted(int(b["broker_id"]) for b in brokers)),
        fenced_brokers=tuple(sorted(int(b["broker_id"]) for b in brokers if b["is_fenced"])),
        broker_endpoints={int(b["broker_id"]): f"PLAINTEXT://{b['host']}:{b['port']}" for b in brokers},
        controller_id=quorum.leader_id,
        quorum=quorum,
        partitions=parts,
        topic_min_isr=min_isr,
        features=finalized,
        supported_features=features["supported"],
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
    """The quorum from the controllers, the rest through broker connections kept across many reads
    (all dropped and made again after a failure); never raises. A cluster whose brokers do not
    answer still shows its quorum (kafka_reachable False)."""

    def __init__(self, brokers: Endpoint, controllers: Endpoint, timeout: float = 3.0) -> None:
        self.bootstrap = list(brokers.addresses)
        self.controllers = list(controllers.addresses)
        self.timeout = timeout
        # TLS contexts made once per session (each loads the CA and kafkaform's certificate)
        self._broker_tls = brokers.tls.context() if brokers.tls else None
        self._controller_tls = controllers.tls.context() if controllers.tls else None
        self._conns: dict[str, wire.Connection] = {}

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

    def _connect(self, address: str) -> wire.Connection:
        conn = self._conns.get(address)
        if conn is None:
            conn = self._conns[address] = wire.Connection(address, self.timeout, self._broker_tls, CLIENT_ID)
        return conn

    def _any_broker(self) -> wire.Connection:
        for address in self._conns:  # one already open
            if address in self.bootstrap:
                return self._conns[address]
        errors = []
        for address in self.bootstrap:
            try:
                return self._connect(address)
            except (OSError, ValueError) as e:
                errors.append(f"{address}: {type(e).__name__}: {e}")
        raise wire.WireError("no broker answers (" + "; ".join(errors) + ")")

    def read(self) -> ClusterState:
        quorum, quorum_error = self._quorum()
        try:
            return read_from(self._any_broker(), self._connect, quorum, int(self.timeout * 1000))
        except Exception as e:  # the caller's gate reports it and keeps polling
            self.close()
            error = _reason(e, self.bootstrap) + (f"; quorum: {quorum_error}" if quorum_error else "")
            return ClusterState(mode="kraft", kafka_error=error, quorum=quorum,
                                controller_id=quorum.leader_id if quorum else None)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
