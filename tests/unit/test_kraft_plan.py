"""KRaft plans from observed snapshots: what a new cluster's plan does (format once, one cluster
id, initial controllers with directory ids, controllers and brokers start together), how rolls
order (controllers first, the active controller last, then brokers), and the quorum proof
(Strimzi's KafkaQuorumCheck) per controller restart."""

from __future__ import annotations

import base64

import pytest
import yaml

from reconciler import files as F
from reconciler import pipeline
from reconciler.diff import ArtifactIds
from reconciler.observe import kraft
from reconciler.observe.model import Quorum, QuorumMember
from reconciler.plan.model import Plan, StepKind
from reconciler.plan.render import render_text
from reconciler.safety import can_restart_voter
from reconciler.spec import ClusterSpec, load_spec, parse_spec

from .builders import CLUSTER_ID, Observed
from .conftest import KRAFT_LAB_YAML, SPECS

IDS = ArtifactIds(kafka="kafka-4.4.0-0123456789ab")


class _Arts:
    ids = IDS


def kraft_lab(**config: object) -> ClusterSpec:
    data = yaml.safe_load(KRAFT_LAB_YAML.read_text())
    data["kafka"]["config"].update({k.replace("__", "."): v for k, v in config.items()})
    return parse_spec(data)


def plan_for(spec: ClusterSpec, observed: Observed, **kw: object) -> Plan:
    return pipeline.make_plan(spec, "/specs/lab.yaml", observed.build(), _Arts(), **kw)  # type: ignore[arg-type]


def test_new_cluster_formats_every_node_into_one_cluster_and_quorum() -> None:
    spec = kraft_lab()
    plan = plan_for(spec, Observed.bare_cluster(spec))
    fmt = [s for s in plan.steps if s.kind is StepKind.FORMAT_STORAGE]
    assert sorted(s.address for s in fmt) == ["broker.1", "broker.2", "broker.3", "controller.101",
                                              "controller.102", "controller.103"]
    assert len({s.cluster_id for s in fmt}) == 1
    initial = {s.initial_controllers for s in fmt if s.service == "kafka-controller"}
    assert len(initial) == 1
    (voters,) = initial
    parts = voters.split(",")  # type: ignore[union-attr]
    assert [p.split("@")[0] for p in parts] == ["101", "102", "103"]
    assert [p.split("@")[1].rsplit(":", 1)[0] for p in parts] == ["10.213.0.11:9093", "10.213.0.12:9093",
                                                                  "10.213.0.13:9093"]
    assert all(len(p.rsplit(":", 1)[1]) == 22 and not p.rsplit(":", 1)[1].startswith("-") for p in parts)
    assert all(s.initial_controllers is None for s in fmt if s.service == "kafka")  # brokers are no voters
    # format after the config and before the start, per node; controllers and brokers start together
    g = plan.graph()
    import networkx as nx

    for s in fmt:
        start = f"start:{s.service}@{s.host}"
        assert nx.has_path(g, f"configure:{s.service}@{s.host}", s.id) and nx.has_path(g, s.id, start)
    assert not nx.has_path(g, "start:kafka-controller@10.213.0.11", "start:kafka@10.213.0.12")
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in render_text(plan)


def test_converged_cluster_plans_nothing_and_keeps_its_cluster_id() -> None:
    spec = kraft_lab()
    plan = plan_for(spec, Observed.converged_cluster(spec, IDS))
    assert plan.empty
    ids, errors = pipeline.kraft_ids(spec, Observed.converged_cluster(spec, IDS).build())
    assert not errors and ids is not None and ids.cluster_id == CLUSTER_ID and ids.initial_controllers is None


def test_hosts_of_two_clusters_are_refused() -> None:
    spec = kraft_lab()
    obs = Observed.converged_cluster(spec, IDS).on("10.213.0.12").file(
        f"/var/lib/kafka/data/{F.META_PROPERTIES}", "node.id=2\ncluster.id=SomeOtherCluster000000\n")
    _, errors = pipeline.kraft_ids(spec, obs.build())
    assert errors and "belongs to different clusters" in errors[0].message


def test_a_new_broker_joins_without_initial_controllers() -> None:
    spec = kraft_lab()
    data = spec.model_dump()
    data["brokers"] = [*data["brokers"], {"id": 4, "host": "10.213.0.14", "rack": "rack-a",
                                          "data_dirs": ["/var/lib/kafka/data"]}]
    data["allow_uneven_racks"] = True
    bigger = parse_spec(data)
    plan = plan_for(bigger, Observed.converged_cluster(spec, IDS).host("10.213.0.14").bare())
    fmt = [s for s in plan.steps if s.kind is StepKind.FORMAT_STORAGE]
    assert [(s.address, s.cluster_id, s.initial_controllers) for s in fmt] == [("broker.4", CLUSTER_ID, None)]


