"""Scale-out and scale-in planned as one plan: broker changes plus the partition reassignment."""

from __future__ import annotations

import pytest
import yaml

from reconciler import files as F
from reconciler.diff import Action, diff
from reconciler.plan.build import build_plan
from reconciler.plan.model import Plan, StepKind
from reconciler.plan.planfile import load, save, spec_digest
from reconciler.plan.render import render_text
from reconciler.spec import ClusterSpec, parse_spec

from .builders import Observed
from .conftest import ARTS, LAB_YAML

H1, H2, H3, H4 = "10.213.0.11", "10.213.0.12", "10.213.0.13", "10.213.0.14"


def lab_data() -> dict:
    return yaml.safe_load(LAB_YAML.read_text())


def four_broker_spec() -> ClusterSpec:
    data = lab_data()
    data["brokers"].append({"id": 4, "host": H4, "rack": "rack-a"})
    data["allow_uneven_racks"] = True
    return parse_spec(data)


def with_brokers(ids: list[int]) -> ClusterSpec:
    data = lab_data()
    data["brokers"] = [b for b in data["brokers"] if b["id"] in ids]
    rf = min(2, len(ids))
    data["kafka"]["config"].update({"default.replication.factor": rf, "offsets.topic.replication.factor": rf,
                                    "transaction.state.log.replication.factor": rf,
                                    "transaction.state.log.min.isr": 1, "min.insync.replicas": 1})
    return parse_spec(data)


def rf3_layout(obs: Observed, topics: int = 4, partitions: int = 24) -> Observed:
    order = [(1, 2, 3), (2, 3, 1), (3, 1, 2)]
    for t in range(topics):
        for p in range(partitions):
            obs.partition(f"t{t}", p, order[(p + t) % 3])
    return obs


def plan_of(spec: ClusterSpec, obs, sizes=None) -> Plan:  # noqa: ANN001
    result = diff(spec, obs, ARTS, sizes=sizes)
    assert result.errors == [], [str(e) for e in result.errors]
    return build_plan(result.changes, obs, spec_path="/specs/x.yaml", spec_digest=spec_digest(spec))


def scale_out_observed(lab_spec: ClusterSpec) -> Observed:
    obs = rf3_layout(Observed.converged_cluster(lab_spec, ARTS))
    return obs.host(H4).bare().controller(1)


def test_scale_out_is_one_plan_start_then_move_data_onto_the_new_broker_only(lab_spec: ClusterSpec) -> None:
    spec = four_broker_spec()
    plan = plan_of(spec, scale_out_observed(lab_spec).build())
    by_addr = {c.address: c for c in plan.changes}
    assert by_addr["broker.4"].action is Action.CREATE
    (r,) = [s for s in plan.steps if s.kind is StepKind.REASSIGN]
    # every move copies onto broker 4 and drops one old replica; old brokers never swap data
    data_moves = [m for m in r.moves if set(m.after) != set(m.before)]
    assert data_moves and all(set(m.after) - set(m.before) == {4} for m in data_moves)
    # broker 4 joins rack-a: every partition keeps one replica per rack, so rack-a's 96 replicas are
    # split between brokers 1 and 4 (48 each): 48 moves, all 1 -> 4, which is the lower bound
    assert all(set(m.before) - set(m.after) == {1} for m in data_moves)
    assert len(data_moves) == 48
    assert "replica moves" in {a.name for a in by_addr["partitions"].attrs}
    assert "48 (lower bound 48)" in next(a.after for a in by_addr["partitions"].attrs if a.name == "replica moves")
    # the data moves only once the new broker runs and has registered
    assert nx_has_path(plan, f"start:kafka@{H4}", r.id)
    counts = {}
    for m in r.moves:
        for b in m.after:
            counts[b] = counts.get(b, 0) + 1
    assert r.throttle_bytes_per_s == 50 * 2**20


def nx_has_path(plan: Plan, a: str, b: str) -> bool:
    import networkx as nx

    return nx.has_path(plan.graph(), a, b)


def test_scale_out_plan_shows_bytes_and_time_and_round_trips(lab_spec: ClusterSpec, tmp_path) -> None:  # noqa: ANN001
    spec = four_broker_spec()
    sizes = {(f"t{t}", p): 10 * 2**20 for t in range(4) for p in range(24)}
    plan = plan_of(spec, scale_out_observed(lab_spec).build(), sizes)
    text = render_text(plan)
    assert "# partitions will be reassigned (data moves between brokers)" in text
    assert "480.0 MiB, about 10s at 50.0 MiB/s" in text
    assert "move 48 partition(s)" in text
    save(plan, tmp_path / "p.json")
    assert load(tmp_path / "p.json") == plan


