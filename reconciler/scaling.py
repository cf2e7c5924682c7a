"""Horizontal scaling as data movement: which replicas a broker-set change must move. Pure.

Adding brokers is only useful once they hold data, and removing one is only safe once it holds
none, so a change of the broker set is planned together with a partition reassignment:

* scale-out: a broker of the spec that holds no replica while the cluster has partitions (just
  added, or added by an apply that stopped before moving data) -> rebalance onto it;
* scale-in: a broker that runs (or is registered) but is no longer in the spec and still holds
  replicas -> drain it: every replica (and so every leadership) moves to the remaining brokers.

The moves come from `placement.plan_reassignment`: fewest replica moves, rack spread kept, and on
scale-out only towards the new brokers. When the remaining brokers cannot hold a topic's
replication factor or rack spread, the planner's error names the topics and the plan is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.files import SERVER_PROPERTIES, parse_properties
from reconciler.observe.model import ObservedCluster
from reconciler.spec import ClusterSpec

if TYPE_CHECKING:  # the planner loads only when data may move (not for the usual no-op plan)
    from reconciler.placement import Proposal


class ScaleRefused(Exception):
    """The remaining brokers cannot hold the partitions; the message names the topics."""


@dataclass(frozen=True)
class ScalePlan:
    proposal: Proposal
    added: tuple[int, ...]  # spec brokers that hold nothing yet
    removed: tuple[int, ...]  # brokers leaving the spec that still hold replicas
    before: dict[str, object]  # balance_report over the brokers that remain
    after: dict[str, object]

    @property
    def reason(self) -> str:
        parts = []
        if self.added:
            parts.append(f"broker(s) {', '.join(map(str, self.added))} hold no replicas yet")
        if self.removed:
            parts.append(f"broker(s) {', '.join(map(str, self.removed))} leave the spec and must be drained")
        return "; ".join(parts) or "rebalance: replicas and leaders even out over the spec's brokers"


def leaving_brokers(spec: ClusterSpec, observed: ObservedCluster) -> dict[int, str | None]:
    """Brokers found on the hosts (server.properties) or registered in ZooKeeper that the spec no
    longer has, with the rack they were configured with (None when unknown)."""
    wanted = {b.id for b in spec.brokers}
    out: dict[int, str | None] = {}
    for facts in observed.hosts.values():
        seen = facts.files.get(SERVER_PROPERTIES)
        if not seen or not seen.content:
            continue
        props = parse_properties(seen.content)
        raw = props.get("broker.id") or (props.get("node.id", "") if "broker" in props.get("process.roles", "")
                                         else "")
        if raw.isdigit() and int(raw) not in wanted:
            out[int(raw)] = props.get("broker.rack")
    for bid in observed.cluster.broker_ids:
        if bid not in wanted:
            out.setdefault(bid, None)
    return out


def brokers_to_balance(spec: ClusterSpec, observed: ObservedCluster
                       ) -> tuple[tuple[int, ...], dict[int, str | None]]:
    """(spec brokers holding no replica, {broker leaving the spec that still holds replicas: its
    rack}) while the cluster has partitions: the trigger for moving data. Cheap; no planner loaded."""
    held = {r for p in observed.cluster.partitions for r in p.replicas}
    if not held:
        return (), {}
    removed = {b: rack for b, rack in sorted(leaving_brokers(spec, observed).items()) if b in held}
    added = tuple(sorted(b.id for b in spec.brokers if b.id not in held))
    return added, removed


def plan_scaling(spec: ClusterSpec, observed: ObservedCluster,
                 sizes: dict[tuple[str, int], int] | None = None) -> ScalePlan | None:
    """The reassignment a broker-set change needs, or None when no data has to move.

    Raises ScaleRefused (topics named) when the remaining brokers cannot hold the partitions.
    """
    added, leaving = brokers_to_balance(spec, observed)
    if not leaving and not added:
        return None
    from reconciler.placement import BrokerInfo, PlacementError, balance_report, plan_reassignment

    partitions = observed.cluster.partitions
    removed = tuple(leaving)
    brokers = [BrokerInfo(id=b.id, rack=b.rack) for b in spec.brokers]
    brokers += [BrokerInfo(id=b, rack=rack) for b, rack in leaving.items()]
    try:
        proposal = plan_reassignment(brokers, partitions, sizes or {}, remove=removed)
    except PlacementError as e:
        if removed:
            raise ScaleRefused(f"cannot remove broker(s) {', '.join(map(str, removed))}: {e}") from None
        raise ScaleRefused(str(e)) from None
    stuck = sorted({b for reps in proposal.target.values() for b in reps if b in removed})
    if stuck:
        raise ScaleRefused(f"cannot drain broker(s) {', '.join(map(str, stuck))}: "
                             + "; ".join(proposal.notes))
    if not proposal.moves:
        return None
    remaining = [b for b in brokers if b.id not in removed]
    current = {(p.topic, p.partition): p.replicas for p in partitions}
    return ScalePlan(proposal=proposal, added=added, removed=removed,
                     before=balance_report(brokers, current), after=balance_report(remaining, proposal.target))