def test_roll_order_controllers_followers_then_the_active_one_then_brokers() -> None:
    spec = kraft_lab(num__partitions=4)  # a setting the controllers act on too
    base = kraft_lab()
    plan = plan_for(spec, Observed.converged_cluster(base, IDS).quorum(leader=102))
    restarts = [s.address for s in plan.steps if s.kind is StepKind.RESTART]
    assert restarts == ["controller.101", "controller.103", "controller.102", "broker.1", "broker.2", "broker.3"]
    for s in plan.steps:
        if s.kind is StepKind.RESTART and s.service == "kafka-controller":
            assert "KafkaQuorumCheck" in (s.availability or "") and s.voter and not s.unavailable


def test_broker_only_settings_do_not_roll_the_controllers() -> None:
    spec = kraft_lab(log__retention__hours=48)
    plan = plan_for(spec, Observed.converged_cluster(kraft_lab(), IDS))
    assert {s.service for s in plan.steps if s.kind is StepKind.RESTART} == {"kafka"}
    assert "log.retention.hours" not in F.controller_config(spec)
    assert F.controller_config(spec)["super.users"] == "User:ANONYMOUS"


def test_restart_refused_when_another_controller_is_down() -> None:
    spec = kraft_lab(num__partitions=4)
    obs = Observed.converged_cluster(kraft_lab(), IDS).on("10.213.0.13").service("kafka-controller", "inactive")
    try:
        plan_for(spec, obs)
    except pipeline.PlanRefused as e:
        text = str(e)
    else:
        raise AssertionError("the plan should be refused")
    assert "controller.101: restart refused" in text and "KafkaQuorumCheck" in text
    assert "--allow-unavailable" in text


def test_quorum_check_is_strimzis_rule() -> None:
    def q(behind: dict[int, int], leader: int = 101) -> Quorum:
        return Quorum(kind="kraft", leader_id=leader, voters=tuple(
            QuorumMember(node_id=v, last_caught_up_ms=1000 - behind.get(v, 0)) for v in (101, 102, 103, 104, 105)))

    assert can_restart_voter(q({}), 102).ok
    # one lagging follower of five: restarting another leaves leader + 2 caught up = 3 >= (5 + 2) // 2
    assert can_restart_voter(q({103: 5000}), 102).ok
    assert not can_restart_voter(q({103: 5000, 104: 5000}), 102).ok
    assert not can_restart_voter(q({}), 102, down=frozenset({103, 104})).ok
    assert can_restart_voter(q({}), 7).ok  # not a voter: an observer does not count
    assert not can_restart_voter(None, 102).ok


def test_combined_single_node_cluster() -> None:
    spec = load_spec(SPECS / "good" / "kraft_combined_single_node.yaml")
    plan = plan_for(spec, Observed.bare_cluster(spec))
    fmt = [s for s in plan.steps if s.kind is StepKind.FORMAT_STORAGE]
    assert [s.address for s in fmt] == ["broker.1"]
    assert fmt[0].initial_controllers and fmt[0].initial_controllers.startswith("1@10.0.0.1:9093:")
    props = F.parse_properties(F.server_properties(spec, spec.brokers[0]))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://10.0.0.1:9092,CONTROLLER://10.0.0.1:9093"
    converged = plan_for(spec, Observed.converged_cluster(spec, ArtifactIds(kafka=IDS.kafka)))
    assert converged.empty


def test_describe_quorum_response_is_read_with_directory_ids_as_kafka_writes_them() -> None:
    doc = {"topics": [{"partitions": [{"leader_id": 102, "leader_epoch": 7, "high_watermark": 50, "current_voters": [
        {"replica_id": 101, "replica_directory_id": "1c9ecc8a-5fb0-4686-ac13-aef31e6fd9c9", "log_end_offset": 50,
         "last_caught_up_timestamp": 1000, "last_fetch_timestamp": 1000}], "observers": []}]}],
        "nodes": [{"node_id": 101, "listeners": [{"name": "CONTROLLER", "host": "10.213.0.11", "port": 9093}]}]}
    q = kraft.to_quorum(doc)
    assert q.leader_id == 102 and q.leader_epoch == 7 and q.voter_ids == (101,)
    raw = bytes.fromhex("1c9ecc8a5fb04686ac13aef31e6fd9c9")
    assert q.voters[0].directory_id == base64.urlsafe_b64encode(raw).decode().rstrip("=")  # as meta.properties
    assert q.endpoints == {101: "10.213.0.11:9093"}


