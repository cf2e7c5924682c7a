"""Topic/partition assignments from the Kafka Admin API (kafka-python), with short timeouts.

Only tried when ZooKeeper lists at least one registered broker, bootstrapping from the registered
endpoints, so observing a cluster whose brokers are not up yet costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from .model import ClusterState, PartitionState

if TYPE_CHECKING:  # kafka-python costs ~0.1 s to import: only load it when a broker is there
    from kafka.admin import KafkaAdminClient

log = logging.getLogger(__name__)


class KafkaUnreachable(Exception):
    """The Admin API could not be used; the message is the reason shown to the operator."""


def bootstrap_from(cluster: ClusterState) -> list[str]:
    """host:port of every registered PLAINTEXT listener (the only one observe speaks)."""
    out: list[str] = []
    for bid in sorted(cluster.broker_endpoints):
        for ep in cluster.broker_endpoints[bid].split(","):
            proto, sep, addr = ep.partition("://")
            if sep and proto.upper() == "PLAINTEXT" and addr and addr not in out:
                out.append(addr)
    return out


def _close(admin: KafkaAdminClient) -> None:
    """Close even a half-constructed client: kafka-python starts its IO thread before bootstrapping
    and leaks it when bootstrap fails in __init__."""
    try:
        if getattr(admin, "_closed", None) is False:
            admin.close()
            return
        for attr, method in (("_client", "close"), ("_net", "stop")):
            obj = getattr(admin, attr, None)
            if obj is not None:
                getattr(obj, method)()
    except Exception:  # pragma: no cover - best effort cleanup
        log.debug("admin client cleanup failed", exc_info=True)


def _get(d: dict, *keys: str, default: object = None) -> object:
    for k in keys:
        if k in d:
            return d[k]
    return default


def to_partitions(topics: list[dict]) -> tuple[PartitionState, ...]:
    """describe_topics() dicts (new `partition_index` or old `partition` field names) -> model."""
    out: list[PartitionState] = []
    for t in topics:
        name = _get(t, "name", "topic")
        for p in t.get("partitions") or []:
            # kafka-python decodes these fields as int, list[int] and int (or None)
            leader = cast("int | None", _get(p, "leader_id", "leader", default=-1))
            out.append(
                PartitionState(
                    topic=str(name),
                    partition=int(cast(int, _get(p, "partition_index", "partition"))),
                    replicas=tuple(cast("Iterable[int]", _get(p, "replica_nodes", "replicas", default=()) or ())),
                    isr=tuple(cast("Iterable[int]", _get(p, "isr_nodes", "isr", default=()) or ())),
                    leader=None if leader is None or int(leader) < 0 else int(leader),
                )
            )
    return tuple(sorted(out, key=lambda p: (p.topic, p.partition)))


def read_partitions(bootstrap: list[str], timeout: float = 3.0) -> tuple[PartitionState, ...]:
    """All topics (internal ones included) with replicas, ISR and leader. Raises KafkaUnreachable."""
    ms = int(timeout * 1000)
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        admin.__init__(
            bootstrap_servers=bootstrap,
            client_id="kafkaform-observe",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            reconnect_backoff_max_ms=min(ms, 1000),
        )
        return to_partitions(admin.describe_topics())
    except Exception as e:
        raise KafkaUnreachable(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e
    finally:
        _close(admin)


def observe_kafka(cluster: ClusterState, timeout: float = 3.0) -> ClusterState:
    """Add partitions to a ZooKeeper-derived ClusterState; never raises."""
    if not cluster.broker_ids:
        reason = "no brokers registered in ZooKeeper"
        if not cluster.zookeeper_reachable:
            reason = "not tried: ZooKeeper unreachable"
        return cluster.model_copy(update={"kafka_reachable": False, "kafka_error": reason})
    bootstrap = bootstrap_from(cluster)
    if not bootstrap:
        return cluster.model_copy(
            update={"kafka_reachable": False, "kafka_error": "no PLAINTEXT listener registered"}
        )
    try:
        parts = read_partitions(bootstrap, timeout)
    except KafkaUnreachable as e:
        return cluster.model_copy(
            update={"kafka_reachable": False, "kafka_error": f"{','.join(bootstrap)}: {e}"}
        )
    return cluster.model_copy(update={"kafka_reachable": True, "kafka_error": None, "partitions": parts})
