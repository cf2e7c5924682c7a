"""reconciler.placement: minimal-movement, rack-aware partition reassignment.

The starting layouts are what Kafka's own rack-aware assignment makes at topic creation
(`rack_aware_assignment`), so the cases are the ones an operator meets: add a broker, drain a
broker, a cluster whose leaders all sit on one broker. "Balanced" is checked against ideals computed
here by hand from the rack layout, not against the planner's own targets.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from reconciler.observe.model import ClusterState, PartitionState
from reconciler.placement import (
    BrokerInfo,
    PlacementError,
    Proposal,
    balance_report,
    lower_bound,
    plan_reassignment,
    rack_aware_assignment,
)

TOPICS = ("orders", "payments", "clicks", "audit")
THREE = [BrokerInfo(1, "a"), BrokerInfo(2, "b"), BrokerInfo(3, "c")]
FOUR = [*THREE, BrokerInfo(4, "a")]


def kafka_layout(brokers: list[BrokerInfo], topics: tuple[str, ...] = TOPICS, n: int = 24, rf: int = 3
                 ) -> tuple[PartitionState, ...]:
    """Topics created one after another, each from a different start broker, as Kafka places them."""
    parts = []
    for t, topic in enumerate(topics):
        for i, reps in enumerate(rack_aware_assignment(brokers, n, rf, start_index=t)):
            parts.append(PartitionState(topic=topic, partition=i, replicas=reps, isr=reps, leader=reps[0]))
    return ClusterState(partitions=tuple(parts)).partitions


def as_state(target: dict[tuple[str, int], tuple[int, ...]]) -> list[PartitionState]:
    return [PartitionState(topic=t, partition=p, replicas=r, isr=r, leader=r[0]) for (t, p), r in target.items()]


def racks_of(brokers: list[BrokerInfo], reps: tuple[int, ...]) -> set[str | None]:
    rack = {b.id: b.rack for b in brokers}
    return {rack[r] for r in reps}


def within(counts: dict[int, int], ideal: dict[int, float]) -> bool:
    return all(abs(counts[b] - x) <= 1 for b, x in ideal.items())


def replica_moves(prop: Proposal) -> int:
    return sum(len(m.added) for m in prop.moves)


# -- scale-out -------------------------------------------------------------------------------------


def test_kafka_layout_is_the_usual_starting_point() -> None:
    rep = balance_report(THREE, {(p.topic, p.partition): p.replicas for p in kafka_layout(THREE)})
    assert rep["replicas"] == {1: 96, 2: 96, 3: 96}
    assert rep["leaders"] == {1: 32, 2: 32, 3: 32}
    assert rep["racks_per_partition"] == {3: 96}


def test_scale_out_3_to_4_moves_only_towards_the_new_broker() -> None:
    parts = kafka_layout(THREE)
    prop = plan_reassignment(FOUR, parts)

    # RF 3 over 3 racks: every rack holds one replica of each of the 96 partitions, so brokers 2
    # and 3 (alone in their racks) keep 96 and rack a's 96 split between brokers 1 and 4.
    rep = balance_report(FOUR, prop.target)
    assert within(rep["replicas"], {1: 48, 2: 96, 3: 96, 4: 48})
    assert within(rep["leaders"], dict.fromkeys((1, 2, 3, 4), 96 / 4))
    assert rep["racks_per_partition"] == {3: 96}
    assert all(len(racks_of(FOUR, reps)) == 3 for reps in prop.target.values())

    for m in prop.moves:
        assert set(m.added) <= {4}
        assert set(m.before) - set(m.after) <= {1}  # a replica leaves broker 1 only for broker 4
    assert prop.replica_moves == prop.lower_bound == 48 == replica_moves(prop)
    assert lower_bound(FOUR, parts) == 48
    assert prop.bytes_to_move == 0  # no sizes given
    assert any("new broker(s) 4" in n for n in prop.notes)


def test_scale_out_6_to_9_reaches_the_lower_bound() -> None:
    six = [BrokerInfo(i, "abc"[(i - 1) % 3]) for i in range(1, 7)]
    nine = [BrokerInfo(i, "abc"[(i - 1) % 3]) for i in range(1, 10)]
    parts = kafka_layout(six)
    assert set(balance_report(six, {(p.topic, p.partition): p.replicas for p in parts})["replicas"].values()) == {48}

    prop = plan_reassignment(nine, parts)
    rep = balance_report(nine, prop.target)
    assert within(rep["replicas"], dict.fromkeys(range(1, 10), 288 / 9))
    assert within(rep["leaders"], dict.fromkeys(range(1, 10), 96 / 9))
    assert rep["racks_per_partition"] == {3: 96}
    assert all(set(m.added) <= {7, 8, 9} for m in prop.moves)
    assert prop.replica_moves == prop.lower_bound == 3 * 32


def test_scale_out_without_racks_keeps_brokers_distinct() -> None:
    old = [BrokerInfo(i, None) for i in range(1, 5)]
    new = [*old, BrokerInfo(5, None), BrokerInfo(6, None)]
    parts = kafka_layout(old, n=12)
    prop = plan_reassignment(new, parts)
    rep = balance_report(new, prop.target)
    assert within(rep["replicas"], dict.fromkeys(range(1, 7), 144 / 6))
    assert all(len(set(r)) == 3 for r in prop.target.values())
    assert all(set(m.added) <= {5, 6} for m in prop.moves)
    assert prop.replica_moves == prop.lower_bound


def test_weights_scale_a_brokers_share() -> None:
    parts = [PartitionState(topic="logs", partition=i, replicas=(1,), isr=(1,), leader=1) for i in range(40)]
    brokers = [BrokerInfo(1, None), BrokerInfo(2, None), BrokerInfo(3, None, weight=2.0)]
    prop = plan_reassignment(brokers, parts)
    assert balance_report(brokers, prop.target)["replicas"] == {1: 10, 2: 10, 3: 20}
    assert prop.replica_moves == prop.lower_bound == 30


# -- scale-in --------------------------------------------------------------------------------------


def test_scale_in_4_to_3_empties_the_removed_broker() -> None:
    parts = kafka_layout(FOUR)
    held = sum(1 for p in parts if 4 in p.replicas)
    assert held > 0
    prop = plan_reassignment(FOUR, parts, remove={4})

    rep = balance_report(FOUR, prop.target)
    assert rep["replicas"][4] == 0 and rep["leaders"][4] == 0
    assert rep["replicas"] == {1: 96, 2: 96, 3: 96, 4: 0}
    assert within(rep["leaders"], {1: 32, 2: 32, 3: 32})
    assert all(len(racks_of(FOUR, reps)) == 3 for reps in prop.target.values())
    for m in prop.moves:
        assert set(m.before) - set(m.after) <= {4}
        assert set(m.added) <= {1}  # broker 1 is the only other broker in rack a
    assert prop.replica_moves == prop.lower_bound == held
    assert any("evacuating broker(s) 4" in n for n in prop.notes)


def test_scale_in_9_to_6_moves_each_replica_once_within_its_rack() -> None:
    nine = [BrokerInfo(i, "abc"[(i - 1) % 3]) for i in range(1, 10)]
    parts = kafka_layout(nine, n=36)
    gone = {7, 8, 9}
    held = sum(1 for p in parts for b in p.replicas if b in gone)
    prop = plan_reassignment(nine, parts, remove=gone)
    rep = balance_report(nine, prop.target)
    assert all(rep["replicas"][b] == 0 and rep["leaders"][b] == 0 for b in gone)
    assert within(rep["replicas"], dict.fromkeys(range(1, 7), 3 * 144 / 6))
    assert within(rep["leaders"], dict.fromkeys(range(1, 7), 144 / 6))
    assert rep["racks_per_partition"] == {3: 144}
    assert prop.replica_moves == prop.lower_bound == held


def test_removing_two_of_three_brokers_names_the_topics() -> None:
    parts = kafka_layout(THREE, topics=("orders", "payments"), n=6)
    with pytest.raises(PlacementError, match=r"topics orders, payments need 3 replicas but only 1 broker remains"):
        plan_reassignment(THREE, parts, remove={2, 3})


def test_removing_a_whole_rack_is_refused() -> None:
    parts = kafka_layout(FOUR, topics=("orders",), n=8)
    with pytest.raises(PlacementError, match=r"topic orders spans 3 racks but the remaining brokers are in only 2"):
        plan_reassignment(FOUR, parts, remove={3})


def test_unknown_broker_in_assignment_is_refused() -> None:
    parts = [PartitionState(topic="orders", partition=0, replicas=(1, 2, 7), isr=(1, 2, 7), leader=1)]
    with pytest.raises(PlacementError, match="broker 7 holds replicas of topics orders"):
        plan_reassignment(THREE, parts)


# -- leaders and rack spread -----------------------------------------------------------------------


def test_leader_skew_is_fixed_by_reordering_only() -> None:
    parts = [PartitionState(topic=t, partition=i, replicas=(1, 2, 3), isr=(1, 2, 3), leader=1)
             for t in ("orders", "payments") for i in range(12)]
    prop = plan_reassignment(THREE, parts)
    rep = balance_report(THREE, prop.target)
    assert rep["leaders"] == {1: 8, 2: 8, 3: 8}
    assert prop.replica_moves == 0 == prop.lower_bound and prop.bytes_to_move == 0
    assert prop.moves and all(set(m.after) == set(m.before) and m.bytes == 0 for m in prop.moves)
    assert prop.reorders == len(prop.moves) == 16


def test_leader_skew_on_six_brokers_without_replica_moves() -> None:
    six = [BrokerInfo(i, "abc"[(i - 1) % 3]) for i in range(1, 7)]
    parts = [PartitionState(topic="t", partition=p.partition, replicas=tuple(sorted(p.replicas)), isr=p.isr,
                            leader=min(p.replicas)) for p in kafka_layout(six, topics=("t",), n=60)]
    before = balance_report(six, {(p.topic, p.partition): p.replicas for p in parts})
    assert before["leaders_max"] - before["leaders_min"] > 1
    prop = plan_reassignment(six, parts)
    rep = balance_report(six, prop.target)
    assert within(rep["leaders"], dict.fromkeys(range(1, 7), 10))
    assert rep["replicas"] == before["replicas"]
    assert prop.replica_moves == 0


def test_partition_missing_a_rack_gets_repaired() -> None:
    brokers = [BrokerInfo(1, "a"), BrokerInfo(2, "a"), BrokerInfo(3, "b"), BrokerInfo(4, "c")]
    parts = [PartitionState(topic="orders", partition=0, replicas=(1, 2, 3), isr=(1, 2, 3), leader=1)]
    assert lower_bound(brokers, parts) >= 1
    prop = plan_reassignment(brokers, parts)
    (reps,) = prop.target.values()
    assert racks_of(brokers, reps) == {"a", "b", "c"}
    assert prop.replica_moves == 1 and 4 in reps


# -- determinism, caps, sizes ----------------------------------------------------------------------


def test_same_input_gives_same_output_whatever_the_order() -> None:
    parts = list(kafka_layout(THREE))
    first = plan_reassignment(FOUR, parts)
    assert plan_reassignment(FOUR, parts) == first
    shuffled = parts[:]
    random.Random(7).shuffle(shuffled)
    assert plan_reassignment(list(reversed(FOUR)), shuffled) == first


def test_max_moves_caps_replica_moves_and_the_rest_follows_next_run() -> None:
    parts = kafka_layout(THREE)
    prop = plan_reassignment(FOUR, parts, max_moves=10)
    assert prop.replica_moves == 10 == replica_moves(prop)
    assert prop.lower_bound == 48
    assert any("max_moves=10" in n for n in prop.notes)
    rest = plan_reassignment(FOUR, as_state(prop.target))
    assert rest.replica_moves == rest.lower_bound == 38
    assert balance_report(FOUR, rest.target)["replicas"] == {1: 48, 2: 96, 3: 96, 4: 48}


def test_sizes_drive_bytes_to_move_and_small_partitions_move_first() -> None:
    parts = kafka_layout(THREE)
    sizes = {(p.topic, p.partition): (i * 7919) % 1000 * 2**20 + 1 for i, p in enumerate(parts)}
    prop = plan_reassignment(FOUR, parts, sizes)
    assert prop.bytes_to_move == sum(m.bytes for m in prop.moves) > 0
    assert all(m.bytes == sizes[(m.topic, m.partition)] * len(m.added) for m in prop.moves)
    # every partition is on broker 1, so the 48 that go to broker 4 are the 48 smallest
    assert prop.bytes_to_move == sum(sorted(sizes.values())[:48])
    unsized = plan_reassignment(FOUR, parts)
    assert prop.replica_moves == unsized.replica_moves == prop.lower_bound


def test_balance_report_counts_every_broker() -> None:
    target = {("orders", 0): (1, 2, 3), ("orders", 1): (2, 3, 1), ("payments", 0): (2, 1, 3)}
    rep = balance_report(FOUR, target)
    assert rep["replicas"] == {1: 3, 2: 3, 3: 3, 4: 0}
    assert rep["leaders"] == {1: 1, 2: 2, 3: 0, 4: 0}
    assert (rep["replicas_min"], rep["replicas_max"], rep["leaders_min"], rep["leaders_max"]) == (0, 3, 0, 2)
    assert rep["racks_per_partition"] == {3: 3} and rep["min_racks_per_partition"] == 3


def test_rack_aware_assignment_matches_kafka_shape() -> None:
    six = [BrokerInfo(i, "abc"[(i - 1) % 3]) for i in range(1, 7)]
    reps = rack_aware_assignment(six, 12, 3)
    assert all(len(racks_of(six, r)) == 3 for r in reps)
    assert Counter(r[0] for r in reps) == dict.fromkeys(range(1, 7), 2)


@pytest.mark.parametrize("seed", range(40))
def test_kafka_layouts_scale_out_and_in_at_the_lower_bound(seed: int) -> None:
    """Random Kafka-made layouts, RF = number of racks: any scale-out or scale-in hits the bound."""
    rnd = random.Random(seed)
    n_racks = rnd.choice([2, 3, 4])
    old = [BrokerInfo(i, "abcd"[(i - 1) % n_racks]) for i in range(1, n_racks * rnd.randint(1, 4) + 1)]
    parts = kafka_layout(old, topics=TOPICS[: rnd.randint(1, 4)], n=rnd.randint(1, 40), rf=n_racks)
    if seed % 2:
        brokers = old + [BrokerInfo(len(old) + i, rnd.choice("abcd"[:n_racks])) for i in range(1, rnd.randint(2, 5))]
        gone: set[int] = set()
    else:
        brokers = old
        gone = set(rnd.sample([b.id for b in old], 1 if len(old) <= n_racks + 1 else 2))
    try:
        prop = plan_reassignment(brokers, parts, remove=gone)
    except PlacementError as e:  # a whole rack removed: refusing is the right answer
        assert "racks but the remaining brokers" in str(e) or "replicas but only" in str(e)
        return
    assert prop.replica_moves == prop.lower_bound == replica_moves(prop)
    assert all(len(racks_of(brokers, r)) == n_racks for r in prop.target.values())
    assert not any(b in gone for r in prop.target.values() for b in r)
