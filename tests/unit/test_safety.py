"""reconciler.safety: may these brokers stop now without rejecting acks=all writes?

Every case is an observed ISR snapshot built with the `Observed` builder; the questions are the
ones an operator asks before a roll: which partitions go unavailable, which drop to exactly
min.insync.replicas, which topics can never survive a restart, and in which order / groups to roll.
"""

from __future__ import annotations

import pytest

from reconciler.observe.model import ClusterState
from reconciler.safety import Verdict, can_restart, rack_groups, restart_order

from .builders import Observed

BROKERS = (1, 2, 3)


def cluster(*parts: tuple[str, int, tuple[int, ...], tuple[int, ...] | None],
            min_isr: dict[str, int] | None = None) -> ClusterState:
    """A ClusterState from (topic, partition, replicas, isr) tuples and topic min ISR overrides."""
    obs = Observed("lab")
    for topic, p, replicas, isr in parts:
        obs.partition(topic, p, replicas=replicas, isr=isr)
    for topic, n in (min_isr or {}).items():
        obs.topic_min_isr(topic, n)
    return obs.build().cluster


def rf3(topic: str, n: int = 3, isr: tuple[int, ...] | None = None
        ) -> list[tuple[str, int, tuple[int, ...], tuple[int, ...] | None]]:
    """n partitions of an RF 3 topic over brokers 1-3, leaders spread, all with the same ISR."""
    out = []
    for p in range(n):
        replicas = tuple(BROKERS[(p + i) % 3] for i in range(3))
        out.append((topic, p, replicas, None if isr is None else tuple(b for b in replicas if b in isr)))
    return out


def names(v: Verdict, field: str = "unavailable") -> list[str]:
    return [r.name for r in getattr(v, field)]


# --- one broker at a time ----------------------------------------------------------------------


def test_rf3_min_isr2_all_in_sync_every_broker_safe_and_every_partition_at_min() -> None:
    st = cluster(*rf3("orders"), *rf3("payments", n=2))
    for b in BROKERS:
        v = can_restart(st, [b], 2)
        assert v.ok, v.summary()
        assert v.unavailable == ()
        assert v.rf_at_or_below_min_isr == ()
        assert v.partitions_checked == 5
        assert sorted(names(v, "at_min")) == ["orders-0", "orders-1", "orders-2", "payments-0", "payments-1"]
        assert all(r.isr_after == 2 and r.min_isr == 2 and r.replicas == 3 for r in v.at_min)
        assert v.summary() == (f"broker {b}: safe; 5 of 5 partition(s) drop to exactly "
                               "min.insync.replicas while it restarts")


def test_min_isr1_keeps_isr_above_min() -> None:
    v = can_restart(cluster(*rf3("orders")), [2], 1)
    assert v.ok and v.at_min == () and v.unavailable == ()
    assert v.summary() == "broker 2: safe; all 3 partition(s) keep ISR above min.insync.replicas"


def test_broker_out_of_isr_makes_restarting_the_others_unavailable() -> None:
    st = cluster(*rf3("orders", isr=(1, 2)))  # broker 3 fell out of every ISR
    for b in (1, 2):
        v = can_restart(st, [b], 2)
        assert not v.ok
        assert names(v) == ["orders-0", "orders-1", "orders-2"]
        assert all(r.isr_after == 1 and r.min_isr == 2 for r in v.unavailable)
        text = v.summary()
        assert text.startswith(f"broker {b}: stopping it makes 3 partition(s) unavailable for acks=all writes")
        assert "orders-0 (ISR 1 of 3 left, min.insync.replicas 2)" in text
        assert "orders-2" in text
    # Restarting the lagging broker itself takes nobody out of an ISR: still safe, at min.
    v3 = can_restart(st, [3], 2)
    assert v3.ok and names(v3, "at_min") == ["orders-0", "orders-1", "orders-2"]


def test_only_partitions_the_broker_is_out_of_matter() -> None:
    st = cluster(("orders", 0, (1, 2, 3), (1, 2)),  # 3 lagging here
                 ("orders", 1, (1, 2, 3), (1, 2, 3)))
    v = can_restart(st, [1], 2)
    assert names(v) == ["orders-0"] and names(v, "at_min") == ["orders-1"]


def test_topic_min_isr_override_makes_restart_unavailable_even_all_in_sync() -> None:
    st = cluster(*rf3("ledger"), *rf3("orders"), min_isr={"ledger": 3})
    for b in BROKERS:
        v = can_restart(st, [b], 2)
        assert not v.ok
        assert names(v) == ["ledger-0", "ledger-1", "ledger-2"]
        assert all(r.min_isr == 3 and r.isr_after == 2 for r in v.unavailable)
        assert names(v, "at_min") == ["orders-0", "orders-1", "orders-2"]  # cluster default still 2
        # RF 3 <= min ISR 3: the topic, not the roll, is the problem; reported on its own.
        assert v.rf_at_or_below_min_isr == ("ledger",)
        assert "min.insync.replicas 3" in v.summary()


def test_topic_override_below_the_default_is_honoured() -> None:
    st = cluster(("logs", 0, (1, 2), (1, 2)), min_isr={"logs": 1})
    v = can_restart(st, [1], 2)
    assert v.ok and names(v, "at_min") == ["logs-0"] and v.rf_at_or_below_min_isr == ()


