"""The roll: in which order restarts run, what proves each one safe, and what apply checks. Pure.

The algorithm, as numbered steps (plan/build.py chains the restarts in this order; apply/executor.py
runs them with the gates of apply/gates.py):

1. The metadata quorum first: ZooKeeper servers, followers before the leader (each server's
   observed mode); KRaft controllers, followers before the active controller (DescribeQuorum).
2. Then the brokers by id, the active controller last (ZooKeeper mode: the controller broker;
   KRaft combined nodes: the quorum's leader), so leadership moves once per roll, not once per
   restart.
3. One restart at a time: each restart waits for the previous one's post-start gates. With
   --roll-by-rack, brokers go one rack at a time (the controller's rack last), only when the plan
   proves every rack can be down together; otherwise one at a time.
4. Each restart carries its proof in the plan, from the observed snapshot: a broker keeps every
   partition it replicates at ISR >= min.insync.replicas without it (`safety.can_restart`); a KRaft
   voter leaves a caught-up majority (`safety.can_restart_voter`, Strimzi's KafkaQuorumCheck; at
   plan time a running voter counts, a stopped one never does); a ZooKeeper server leaves a
   serving majority. A restart whose proof fails is refused unless --allow-unavailable.
5. Before each stop, apply checks the same question on live state, waiting (bounded) and never
   forcing: min ISR for a broker, the strict KafkaQuorumCheck for a voter, ZooKeeper's quorum.
6. After each start: a broker is registered (KRaft: and unfenced), its listener accepts and its
   replicas are back in the ISR; a controller is caught up with the quorum's leader; ZooKeeper
   serves with one leader.
7. ZooKeeper-mode upgrades roll twice: the whole first roll with inter.broker.protocol.version
   held at the old release, then the final files and a second roll in the same order. A KRaft
   upgrade rolls once and then finalizes metadata.version (plan/build.py rule 6).

Guarantees: the active controller restarts last; no restart takes a partition below
min.insync.replicas or the quorum below a majority; every node restarts once per roll.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.diff import Change, ServiceChange
from reconciler.observe.model import ObservedCluster
from reconciler.plan.model import Step
from reconciler.safety import can_restart, can_restart_voter, can_restart_zookeeper, rack_groups, restart_order

QUORUM = "the metadata quorum"  # what `Step.unavailable` names when a quorum proof fails


def order(changes: Iterable[ServiceChange], observed: ObservedCluster) -> list[ServiceChange]:
    """Steps 1 and 2: the restart order."""
    changes = list(changes)
    modes = observed.cluster.zookeeper_modes
    zk = sorted((c for c in changes if c.service == "zookeeper"),
                key=lambda c: (modes.get(c.host) == "leader", int(c.key)))
    leader = observed.cluster.quorum.leader_id if observed.cluster.quorum else None
    ctrl = sorted((c for c in changes if c.service == "kafka-controller"),
                  key=lambda c: (int(c.key) == leader, int(c.key)))
    brokers = {int(c.key): c for c in changes if c.service == "kafka"}
    return zk + ctrl + [brokers[i] for i in restart_order(brokers, observed.cluster.controller_id)]


def down_voters(changes: Iterable[Change]) -> frozenset[int]:
    """Voters whose service is not running now (stopped by hand, crashed): never part of a majority."""
    return frozenset(int(c.key) for c in changes
                     if isinstance(c, ServiceChange) and c.voter and c.start and c.key.isdigit())


def with_proof(step: Step, c: ServiceChange, observed: ObservedCluster, default_min_isr: int,
               down: frozenset[int] = frozenset()) -> Step:
    """Step 4: attach the availability proof to a restart."""
    node = int(c.key)
    texts: list[str] = []
    unavailable: list[str] = []
    if c.service == "zookeeper":
        modes = observed.cluster.zookeeper_modes
        z = can_restart_zookeeper(modes, c.host, max(len(modes), 1))
        return step.model_copy(update={"availability": f"zookeeper on {c.host}: {z.reason}",
                                       "unavailable": () if z.ok else (QUORUM,)})
    if c.service == "kafka":
        v = can_restart(observed.cluster, [node], default_min_isr)
        texts.append(v.summary())
        if v.rf_at_or_below_min_isr:
            texts[-1] += ("; topics whose replication factor is <= min.insync.replicas (unavailable during any "
                          f"restart of their brokers): {', '.join(v.rf_at_or_below_min_isr)}")
        unavailable += [r.name for r in v.unavailable]
    if c.voter:
        q = can_restart_voter(observed.cluster.quorum, node, fetch_timeout_ms=None, down=down)
        texts.append(q.summary())
        if not q.ok:
            unavailable.append(QUORUM)
    return step.model_copy(update={"availability": "; ".join(texts), "unavailable": tuple(unavailable)})


def rack_stages(ordered: list[ServiceChange], observed: ObservedCluster, default_min_isr: int,
                broker_racks: dict[int, str | None]) -> list[list[str]] | None:
    """Step 3's rack form: broker restarts grouped by rack (the controller's rack last), or None
    when a rack cannot go down together without making a partition unavailable."""
    brokers = [c for c in ordered if c.service == "kafka" and c.key.isdigit()]
    if not brokers or any(c.ibp_pin for c in brokers):
        return None
    racks = {int(c.key): broker_racks.get(int(c.key)) for c in brokers}
    if rack_groups(racks, observed.cluster, default_min_isr) is None:
        return None
    names: list[str | None] = []
    for c in brokers:  # keeps the safe order: the controller's rack comes last
        r = racks[int(c.key)]
        if r in names:
            names.remove(r)
        names.append(r)
    return [[c.address for c in brokers if racks[int(c.key)] == r] for r in names]


def rack_proof(step: Step, members: list[str], observed: ObservedCluster, default_min_isr: int) -> Step:
    """The proof of a rack's brokers restarting together."""
    ids = [int(a.split(".", 1)[1]) for a in members]
    v = can_restart(observed.cluster, ids, default_min_isr)
    return step.model_copy(update={
        "availability": f"rack of brokers {','.join(map(str, ids))} together: " + v.summary(),
        "unavailable": tuple(r.name for r in v.unavailable), "restart_group": tuple(ids)})