def test_upgrade_rolls_controllers_then_brokers_then_finalizes_metadata_version() -> None:
    old = parse_spec({**yaml.safe_load(KRAFT_LAB_YAML.read_text()), "kafka": {
        **yaml.safe_load(KRAFT_LAB_YAML.read_text())["kafka"], "version": "4.3.1"}})
    new = kraft_lab()
    old_ids = ArtifactIds(kafka="kafka-4.3.1-577b419932b7")
    obs = Observed.converged_cluster(old, old_ids).quorum(leader=101).features(metadata_version=30)
    plan = plan_for(new, obs)
    restarts = [s.address for s in plan.steps if s.kind is StepKind.RESTART]
    assert restarts == ["controller.102", "controller.103", "controller.101", "broker.1", "broker.2", "broker.3"]
    (feat,) = [s for s in plan.steps if s.kind is StepKind.UPDATE_FEATURES]
    assert feat.feature_levels == {"metadata.version": 33}  # named explicitly: never kraft.version
    import networkx as nx

    g = plan.graph()
    assert all(nx.has_path(g, f"restart:{s.service}@{s.host}", feat.id) for s in plan.steps
               if s.kind is StepKind.RESTART)
    text = render_text(plan)
    assert 'metadata.version = "4.3-IV0 (level 30)" -> "4.4-IV2 (level 33)"' in text
    assert "finalize metadata.version 33 (UpdateFeatures)" in text


def test_metadata_version_is_never_downgraded() -> None:
    obs = Observed.converged_cluster(kraft_lab(), IDS).features(metadata_version=33)
    older = parse_spec({**yaml.safe_load(KRAFT_LAB_YAML.read_text()), "kafka": {
        **yaml.safe_load(KRAFT_LAB_YAML.read_text())["kafka"], "version": "4.3.1"}})
    try:
        plan_for(older, obs)
    except pipeline.PlanRefused as e:
        assert "kafka.version" in str(e) and "never downgrades metadata.version" in str(e)
    else:
        raise AssertionError("a downgrade below the cluster's metadata.version must be refused")


def test_converged_cluster_at_its_metadata_version_plans_nothing() -> None:
    assert plan_for(kraft_lab(), Observed.converged_cluster(kraft_lab(), IDS).features(metadata_version=33)).empty


def _four_brokers() -> ClusterSpec:
    data = kraft_lab().model_dump()
    data["brokers"] = [*data["brokers"], {"id": 4, "host": "10.213.0.14", "rack": "rack-a",
                                          "data_dirs": ["/var/lib/kafka/data"]}]
    data["allow_uneven_racks"] = True
    return parse_spec(data)


def test_scale_in_drains_stops_then_unregisters_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    # the sizes DescribeLogDirs would give (the plan reads them when data moves; no broker here)
    monkeypatch.setattr(pipeline, "partition_sizes", lambda spec, progress=None: {("t", p): 2**20 for p in range(4)})
    four = _four_brokers()
    obs = Observed.converged_cluster(four, IDS)
    for p in range(4):
        obs = obs.partition("t", p, replicas=(4, 1, 2) if p % 2 else (1, 2, 4))
    plan = plan_for(kraft_lab(), obs)
    kinds = [s.kind for s in plan.steps]
    assert StepKind.REASSIGN in kinds and StepKind.UNREGISTER_BROKERS in kinds
    (unreg,) = [s for s in plan.steps if s.kind is StepKind.UNREGISTER_BROKERS]
    assert unreg.unregister == (4,)
    import networkx as nx

    g = plan.graph()
    assert nx.has_path(g, "reassign:partitions", "stop:kafka@10.213.0.14")
    assert nx.has_path(g, "stop:kafka@10.213.0.14", unreg.id)
    assert "unregister broker(s) 4 (ClusterTool)" in render_text(plan)