def test_new_broker_that_already_holds_data_needs_no_move(lab_spec: ClusterSpec) -> None:
    spec = four_broker_spec()
    obs = rf3_layout(Observed.converged_cluster(spec, ARTS)).partition("x", 0, (4, 1, 2))
    assert not [c for c in diff(spec, obs.build(), ARTS).changes if c.address == "partitions"]


def test_no_partitions_no_reassignment(lab_spec: ClusterSpec) -> None:
    spec = four_broker_spec()
    obs = Observed.converged_cluster(lab_spec, ARTS).host(H4).bare().build()
    assert [c.address for c in diff(spec, obs, ARTS).changes] == ["broker.4"]


def leftover(spec_now: ClusterSpec, lab_spec: ClusterSpec, hosts_brokers: dict[str, int]) -> Observed:
    obs = Observed.converged_cluster(spec_now, ARTS)
    for host, bid in hosts_brokers.items():
        props = F.server_properties(lab_spec, next(b for b in lab_spec.brokers if b.id == bid))
        obs.on(host).file(F.SERVER_PROPERTIES, props).artifact("kafka", ARTS.kafka).service("kafka")
    return obs


def test_scale_in_drains_then_stops_the_broker(lab_spec: ClusterSpec) -> None:
    spec = with_brokers([1, 2])
    obs = leftover(spec, lab_spec, {H3: 3})
    for p in range(6):
        obs.partition("events", p, [(1, 3), (3, 2), (2, 1)][p % 3])
    plan = plan_of(spec, obs.build())
    (r,) = [s for s in plan.steps if s.kind is StepKind.REASSIGN]
    assert r.drain == (3,)
    assert all(3 not in m.after for m in r.moves)
    assert {(m.topic, m.partition) for m in r.moves} >= {("events", 0), ("events", 1)}
    stop = next(s for s in plan.steps if s.kind is StepKind.STOP)
    assert stop.drain == (3,) and stop.host == H3
    assert (r.id, stop.id) in plan.edges
    assert "broker(s) 3 leave the spec and must be drained" in render_text(plan)


def test_removing_two_of_three_brokers_with_rf3_topics_is_refused_naming_them(lab_spec: ClusterSpec) -> None:
    spec = with_brokers([1])
    obs = leftover(spec, lab_spec, {H2: 2, H3: 3})
    obs.partition("orders", 0, (1, 2, 3)).partition("payments", 0, (2, 3, 1)).partition("logs", 0, (1,))
    result = diff(spec, obs.build(), ARTS)
    (err,) = result.errors
    assert err.path == "brokers"
    assert "cannot remove broker(s) 2, 3" in err.message
    assert "orders" in err.message and "payments" in err.message and "logs" not in err.message


def test_broker_removal_refused_when_assignments_cannot_be_read(lab_spec: ClusterSpec) -> None:
    spec = with_brokers([1, 2])
    obs = leftover(spec, lab_spec, {H3: 3})
    for h in (H1, H2, H3):
        obs._zk_modes.pop(h, None)  # noqa: SLF001 - ZooKeeper unreachable
    result = diff(spec, obs.build(), ARTS)
    assert any("broker.3 would be removed" in e.message for e in result.errors)


def test_empty_leftover_broker_is_just_removed(lab_spec: ClusterSpec) -> None:
    spec = with_brokers([1, 2])
    obs = leftover(spec, lab_spec, {H3: 3}).partition("events", 0, (1, 2))
    plan = plan_of(spec, obs.build())
    assert [s.kind for s in plan.steps] == [StepKind.STOP, StepKind.REMOVE]
    assert plan.steps[0].drain == ()


def test_versions_without_the_reassignment_api_are_refused(lab_spec: ClusterSpec) -> None:
    # Not in the version table today (spec validation refuses it); the guard keeps apply from trying
    # an Admin API the brokers do not have once an older version is added.
    spec = four_broker_spec()
    old = spec.model_copy(update={"kafka": spec.kafka.model_copy(update={"version": "2.3.1"})})
    errors = diff(old, scale_out_observed(lab_spec).build(), ARTS).errors
    assert any(e.path == "kafka.version" and "reassign_partitions path" in e.message for e in errors)


