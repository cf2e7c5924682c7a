"""Availability questions about restarting brokers, answered from an observed snapshot. Pure.

A partition accepts acks=all writes while its ISR holds at least min.insync.replicas members
(the topic's override, else the cluster's). Taking broker B down removes B from the ISR of every
partition it replicates, so before B stops:

1. `unavailable`: partitions whose ISR without B would fall below min.insync.replicas — stopping B
   now would reject acks=all writes to them. A roll must not proceed (plan refuses, apply waits).
2. `at_min`: partitions whose ISR without B would equal min.insync.replicas — still writable, but
   one more failure during the restart would make them unavailable. Shown, not refused.
3. `rf_at_or_below_min_isr`: topics whose replication factor is <= min.insync.replicas; they can
   never survive the loss of one replica, so any restart of a broker holding them makes them
   unavailable. Reported separately so the operator sees it is the topic, not the roll.

The same check over a set of brokers (a rack) answers whether they may restart together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.observe.model import ClusterState, PartitionState, Quorum, QuorumMember


@dataclass(frozen=True)
class PartitionRisk:
    topic: str
    partition: int
    isr_after: int
    min_isr: int
    replicas: int

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

    def describe(self) -> str:
        return f"{self.name} (ISR {self.isr_after} of {self.replicas} left, min.insync.replicas {self.min_isr})"


@dataclass(frozen=True)
class Verdict:
    brokers: tuple[int, ...]
    unavailable: tuple[PartitionRisk, ...] = ()
    at_min: tuple[PartitionRisk, ...] = ()
    rf_at_or_below_min_isr: tuple[str, ...] = ()
    partitions_checked: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Restarting these brokers keeps every partition writable with acks=all."""
        return not self.unavailable

    def summary(self) -> str:
        who = "broker " + ",".join(str(b) for b in self.brokers)
        if not self.partitions_checked:
            return f"{who}: holds no replicas"
        if self.unavailable:
            names = ", ".join(r.describe() for r in self.unavailable[:6])
            more = f" and {len(self.unavailable) - 6} more" if len(self.unavailable) > 6 else ""
            return (f"{who}: stopping it makes {len(self.unavailable)} partition(s) unavailable "
                    f"for acks=all writes: {names}{more}")
        if self.at_min:
            return (f"{who}: safe; {len(self.at_min)} of {self.partitions_checked} partition(s) "
                    "drop to exactly min.insync.replicas while it restarts")
        return f"{who}: safe; all {self.partitions_checked} partition(s) keep ISR above min.insync.replicas"


def min_isr_for(topic: str, cluster: ClusterState, default: int) -> int:
    return cluster.topic_min_isr.get(topic, default)


def can_restart(cluster: ClusterState, brokers: Iterable[int], default_min_isr: int) -> Verdict:
    """Would stopping `brokers` (together) keep every partition writable with acks=all?"""
    down = frozenset(brokers)
    unavailable: list[PartitionRisk] = []
    at_min: list[PartitionRisk] = []
    weak_topics: set[str] = set()
    checked = 0
    for p in cluster.partitions:
        if not down & set(p.replicas):
            continue
        checked += 1
        need = min_isr_for(p.topic, cluster, default_min_isr)
        if len(p.replicas) <= need:
            weak_topics.add(p.topic)
        risk = _risk(p, down, need)
        if risk.isr_after < need:
            unavailable.append(risk)
        elif risk.isr_after == need:
            at_min.append(risk)
    return Verdict(
        brokers=tuple(sorted(down)),
        unavailable=tuple(unavailable),
        at_min=tuple(at_min),
        rf_at_or_below_min_isr=tuple(sorted(weak_topics)),
        partitions_checked=checked,
    )


def _risk(p: PartitionState, down: frozenset[int], need: int) -> PartitionRisk:
    isr_after = len(set(p.isr) - down)
    return PartitionRisk(topic=p.topic, partition=p.partition, isr_after=isr_after, min_isr=need,
                         replicas=len(p.replicas))


def restart_order(broker_ids: Iterable[int], controller_id: int | None) -> list[int]:
    """Brokers by id, the active controller last (one controller move instead of one per restart)."""
    ids = sorted(set(broker_ids))
    if controller_id in ids:
        ids.remove(controller_id)
        ids.append(controller_id)
    return ids