def test_sizes_are_read_only_from_brokers_that_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scale-in planned while no broker answers plans by replica counts at once, instead of the
    Admin client waiting out its bootstrap timeout (30 s) for sizes it cannot get."""
    asked: list[str] = []
    monkeypatch.setattr(pipeline, "partition_sizes",
                        lambda spec, progress=None: asked.append(spec.name) or {("t", 0): 5})
    obs = Observed.converged_cluster(_four_brokers(), IDS)
    for p in range(4):
        obs = obs.partition("t", p, replicas=(4, 1, 2) if p % 2 else (1, 2, 4))
    up = obs.build()
    down = up.model_copy(update={"cluster": up.cluster.model_copy(update={"kafka_reachable": False})})
    notes: list[str] = []
    assert pipeline.partition_sizes_if_moving(kraft_lab(), down, notes.append) == {} and not asked
    assert notes == ["partition sizes unavailable (no broker answered); planning by replica counts"]
    assert pipeline.partition_sizes_if_moving(kraft_lab(), up) == {("t", 0): 5} and len(asked) == 1


def test_a_registration_left_behind_is_unregistered() -> None:
    obs = Observed.converged_cluster(kraft_lab(), IDS)
    obs._broker_ids.add(4)  # registered (fenced) while no host runs it any more
    plan = plan_for(kraft_lab(), obs.fenced(4))
    assert [(s.kind, s.unregister) for s in plan.steps] == [(StepKind.UNREGISTER_BROKERS, (4,))]


def _five_controllers() -> ClusterSpec:
    data = kraft_lab().model_dump()
    data["controllers"] = [*data["controllers"], {"id": 104, "host": "10.213.0.14"}, {"id": 105, "host": "10.213.0.15"}]
    return parse_spec(data)


def test_quorum_grows_by_adding_voters_without_restarting_anyone() -> None:
    five = _five_controllers()
    plan = plan_for(five, Observed.converged_cluster(kraft_lab(), IDS).host("10.213.0.14").bare()
                    .host("10.213.0.15").bare())
    assert not [s for s in plan.steps if s.kind is StepKind.RESTART], "no running node restarts"
    fmt = {s.address: s for s in plan.steps if s.kind is StepKind.FORMAT_STORAGE}
    assert set(fmt) == {"controller.104", "controller.105"}
    assert all(s.initial_controllers is None and s.voter for s in fmt.values())  # join as observers
    adds = [s for s in plan.steps if s.kind is StepKind.ADD_VOTER]
    assert [(s.voter_id, s.host) for s in adds] == [(104, "10.213.0.14"), (105, "10.213.0.15")]
    import networkx as nx

    g = plan.graph()
    assert nx.has_path(g, "start:kafka-controller@10.213.0.14", adds[0].id) and g.has_edge(adds[0].id, adds[1].id)
    configured = {s.address for s in plan.steps if s.kind is StepKind.CONFIGURE}
    assert {"controller.101", "broker.1"} <= configured  # the new bootstrap servers, written without a restart
    assert "read only at start: written, no restart" in render_text(plan)


def test_quorum_shrinks_by_removing_voters_before_they_stop() -> None:
    five = _five_controllers()
    obs = Observed.converged_cluster(five, IDS)
    plan = plan_for(kraft_lab(), obs)
    removes = [s for s in plan.steps if s.kind is StepKind.REMOVE_VOTER]
    assert [s.voter_id for s in removes] == [104, 105]
    assert all(s.voter_dir and s.host in ("10.213.0.11", "10.213.0.12", "10.213.0.13") for s in removes)
    import networkx as nx

    g = plan.graph()
    assert nx.has_path(g, removes[0].id, "stop:kafka-controller@10.213.0.14")
    assert nx.has_path(g, removes[1].id, "stop:kafka-controller@10.213.0.15")
    assert not [s for s in plan.steps if s.kind is StepKind.RESTART]


def test_controller_only_hosts_converge_and_are_never_taken_for_brokers() -> None:
    """A controller-only host has the kafka build but no broker: nothing to remove there."""
    five = _five_controllers()
    observed = Observed.converged_cluster(five, IDS)  # (voters from the spec)
    assert plan_for(five, observed).empty
    shrink = plan_for(kraft_lab(), Observed.converged_cluster(five, IDS))
    leaving = {(s.kind, s.address) for s in shrink.steps if s.host in ("10.213.0.14", "10.213.0.15")}
    assert leaving == {(k, f"controller.{n}") for k in (StepKind.STOP, StepKind.REMOVE) for n in (104, 105)}
    destroy = pipeline.destroy_changes(Observed.converged_cluster(five, IDS).build())
    assert sorted(c.address for c in destroy if c.host == "10.213.0.14") == ["controller.104"]


def test_most_of_a_new_quorum_must_already_vote() -> None:
    data = kraft_lab().model_dump()
    data["controllers"] = [{"id": 104, "host": "10.213.0.14"}, {"id": 105, "host": "10.213.0.15"},
                           {"id": 101, "host": "10.213.0.11"}]
    spec = parse_spec(data)
    try:
        plan_for(spec, Observed.converged_cluster(kraft_lab(), IDS).host("10.213.0.14").bare()
                 .host("10.213.0.15").bare())
    except pipeline.PlanRefused as e:
        assert "Change fewer controllers per apply" in str(e)
    else:
        raise AssertionError("replacing most voters at once must be refused")