def test_leftover_throttles_are_removed_when_no_reassignment_runs(lab_spec: ClusterSpec) -> None:
    obs = rf3_layout(Observed.converged_cluster(lab_spec, ARTS)).throttles(("t0", "t1"), (1, 2)).build()
    plan = plan_of(lab_spec, obs)
    (step,) = plan.steps
    assert step.kind is StepKind.CLEAR_THROTTLES
    assert step.throttled_topics == ("t0", "t1") and step.throttled_brokers == (1, 2)
    text = render_text(plan)
    assert "no partition reassignment is running" in text
    assert "remove leftover replication throttles on broker(s) 1, 2 and 2 topic(s)" in text


def test_throttles_of_a_running_reassignment_are_left_alone(lab_spec: ClusterSpec) -> None:
    obs = (rf3_layout(Observed.converged_cluster(lab_spec, ARTS)).throttles(("x",), (1,))
           .partition("x", 0, (1, 2, 3), reassigning=True).build())
    assert diff(lab_spec, obs, ARTS).changes == []


def test_scale_out_waits_for_a_running_reassignment(lab_spec: ClusterSpec) -> None:
    obs = scale_out_observed(lab_spec).partition("x", 0, (1, 2, 3), reassigning=True).build()
    errors = diff(four_broker_spec(), obs, ARTS).errors
    assert any("reassignment is still running" in e.message and "x-0" in e.message for e in errors)


def test_leftover_throttles_go_before_this_plans_own_reassignment(lab_spec: ClusterSpec) -> None:
    obs = scale_out_observed(lab_spec).throttles(("t3",), ()).build()
    plan = plan_of(four_broker_spec(), obs)
    assert ("clear_throttles:kafka", "reassign:partitions") in plan.edges


# --- rebalance: an ordinary plan ----------------------------------------------------------------


class _Arts:
    ids = ARTS


def test_rebalance_is_an_ordinary_saved_plan_with_one_reassignment(lab_spec: ClusterSpec, tmp_path,  # noqa: ANN001
                                                                    monkeypatch) -> None:  # noqa: ANN001
    from reconciler import pipeline

    monkeypatch.setattr(pipeline, "partition_sizes", lambda spec, progress=None: {})
    obs = Observed.converged_cluster(lab_spec, ARTS).controller(1)
    for p in range(12):  # every leader on broker 1, a RF 2 topic only on brokers 1 and 2
        obs.partition("skew-leaders", p, (1, 2, 3)).partition("skew-replicas", p, (1, 2))
    observed = obs.build()
    plan, doc = pipeline.make_rebalance_plan(lab_spec, "/specs/lab.yaml", observed, _Arts(),  # type: ignore[arg-type]
                                             throttle_mib_per_s=5)
    (reassign,) = [s for s in plan.steps if s.kind is StepKind.REASSIGN]
    assert [s.kind for s in plan.steps] == [StepKind.REASSIGN] and reassign.throttle_bytes_per_s == 5 * 2**20
    assert doc["replica_moves"] == doc["lower_bound"] == sum(
        len(set(m.after) - set(m.before)) for m in reassign.moves) > 0
    assert plan.fingerprint == observed.fingerprint() and plan.counts() == {"add": 0, "change": 1, "destroy": 0}
    text = render_text(plan)
    assert "rebalance: replicas and leaders even out over the spec's brokers" in text
    assert "throttled to 5 MiB/s per broker" in text
    path = tmp_path / "rebalance.plan"
    save(plan, path)
    assert load(path) == plan  # saved, signed and loaded like any plan: apply FILE runs it


def test_rebalance_refused_while_the_cluster_differs_from_its_spec(lab_spec: ClusterSpec, monkeypatch) -> None:  # noqa: ANN001
    from reconciler import pipeline

    monkeypatch.setattr(pipeline, "partition_sizes", lambda spec, progress=None: {})
    obs = Observed.converged_cluster(lab_spec, ARTS).controller(1).on(H2).file(F.SERVER_PROPERTIES, "hand edited\n")
    with pytest.raises(pipeline.PlanRefused, match=r"differs from its spec \(1 change\(s\): broker.2\)"):
        pipeline.make_rebalance_plan(lab_spec, "/specs/lab.yaml", obs.build(), _Arts())  # type: ignore[arg-type]


def test_balanced_cluster_rebalance_plan_is_empty(lab_spec: ClusterSpec, monkeypatch) -> None:  # noqa: ANN001
    from reconciler import pipeline

    monkeypatch.setattr(pipeline, "partition_sizes", lambda spec, progress=None: {})
    observed = rf3_layout(Observed.converged_cluster(lab_spec, ARTS).controller(1), topics=1, partitions=3).build()
    plan, doc = pipeline.make_rebalance_plan(lab_spec, "/specs/lab.yaml", observed, _Arts())  # type: ignore[arg-type]
    assert plan.empty and doc["moves"] == []