def test_rf1_topic_on_the_broker_is_unavailable_and_reported_as_weak() -> None:
    st = cluster(*rf3("orders"), ("scratch", 0, (1,), (1,)), ("scratch", 1, (2,), (2,)))
    v = can_restart(st, [1], 2)
    assert not v.ok
    assert names(v) == ["scratch-0"]  # scratch-1 lives on broker 2 only: not affected
    assert v.unavailable[0].isr_after == 0 and v.unavailable[0].replicas == 1
    assert v.rf_at_or_below_min_isr == ("scratch",)
    assert v.partitions_checked == 4
    # Even with min ISR 1, an RF 1 partition has nowhere to go.
    v1 = can_restart(st, [1], 1)
    assert names(v1) == ["scratch-0"] and v1.rf_at_or_below_min_isr == ("scratch",)


def test_partitions_not_on_the_broker_are_ignored() -> None:
    st = cluster(("a", 0, (1, 2), (1,)), ("b", 0, (2, 3), (2,)), ("c", 0, (4, 5, 6), (4, 5, 6)))
    v = can_restart(st, [3], 2)
    assert v.partitions_checked == 1
    assert names(v) == ["b-0"]  # isr after = 1 (broker 3 was not in it anyway)
    assert "a" not in v.rf_at_or_below_min_isr and "c" not in v.rf_at_or_below_min_isr


def test_broker_with_no_replicas() -> None:
    v = can_restart(cluster(*rf3("orders")), [7], 2)
    assert v.ok and v.partitions_checked == 0
    assert v.summary() == "broker 7: holds no replicas"


def test_empty_cluster_is_safe() -> None:
    v = can_restart(ClusterState(), [1], 2)
    assert v.ok and v.summary() == "broker 1: holds no replicas"


def test_summary_lists_six_partitions_then_counts_the_rest() -> None:
    st = cluster(*rf3("orders", n=9, isr=(1, 2)))
    v = can_restart(st, [1], 2)
    assert len(v.unavailable) == 9
    text = v.summary()
    assert "stopping it makes 9 partition(s) unavailable" in text
    assert all(f"orders-{p} (" in text for p in range(6))
    assert "orders-6 (" not in text
    assert text.endswith("and 3 more")


# --- several brokers together ------------------------------------------------------------------


def test_two_brokers_together_break_rf3_min_isr2() -> None:
    st = cluster(*rf3("orders"))
    v = can_restart(st, [2, 1, 2], 2)
    assert v.brokers == (1, 2)
    assert not v.ok and names(v) == ["orders-0", "orders-1", "orders-2"]
    assert v.summary().startswith("broker 1,2: stopping it makes 3 partition(s) unavailable")


# --- restart order -----------------------------------------------------------------------------


@pytest.mark.parametrize(("ids", "controller", "expected"), [
    ([3, 1, 2], 1, [2, 3, 1]),
    ([3, 1, 2], 3, [1, 2, 3]),
    ([3, 1, 2], None, [1, 2, 3]),
    ([3, 1, 2], 9, [1, 2, 3]),  # controller not being restarted: plain id order
    ([10, 2, 2, 1], 2, [1, 10, 2]),  # numeric order, duplicates once
    ([], 1, []),
])
def test_restart_order_puts_the_controller_last(ids: list[int], controller: int | None,
                                                 expected: list[int]) -> None:
    assert restart_order(ids, controller) == expected


# --- rack at a time ----------------------------------------------------------------------------


def test_rack_groups_one_broker_per_rack() -> None:
    st = cluster(*rf3("orders"))
    racks = {3: "rack-c", 1: "rack-a", 2: "rack-b"}
    assert rack_groups(racks, st, 2) == [(1,), (2,), (3,)]


def test_rack_groups_when_replicas_span_racks() -> None:
    # 4 brokers in 2 racks; every partition has one replica in each rack (RF 2, min ISR 1).
    racks = {1: "east", 2: "west", 3: "east", 4: "west"}
    st = cluster(("t", 0, (1, 2), None), ("t", 1, (3, 4), None), ("t", 2, (1, 4), None))
    assert rack_groups(racks, st, 1) == [(1, 3), (2, 4)]


def test_no_rack_groups_when_a_rack_holds_two_replicas_of_a_partition() -> None:
    racks = {1: "east", 2: "west", 3: "east", 4: "west"}
    st = cluster(("t", 0, (1, 2), None), ("t", 1, (1, 3), None))  # t-1 lives only in east
    assert rack_groups(racks, st, 1) is None


def test_no_rack_groups_when_a_whole_rack_down_reaches_below_min_isr() -> None:
    # One replica per rack, but min ISR 3 with RF 3: no rack may go down.
    racks = {1: "rack-a", 2: "rack-b", 3: "rack-c"}
    assert rack_groups(racks, cluster(*rf3("orders")), 3) is None
    # And with a broker already out of the ISR, neither may the others.
    assert rack_groups(racks, cluster(*rf3("orders", isr=(1, 2))), 2) is None


def test_no_rack_groups_when_any_broker_has_no_rack() -> None:
    st = cluster(*rf3("orders"))
    assert rack_groups({1: "rack-a", 2: None, 3: "rack-c"}, st, 1) is None
