"""Partition reassignment planner at scale: 100 brokers, 100,000 partitions, RF 3, 3 racks.

The layout is what Kafka's own rack-aware assignment makes at topic creation (100 topics x 1,000
partitions, a different start broker per topic). Two plans are timed:

* scale-out 100 -> 110 brokers (10 new, empty brokers spread over the racks)
* scale-in 100 -> 90 brokers (`remove` the 10 highest ids)

Printed per plan: median seconds of `plan_reassignment` (goal <= 2 s), replica moves against the
lower bound, replicas/leaders per broker and racks per partition afterwards. Pure Python, no hosts,
no network; runs in well under a minute.

Usage: python3 bench/planner.py [--runs N] [--brokers 100] [--partitions 100000]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from _common import fmt, timed

from reconciler.observe.model import PartitionState
from reconciler.placement import BrokerInfo, Proposal, balance_report, plan_reassignment, rack_aware_assignment

RACKS = ("rack-a", "rack-b", "rack-c")


def brokers(n: int) -> list[BrokerInfo]:
    return [BrokerInfo(i, RACKS[(i - 1) % len(RACKS)]) for i in range(1, n + 1)]


def layout(bs: list[BrokerInfo], n_partitions: int, per_topic: int = 1000, rf: int = 3) -> list[PartitionState]:
    """Topics created one after another on `bs`, as Kafka would place them (fixed start per topic)."""
    parts: list[PartitionState] = []
    for t in range(n_partitions // per_topic):
        topic = f"topic-{t:03d}"
        for i, reps in enumerate(rack_aware_assignment(bs, per_topic, rf, start_index=(t * 7) % len(bs))):
            parts.append(PartitionState(topic=topic, partition=i, replicas=reps, isr=reps, leader=reps[0]))
    return parts


def describe(name: str, bs: list[BrokerInfo], median: float, samples: list[float], prop: Proposal,
             keep: set[int]) -> None:
    rep = balance_report([b for b in bs if b.id in keep], prop.target)
    print(f"{name}: {median:.2f} s median {fmt(samples)} (goal <= 2 s: {'met' if median <= 2 else 'MISSED'})")
    print(f"  replica moves {prop.replica_moves} vs lower bound {prop.lower_bound}"
          f" ({'= bound' if prop.replica_moves == prop.lower_bound else 'above bound'}),"
          f" {len(prop.moves)} partitions changed ({prop.reorders} reorder-only)")
    print(f"  replicas/broker {rep['replicas_min']}-{rep['replicas_max']},"
          f" leaders/broker {rep['leaders_min']}-{rep['leaders_max']},"
          f" racks/partition {rep['racks_per_partition']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--brokers", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=100_000)
    args = ap.parse_args()
    n = args.brokers
    t0 = time.perf_counter()
    old = brokers(n)
    parts = layout(old, args.partitions)
    print(f"layout: {n} brokers, {len(parts)} partitions x RF 3 over {len(RACKS)} racks "
          f"(built in {time.perf_counter() - t0:.1f} s)")

    grown = brokers(n + n // 10)
    med, samples, prop = timed(lambda: plan_reassignment(grown, parts), args.runs)
    describe(f"scale-out {n} -> {len(grown)}", grown, med, samples, prop, {b.id for b in grown})
    before = balance_report(old, {(p.topic, p.partition): p.replicas for p in parts})["replicas"]
    onto_old = Counter(b for m in prop.moves for b in m.added if b <= n)
    print(f"  replicas moved onto old brokers: {sum(onto_old.values())}"
          + "".join(f"; broker {b} (held {before[b]} before, Kafka's rack-aware layout left it short) +{k}"
                    for b, k in sorted(onto_old.items())))

    gone = set(range(n - n // 10 + 1, n + 1))
    med, samples, prop = timed(lambda: plan_reassignment(old, parts, remove=gone), args.runs)
    describe(f"scale-in {n} -> {n - len(gone)}", old, med, samples, prop, {b.id for b in old} - gone)
    left = sum(1 for reps in prop.target.values() for b in reps if b in gone)
    print(f"  replicas left on removed brokers: {left}")


if __name__ == "__main__":
    main()
