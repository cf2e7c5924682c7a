"""Carry out a placement Proposal on a live cluster through the Admin API (Kafka 2.4+).

Batches of partitions are submitted with AlterPartitionReassignments, at most `per_broker`
partitions receiving data on any one broker at a time; replication is throttled while data
moves (leader/follower throttled rate on the brokers involved, throttled replicas on the
topics involved) and every throttle is removed afterwards, also when the move fails. A move that
only reorders replicas copies no data; its new leader is put in place by a preferred election.
Refuses to start while another reassignment is running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from reconciler.observe.connect import Endpoint

Progress = Callable[[str], None] | None


class ReassignError(Exception):
    pass


class MoveLike(Protocol):
    """A partition's new replica list: placement.Move (rebalance) or a plan's ReplicaMove (apply).

    Read-only members, so frozen dataclasses and frozen models satisfy it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def before(self) -> tuple[int, ...]: ...
    @property
    def after(self) -> tuple[int, ...]: ...
    @property
    def bytes(self) -> int: ...


@dataclass(frozen=True)
class ReassignResult:
    partitions: int
    bytes_moved: int
    seconds: float


def _admin(brokers: Endpoint):  # noqa: ANN202 - kafka-python type
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**brokers.kafka_kwargs(), client_id="kafkaform-reassign", request_timeout_ms=30_000)


def ongoing(brokers: Endpoint) -> dict[tuple[str, int], dict[str, list[int]]]:
    admin = _admin(brokers)
    try:
        raw = admin.list_partition_reassignments()
    finally:
        admin.close()
    return {(tp.topic, tp.partition): v for tp, v in raw.items()}


def partition_sizes(brokers: Endpoint) -> dict[tuple[str, int], int]:
    """Bytes of each partition (largest replica), from DescribeLogDirs on every broker."""
    admin = _admin(brokers)
    try:
        raw = admin.describe_log_dirs()
    finally:
        admin.close()
    sizes: dict[tuple[str, int], int] = {}
    # kafka-python decodes DescribeLogDirs as lists of results/topics/partitions with int fields
    for resp in raw if isinstance(raw, list) else [raw]:
        for d in cast("Iterable[object]", _get(resp, "results", "log_dirs") or []):
            for t in cast("Iterable[object]", _get(d, "topics") or []):
                name = _get(t, "name", "topic")
                for p in cast("Iterable[object]", _get(t, "partitions") or []):
                    key = (str(name), int(cast(int, _get(p, "partition_index", "partition"))))
                    sizes[key] = max(sizes.get(key, 0), int(cast(int, _get(p, "partition_size", "size") or 0)))
    return sizes


def _get(obj: object, *names: str) -> object:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return None


def _throttle_configs(moves: Sequence[MoveLike]) -> tuple[dict[str, dict[str, str]], set[int]]:
    """Topic throttled-replica lists (existing replicas lead, new ones follow) and brokers involved."""
    leader: dict[str, list[str]] = {}
    follower: dict[str, list[str]] = {}
    brokers: set[int] = set()
    for m in moves:
        added = [b for b in m.after if b not in m.before]
        leader.setdefault(m.topic, []).extend(f"{m.partition}:{b}" for b in m.before)
        follower.setdefault(m.topic, []).extend(f"{m.partition}:{b}" for b in added)
        brokers.update(m.before)
        brokers.update(added)
    topics = {t: {"leader.replication.throttled.replicas": ",".join(leader[t]),
                  "follower.replication.throttled.replicas": ",".join(follower.get(t, []))} for t in leader}
    return topics, brokers


def _alter(admin, resources: list) -> None:  # noqa: ANN001
    if resources:
        admin.alter_configs(resources, incremental=True, raise_on_unknown=False)