def rack_groups(broker_racks: dict[int, str | None], cluster: ClusterState, default_min_isr: int
                ) -> list[tuple[int, ...]] | None:
    """Rack-at-a-time groups when each rack can go down together without losing availability.

    Returns None when any rack's brokers together would make a partition unavailable (then the
    roll is one broker at a time).
    """
    racks: dict[str, list[int]] = {}
    for b, r in sorted(broker_racks.items()):
        if r is None:
            return None
        racks.setdefault(r, []).append(b)
    groups = [tuple(v) for _, v in sorted(racks.items())]
    if all(can_restart(cluster, g, default_min_isr).ok for g in groups):
        return groups
    return None


@dataclass(frozen=True)
class QuorumVerdict:
    """Whether the KRaft metadata quorum keeps a caught-up majority while one voter restarts."""

    node_id: int
    ok: bool
    voters: tuple[int, ...]
    caught_up: tuple[int, ...]  # the other voters that are the leader or caught up with it
    needed: int
    leader_id: int | None
    reason: str = ""

    def summary(self) -> str:
        who = f"controller {self.node_id}"
        if self.reason:
            return f"{who}: {self.reason}"
        others = len(self.voters) - (self.node_id in self.voters)
        state = "safe" if self.ok else "unsafe"
        return (f"{who}: {state}; {len(self.caught_up)} of the other {others} voter(s) are the leader or follow "
                f"it ({', '.join(map(str, self.caught_up)) or 'none'}); the quorum needs {self.needed} "
                f"of {len(self.voters)} (KafkaQuorumCheck)")


def can_restart_voter(quorum: Quorum | None, node_id: int, fetch_timeout_ms: int | None = 2000,
                      down: frozenset[int] = frozenset()) -> QuorumVerdict:
    """Strimzi's KafkaQuorumCheck: restarting voter `node_id` keeps the quorum when, among the other
    voters, those that are the leader or whose last-caught-up time is within
    controller.quorum.fetch.timeout.ms of the leader's number at least (N + 2) // 2 (a majority of
    the N voters without counting the one that goes down). A node that is not a voter (an
    observer) never affects the quorum. `down`: voters known to be stopped (their service is not
    running), which never count, however recent their last fetch.

    `fetch_timeout_ms=None` is the plan's form of the check: a running voter that has fetched from
    the leader counts even if it trails it right now (a follower that just restarted catches up in
    seconds); the apply checks the strict form on live state before each stop, and waits."""
    if quorum is None or not quorum.voters:
        return QuorumVerdict(node_id, False, (), (), 0, None, reason="the quorum cannot be read")
    voters = quorum.voter_ids
    needed = (len(voters) + 2) // 2
    if node_id not in voters:
        return QuorumVerdict(node_id, True, voters, (), needed, quorum.leader_id,
                             reason="safe; not a voter (an observer does not affect the quorum)")
    leader = next((v for v in quorum.voters if v.node_id == quorum.leader_id), None)
    if leader is None or leader.last_caught_up_ms is None:
        return QuorumVerdict(node_id, False, voters, (), needed, quorum.leader_id,
                             reason="unsafe; the quorum has no leader with a last-caught-up time")
    leader_ms: int = leader.last_caught_up_ms  # not None (checked above); a closure cannot see that narrowing

    def caught_up(v: QuorumMember) -> bool:
        if v.node_id == leader.node_id:
            return True
        if v.last_caught_up_ms is None:
            return False
        return fetch_timeout_ms is None or leader_ms - v.last_caught_up_ms < fetch_timeout_ms

    good = tuple(v.node_id for v in quorum.voters if v.node_id != node_id and v.node_id not in down and caught_up(v))
    return QuorumVerdict(node_id, len(good) >= needed, voters, good, needed, quorum.leader_id)


def can_restart_zookeeper(modes: dict[str, str], host: str, ensemble: int) -> QuorumVerdict:
    """Restarting the ZooKeeper server on `host` keeps the ensemble's quorum when the other
    servers that serve (leader or follower) are a majority of the ensemble."""
    serving = tuple(sorted(h for h, m in modes.items() if h != host and m in ("leader", "follower")))
    needed = ensemble // 2 + 1
    if ensemble <= 1:
        return QuorumVerdict(0, False, (), (), needed, None,
                             reason="unsafe; a single ZooKeeper server has no quorum while it restarts")
    ok = len(serving) >= needed
    text = (f"{'safe' if ok else 'unsafe'}; {len(serving)} of the other {ensemble - 1} server(s) serve "
            f"({', '.join(serving) or 'none'}); the ensemble needs {needed} of {ensemble}")
    return QuorumVerdict(0, ok, (), (), needed, None, reason=text)