def execute(endpoint: Endpoint, moves: Sequence[MoveLike], *, throttle_bytes_per_s: int | None = 50 * 2**20,
            per_broker: int = 4, timeout_s: float = 3600, progress: Progress = None) -> ReassignResult:
    from kafka import TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType

    say = progress or (lambda _m: None)
    if ongoing(endpoint):
        raise ReassignError("another partition reassignment is running; wait for it or cancel it first")
    data_moves = [m for m in moves if set(m.after) != set(m.before)]
    total_bytes = sum(m.bytes for m in data_moves)
    admin = _admin(endpoint)
    t0 = time.monotonic()
    topic_cfg, brokers = _throttle_configs(data_moves)
    try:
        if throttle_bytes_per_s and data_moves:
            throttle = str(throttle_bytes_per_s)
            _alter(admin, [ConfigResource(ConfigResourceType.BROKER, str(b), configs={
                "leader.replication.throttled.rate": throttle, "follower.replication.throttled.rate": throttle})
                for b in sorted(brokers)])
            _alter(admin, [ConfigResource(ConfigResourceType.TOPIC, t, configs=c) for t, c in topic_cfg.items()])
            say(f"throttle {throttle_bytes_per_s / 2**20:.0f} MiB/s on brokers {sorted(brokers)}")
        pending = sorted(moves, key=lambda m: (m.topic, m.partition))
        done = 0
        moved = 0
        while pending:
            batch: list[MoveLike] = []
            load: dict[int, int] = {}
            for m in list(pending):
                added = [b for b in m.after if b not in m.before]
                if all(load.get(b, 0) < per_broker for b in added):
                    batch.append(m)
                    pending.remove(m)
                    for b in added:
                        load[b] = load.get(b, 0) + 1
            result = admin.alter_partition_reassignments(
                {TopicPartition(m.topic, m.partition): list(m.after) for m in batch})
            failed = {tp: e for tp, e in (result or {}).items() if e is not None}
            if failed:
                names = ", ".join(f"{tp.topic}-{tp.partition}" for tp in failed)
                raise ReassignError(f"reassignment refused for {names}: {next(iter(failed.values()))}")
            while True:
                running = ongoing(endpoint)
                left = [m for m in batch if (m.topic, m.partition) in running]
                if not left:
                    break
                if time.monotonic() - t0 > timeout_s:
                    raise ReassignError(f"reassignment not finished after {timeout_s:.0f}s: "
                                        f"{len(left)} partitions still moving")
                time.sleep(0.5)
            done += len(batch)
            moved += sum(m.bytes for m in batch if set(m.after) != set(m.before))
            elapsed = time.monotonic() - t0
            rate = moved / elapsed if elapsed > 0 else 0
            eta = (total_bytes - moved) / rate if rate > 0 else 0
            say(f"reassignment: {done}/{len(moves)} partitions, {moved / 2**20:.1f}/"
                f"{total_bytes / 2**20:.1f} MiB, {elapsed:.0f}s elapsed"
                + (f", ETA {eta:.0f}s" if pending and rate > 0 else ""))
        admin.elect_leaders(0, raise_errors=False)  # put the planned leaders (first replicas) in front
        return ReassignResult(partitions=done, bytes_moved=moved, seconds=time.monotonic() - t0)
    finally:
        try:
            if throttle_bytes_per_s and data_moves:
                _remove_throttles(admin, sorted(brokers), sorted(topic_cfg))
                say("throttles removed")
        finally:
            admin.close()


def _remove_throttles(admin, brokers: list[int], topics: list[str]) -> None:  # noqa: ANN001
    from kafka.admin import ConfigResource, ConfigResourceType

    _alter(admin, [ConfigResource(ConfigResourceType.BROKER, str(b), configs={
        "leader.replication.throttled.rate": ("DELETE", None),
        "follower.replication.throttled.rate": ("DELETE", None)}) for b in brokers])
    _alter(admin, [ConfigResource(ConfigResourceType.TOPIC, t, configs={
        "leader.replication.throttled.replicas": ("DELETE", None),
        "follower.replication.throttled.replicas": ("DELETE", None)}) for t in topics])


def remove_throttles(endpoint: Endpoint, brokers: list[int], topics: list[str]) -> None:
    """Delete replication throttles (e.g. left by a reassignment that was killed); refused while
    a reassignment runs, which still needs them."""
    running = ongoing(endpoint)
    if running:
        raise ReassignError(f"a partition reassignment is running ({len(running)} partitions); "
                            "its throttles stay until it ends")
    admin = _admin(endpoint)
    try:
        _remove_throttles(admin, brokers, topics)
    finally:
        admin.close()
