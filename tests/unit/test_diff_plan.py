"""diff + plan on built observed states: what changes, in which order, and what people see."""

from __future__ import annotations

import itertools
import json
import re

import networkx as nx
import pytest
import yaml

from reconciler import files as F
from reconciler.diff import Action, ArtifactIds, Change, DiffResult, diff
from reconciler.observe.model import ObservedCluster
from reconciler.pipeline import destroy_changes
from reconciler.plan.build import build_plan
from reconciler.plan.model import Gate, GateKind, Plan, RestartReason, Step, StepKind
from reconciler.plan.planfile import spec_digest
from reconciler.plan.render import NO_CHANGES, render_json, render_text
from reconciler.spec import ClusterSpec, parse_spec

from .builders import Observed
from .conftest import ARTS, LAB_YAML

H1, H2, H3 = "10.213.0.11", "10.213.0.12", "10.213.0.13"


def spec_with(**kafka_config: object) -> ClusterSpec:
    """lab.yaml with extra/overridden kafka.config keys (dots spelled with __ in the keyword)."""
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["config"].update({k.replace("__", "."): v for k, v in kafka_config.items()})
    return parse_spec(data)


def ok_diff(spec: ClusterSpec, observed: ObservedCluster, arts: ArtifactIds = ARTS) -> list[Change]:
    result = diff(spec, observed, arts)
    assert result.errors == [], [str(e) for e in result.errors]
    return result.changes


def make_plan(spec: ClusterSpec, observed: ObservedCluster, arts: ArtifactIds = ARTS) -> Plan:
    return build_plan(ok_diff(spec, observed, arts), observed, spec_path="/specs/lab.yaml",
                      spec_digest=spec_digest(spec))


def steps_of(plan: Plan, kind: StepKind, service: str | None = None) -> list[Step]:
    return [s for s in plan.steps if s.kind is kind and (service is None or s.service == service)]


def by_address(changes: list[Change] | tuple[Change, ...]) -> dict[str, Change]:
    return {c.address: c for c in changes}


def assert_order_respects_edges(plan: Plan) -> None:
    pos = {s.id: i for i, s in enumerate(plan.steps)}
    assert len(pos) == len(plan.steps), "step ids must be unique"
    for a, b in plan.edges:
        assert pos[a] < pos[b], f"{a} is listed after {b} but must run before it"
    assert nx.is_directed_acyclic_graph(plan.graph())


# --- create from bare hosts --------------------------------------------------------------------


@pytest.fixture
def bare_plan(lab_spec: ClusterSpec) -> Plan:
    return make_plan(lab_spec, Observed.bare_cluster(lab_spec).build())


def test_bare_hosts_create_everything(bare_plan: Plan) -> None:
    assert [c.address for c in bare_plan.changes] == [
        "zookeeper.1", "zookeeper.2", "zookeeper.3", "broker.1", "broker.2", "broker.3"]
    assert all(c.action is Action.CREATE for c in bare_plan.changes)
    assert bare_plan.counts() == {"add": 6, "change": 0, "destroy": 0}
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in render_text(bare_plan)
    broker1 = by_address(bare_plan.changes)["broker.1"]
    assert broker1.install_java and broker1.configure and broker1.start and not broker1.restart
    assert broker1.install_artifact == ARTS.kafka
    assert {a.name: a.after for a in broker1.attrs}["rack"] == "rack-a"


def test_bare_hosts_steps(bare_plan: Plan) -> None:
    for host in (H1, H2, H3):
        kinds = sorted((s.kind.value, s.service or "") for s in bare_plan.steps if s.host == host)
        assert kinds == sorted([
            ("install_java", ""),
            ("install_artifact", "kafka"), ("install_artifact", "zookeeper"),
            ("configure", "kafka"), ("configure", "zookeeper"),
            ("start", "kafka"), ("start", "zookeeper"),
        ])
    assert steps_of(bare_plan, StepKind.RESTART) == []
    assert steps_of(bare_plan, StepKind.STOP) == [] and steps_of(bare_plan, StepKind.REMOVE) == []
    install = steps_of(bare_plan, StepKind.INSTALL_ARTIFACT, "zookeeper")
    assert {s.artifact_id for s in install} == {ARTS.zookeeper}
    configure = steps_of(bare_plan, StepKind.CONFIGURE, "kafka")[0]
    markers = {F.owner_marker(d) for d in ("/etc/kafka", "/var/log/kafka", "/var/lib/kafka/data")}
    assert set(configure.file_hashes) == {F.SERVER_PROPERTIES, "/etc/kafka/log4j.properties", F.KAFKA_UNIT, *markers}
    assert {str(s.gate) for s in steps_of(bare_plan, StepKind.START, "kafka")} == {
        "broker_registered:1", "broker_registered:2", "broker_registered:3"}
    assert_order_respects_edges(bare_plan)


def test_every_kafka_start_waits_for_every_zookeeper_start(bare_plan: Plan) -> None:
    g = bare_plan.graph()
    zk = steps_of(bare_plan, StepKind.START, "zookeeper")
    kafka = steps_of(bare_plan, StepKind.START, "kafka")
    assert len(zk) == 3 and len(kafka) == 3
    for z, k in itertools.product(zk, kafka):
        assert nx.has_path(g, z.id, k.id), f"{k.id} does not wait for {z.id}"
    pos = {s.id: i for i, s in enumerate(bare_plan.steps)}
    assert max(pos[z.id] for z in zk) < min(pos[k.id] for k in kafka)


def test_per_resource_step_chain(bare_plan: Plan) -> None:
    g = bare_plan.graph()
    for host, svc in itertools.product((H1, H2, H3), ("kafka", "zookeeper")):
        chain = [f"install_java:host@{host}", f"install_artifact:{svc}@{host}", f"configure:{svc}@{host}",
                 f"start:{svc}@{host}"]
        for a, b in itertools.pairwise(chain):
            assert g.has_edge(a, b), (a, b)


def test_java_installed_only_where_missing(lab_spec: ClusterSpec) -> None:
    obs = Observed.bare_cluster(lab_spec).on(H2).java().build()
    plan = make_plan(lab_spec, obs)
    assert {s.host for s in steps_of(plan, StepKind.INSTALL_JAVA)} == {H1, H3}


# --- converged ---------------------------------------------------------------------------------


def test_converged_cluster_has_no_changes(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).controller(2).build()
    assert ok_diff(lab_spec, obs) == []
    plan = make_plan(lab_spec, obs)
    assert plan.empty and plan.steps == () and plan.edges == ()
    assert render_text(plan) == "No changes. The cluster matches the spec.\n"
    assert render_text(plan) == NO_CHANGES + "\n"
    doc = render_json(plan)
    assert doc["no_changes"] is True
    assert doc["summary"] == {"add": 0, "change": 0, "destroy": 0}


# --- config change: rolling restart ------------------------------------------------------------


def test_config_change_rolls_brokers_one_at_a_time_controller_last(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).controller(1).build()
    new = spec_with(log__retention__hours=48)
    plan = make_plan(new, obs)

    assert [c.address for c in plan.changes] == ["broker.1", "broker.2", "broker.3"]
    for c in plan.changes:
        assert c.action is Action.UPDATE and c.rolling_restart
        assert not c.start and c.install_artifact is None and not c.install_java
        assert [(a.name, a.before, a.after) for a in c.attrs] == [("config.log.retention.hours", "24", "48")]
        assert c.reasons == (f"{F.SERVER_PROPERTIES} differs from the spec",)
    assert plan.counts() == {"add": 0, "change": 3, "destroy": 0}

    text = render_text(plan)
    assert text.count("~ broker") == 3 and "+ broker" not in text and "zookeeper." not in text
    assert text.count("will be updated in-place (rolling restart)") == 3
    for host, bid in ((H1, 1), (H2, 2), (H3, 3)):
        assert f"# broker.{bid} on {host} will be updated in-place (rolling restart)" in text
    assert text.count('~ config.log.retention.hours = "24" -> "48"') == 3
    assert "Plan: 0 to add, 3 to change, 0 to destroy." in text

    restarts = steps_of(plan, StepKind.RESTART)
    assert [s.address for s in restarts] == ["broker.2", "broker.3", "broker.1"]  # controller (1) last
    assert {s.restart_reasons for s in restarts} == {(RestartReason.CONFIG,)}
    assert [s.gate for s in restarts] == [Gate(kind=GateKind.BROKER_REGISTERED, node=n) for n in (2, 3, 1)]
    assert text.count("because: its configuration changed and the change needs a restart") == 3
    assert "waits for: broker 2 registered and serving; after a restart its replicas back in sync" in text
    (elect,) = steps_of(plan, StepKind.ELECT_LEADERS)  # planned, shown, after the whole roll
    assert all(nx.has_path(plan.graph(), s.id, elect.id) for s in restarts)
    assert "move leadership back to the preferred replicas (ElectLeaders) on cluster" in text
    ids = [s.id for s in restarts]
    for a, b in itertools.pairwise(ids):
        assert (a, b) in plan.edges
    # Chained: every restart depends on the previous one, so no two can run together.
    g = plan.graph()
    for a, b in itertools.combinations(ids, 2):
        assert nx.has_path(g, a, b) or nx.has_path(g, b, a)
    for s in restarts:
        assert g.has_edge(f"configure:kafka@{s.host}", s.id)
    assert_order_respects_edges(plan)


def test_restart_order_without_known_controller_is_by_id(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).controller(None).build()
    plan = make_plan(spec_with(num__partitions=6), obs)
    assert [s.address for s in steps_of(plan, StepKind.RESTART)] == ["broker.1", "broker.2", "broker.3"]


def test_zookeeper_change_restarts_followers_before_leader(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).zk_mode(H1, "leader").build()
    data = yaml.safe_load(LAB_YAML.read_text())
    data["zookeeper"]["config"] = {"maxClientCnxns": 100}
    plan = make_plan(parse_spec(data), obs)
    assert [c.address for c in plan.changes] == ["zookeeper.1", "zookeeper.2", "zookeeper.3"]
    assert all(c.rolling_restart for c in plan.changes)
    assert plan.changes[0].attrs[0].model_dump() == {"name": "config.maxClientCnxns", "before": None,
                                                      "after": "100"}
    restarts = [s.address for s in steps_of(plan, StepKind.RESTART)]
    assert restarts == ["zookeeper.2", "zookeeper.3", "zookeeper.1"]  # leader (on H1) last
    assert_order_respects_edges(plan)


# --- drift -------------------------------------------------------------------------------------


def test_hand_edited_server_properties_changes_that_broker_only(lab_spec: ClusterSpec) -> None:
    obs = (Observed.converged_cluster(lab_spec, ARTS)
           .on(H2).edit(F.SERVER_PROPERTIES, "num.partitions=3", "num.partitions=12")
           .build())
    changes = ok_diff(lab_spec, obs)
    assert [c.address for c in changes] == ["broker.2"]
    c = changes[0]
    assert c.host == H2 and c.action is Action.UPDATE and c.configure and c.restart
    assert [(a.name, a.before, a.after) for a in c.attrs] == [("config.num.partitions", "12", "3")]
    text = render_text(make_plan(lab_spec, obs))
    assert f"because {F.SERVER_PROPERTIES} differs from the spec" in text
    assert '~ config.num.partitions = "12" -> "3"' in text
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in text


def test_hand_added_key_is_shown_as_removed(lab_spec: ClusterSpec) -> None:
    props = F.server_properties(lab_spec, lab_spec.brokers[0]) + "message.max.bytes=5000000\n"
    obs = Observed.converged_cluster(lab_spec, ARTS).on(H1).file(F.SERVER_PROPERTIES, props).build()
    (c,) = ok_diff(lab_spec, obs)
    assert [(a.name, a.before, a.after) for a in c.attrs] == [("config.message.max.bytes", "5000000", None)]
    assert '- config.message.max.bytes = "5000000"' in render_text(make_plan(lab_spec, obs))


def test_missing_unit_file_is_rewritten(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).on(H3).missing(F.ZK_UNIT).build()
    (c,) = ok_diff(lab_spec, obs)
    assert c.address == "zookeeper.3" and c.configure and c.restart
    assert c.reasons == (f"{F.ZK_UNIT} is missing",)


def test_stopped_service_is_started_not_restarted(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).on(H3).service("kafka", "inactive").build()
    (c,) = ok_diff(lab_spec, obs)
    assert c.address == "broker.3" and c.action is Action.UPDATE
    assert c.start and not c.restart and not c.configure and c.install_artifact is None
    assert c.reasons == ("kafka service is inactive",)
    plan = make_plan(lab_spec, obs)
    assert [(s.kind, s.host) for s in plan.steps] == [(StepKind.START, H3)]
    text = render_text(plan)
    assert "(rolling restart)" not in text
    assert '~ service = "inactive" -> "active"' in text


def test_failed_service_is_started(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).on(H1).service("zookeeper", "failed").build()
    (c,) = ok_diff(lab_spec, obs)
    assert c.address == "zookeeper.1" and c.start and not c.restart


# --- refusals ----------------------------------------------------------------------------------


def test_unreachable_host_is_an_error_naming_it(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).unreachable(H2, "ssh: connection timed out").build()
    result = diff(lab_spec, obs, ARTS)
    assert isinstance(result, DiffResult)
    assert result.changes == []
    assert len(result.errors) == 1
    err = result.errors[0]
    assert err.path == f"host {H2}"
    assert "ssh: connection timed out" in err.message and "not planning without it" in err.message


def test_host_running_another_broker_id_is_an_error(lab_spec: ClusterSpec) -> None:
    obs = (Observed.converged_cluster(lab_spec, ARTS)
           .on(H2).edit(F.SERVER_PROPERTIES, "broker.id=2\n", "broker.id=7\n").build())
    result = diff(lab_spec, obs, ARTS)
    assert [e.path for e in result.errors] == ["brokers[1].id"]
    msg = result.errors[0].message
    assert f"{H2} runs broker 7" in msg and "cannot change in place" in msg
    assert "broker.2" not in [c.address for c in result.changes]


def test_heap_too_large_for_host_is_an_error(lab_spec: ClusterSpec) -> None:
    obs = Observed.bare_cluster(lab_spec).on(H3).memory(256 * 2**20).build()
    result = diff(lab_spec, obs, ARTS)
    assert [(e.path, H3 in e.message) for e in result.errors] == [("kafka.heap", True)]


def test_heap_change_restarts_because_the_unit_changed(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).controller(1).build()
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["heap"] = "640m"
    plan = make_plan(parse_spec(data), obs)
    restarts = steps_of(plan, StepKind.RESTART)
    assert len(restarts) == 3 and {s.restart_reasons for s in restarts} == {(RestartReason.UNIT,)}
    assert "because: its service unit changed (JVM options, heap, build path)" in render_text(plan)


# --- removal -----------------------------------------------------------------------------------


def two_broker_spec() -> ClusterSpec:
    """lab.yaml without broker 3 (ZooKeeper stays on all three hosts)."""
    data = yaml.safe_load(LAB_YAML.read_text())
    data["brokers"] = data["brokers"][:2]
    data["kafka"]["config"].update({"default.replication.factor": 2, "offsets.topic.replication.factor": 2,
                                    "transaction.state.log.replication.factor": 2,
                                    "transaction.state.log.min.isr": 1, "min.insync.replicas": 1})
    return parse_spec(data)


def observed_with_leftover_broker3(lab_spec: ClusterSpec) -> Observed:
    new = two_broker_spec()
    old_props = F.server_properties(lab_spec, lab_spec.brokers[2])
    return (Observed.converged_cluster(new, ARTS)
            .on(H3).file(F.SERVER_PROPERTIES, old_props).artifact("kafka", ARTS.kafka).service("kafka"))


def test_broker_not_in_spec_is_destroyed(lab_spec: ClusterSpec) -> None:
    obs = observed_with_leftover_broker3(lab_spec).build()
    new = two_broker_spec()
    changes = ok_diff(new, obs)
    assert [(c.address, c.action) for c in changes] == [("broker.3", Action.DELETE)]
    plan = make_plan(new, obs)
    assert [s.id for s in plan.steps] == [f"stop:kafka@{H3}", f"remove:kafka@{H3}"]
    assert (f"stop:kafka@{H3}", f"remove:kafka@{H3}") in plan.edges
    text = render_text(plan)
    assert f"# broker.3 on {H3} will be destroyed" in text
    assert '- broker "3" {' in text
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in text


def test_destroy_stops_brokers_before_zookeeper(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).build()
    plan = build_plan(destroy_changes(obs), obs, spec_path="/specs/lab.yaml",
                      spec_digest=spec_digest(lab_spec), destroy=True)
    assert plan.counts() == {"add": 0, "change": 0, "destroy": 6}
    g = plan.graph()
    kafka_stops, zk_stops = steps_of(plan, StepKind.STOP, "kafka"), steps_of(plan, StepKind.STOP, "zookeeper")
    assert len(kafka_stops) == 3 and len(zk_stops) == 3
    for k, z in itertools.product(kafka_stops, zk_stops):
        assert nx.has_path(g, k.id, z.id)
    assert_order_respects_edges(plan)


# --- artifacts ---------------------------------------------------------------------------------


def test_kafka_upgrade_installs_and_rolls(lab_spec: ClusterSpec) -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["version"] = "3.8.1"
    old_spec = parse_spec(data)
    old_arts = ArtifactIds(kafka="kafka-3.8.1-aaaaaaaaaaaa", zookeeper=ARTS.zookeeper)
    obs = Observed.converged_cluster(old_spec, old_arts).controller(3).build()
    plan = make_plan(lab_spec, obs)
    assert [c.address for c in plan.changes] == ["broker.1", "broker.2", "broker.3"]
    for c in plan.changes:
        assert c.install_artifact == ARTS.kafka and c.restart and not c.start
        assert c.reasons[0] == f"{ARTS.kafka} is not installed (installed: kafka-3.8.1-aaaaaaaaaaaa)"
        assert ("version", "3.8.1", "3.9.1") in [(a.name, a.before, a.after) for a in c.attrs]
    installs = steps_of(plan, StepKind.INSTALL_ARTIFACT)
    assert {(s.host, s.artifact_id) for s in installs} == {(h, ARTS.kafka) for h in (H1, H2, H3)}
    # two rolls, controller (3) last in each: first with the protocol held at 3.8, then raised
    restarts = steps_of(plan, StepKind.RESTART)
    assert [s.address for s in restarts] == ["broker.1", "broker.2", "broker.3"] * 2
    assert [s.id.endswith("#final") for s in restarts] == [False] * 3 + [True] * 3
    assert all(RestartReason.NEW_BUILD in s.restart_reasons for s in restarts[:3])
    assert {s.restart_reasons for s in restarts[3:]} == {(RestartReason.SECOND_ROLL,)}
    configures = steps_of(plan, StepKind.CONFIGURE)
    assert {s.ibp_pin for s in configures if not s.id.endswith("#final")} == {"3.8"}
    assert {s.ibp_pin for s in configures if s.id.endswith("#final")} == {None}
    g = plan.graph()
    for s in installs:
        assert nx.has_path(g, s.id, f"restart:kafka@{s.host}")
    for first in restarts[:3]:
        for final in (c for c in configures if c.id.endswith("#final")):
            assert nx.has_path(g, first.id, final.id), "the protocol is raised only after the whole first roll"
    text = render_text(plan)
    assert '~ version' in text and '"3.8.1" -> "3.9.1"' in text
    assert "inter.broker.protocol.version held at 3.8" in text and "second roll" in text
    assert_order_respects_edges(plan)


OLD_KAFKA = "kafka-3.8.1-aaaaaaaaaaaa"


def interrupted_upgrade(lab_spec: ClusterSpec, upgraded: tuple[str, ...]) -> ObservedCluster:
    """An upgrade 3.8.1 -> 3.9.1 stopped during its first roll: every host has both builds, the
    pinned files and the new unit; only the brokers on `upgraded` hosts run the new build."""
    obs = Observed.converged_cluster(lab_spec, ARTS).controller(3)
    for b in lab_spec.brokers:
        pinned = F.broker_desired(lab_spec, b, ARTS.kafka, ibp_pin="3.8")
        obs.on(b.host).artifact("kafka", OLD_KAFKA)
        for f in pinned.files:
            obs.file(f.path, f.content)
        obs.running("kafka", ARTS.kafka if b.host in upgraded else OLD_KAFKA)
    return obs.build()


def test_resumed_upgrade_keeps_the_protocol_until_every_broker_runs_the_new_build(lab_spec: ClusterSpec) -> None:
    plan = make_plan(lab_spec, interrupted_upgrade(lab_spec, (H1,)))
    restarts = steps_of(plan, StepKind.RESTART)
    first = [s for s in restarts if not s.id.endswith("#final")]
    final = [s for s in restarts if s.id.endswith("#final")]
    assert [s.host for s in first] == [H2, H3], "broker 1 already runs 3.9.1 with the pinned files"
    assert [s.host for s in final] == [H1, H2, H3]
    by_addr = {c.address: c for c in plan.changes}
    assert {c.ibp_pin for c in by_addr.values()} == {"3.8"}
    assert "the running process is kafka-3.8.1-aaaaaaaaaaaa" in " ".join(by_addr["broker.2"].reasons)
    g = plan.graph()
    for s in first:
        for c in (x for x in steps_of(plan, StepKind.CONFIGURE) if x.id.endswith("#final")):
            assert nx.has_path(g, s.id, c.id), "raised only once brokers 2 and 3 run the new build"
    assert_order_respects_edges(plan)


def test_upgrade_resumed_after_its_first_roll_only_raises_the_protocol(lab_spec: ClusterSpec) -> None:
    plan = make_plan(lab_spec, interrupted_upgrade(lab_spec, (H1, H2, H3)))
    assert {c.ibp_pin for c in plan.changes} == {None}, "every broker runs 3.9.1: no pin any more"
    restarts = steps_of(plan, StepKind.RESTART)
    assert [s.host for s in restarts] == [H1, H2, H3] and not any(s.id.endswith("#final") for s in restarts)
    assert all("inter.broker.protocol.version" in " ".join(a.name for a in c.attrs) for c in plan.changes)


def test_process_on_an_old_build_is_restarted(lab_spec: ClusterSpec) -> None:
    obs = (Observed.converged_cluster(lab_spec, ARTS).on(H2).artifact("kafka", "kafka-3.9.1-bbbbbbbbbbbb")
           .running("kafka", "kafka-3.9.1-bbbbbbbbbbbb").build())
    (c,) = ok_diff(lab_spec, obs)
    assert c.address == "broker.2" and c.restart and not c.configure
    assert "the running process is kafka-3.9.1-bbbbbbbbbbbb" in c.reasons[0]
    assert c.restart_reasons == (RestartReason.OTHER_BUILD_RUNNING,)


def test_same_version_new_build_is_installed(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).build()
    rebuilt = ArtifactIds(kafka=ARTS.kafka, zookeeper="zookeeper-3.8.4-cccccccccccc")
    plan = make_plan(lab_spec, obs, rebuilt)
    assert {c.address for c in plan.changes} == {"zookeeper.1", "zookeeper.2", "zookeeper.3"}
    assert all(c.install_artifact == rebuilt.zookeeper and c.restart for c in plan.changes)


def test_half_installed_artifact_without_marker_is_reinstalled(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).on(H1).without_artifact(ARTS.kafka).build()
    (c,) = ok_diff(lab_spec, obs)
    assert c.address == "broker.1" and c.install_artifact == ARTS.kafka and c.restart


# --- secrets -----------------------------------------------------------------------------------

SECRET_OLD = "s3cr3t-old-value"
SECRET_NEW = "s3cr3t-new-value"


def _assert_no_secret(plan: Plan, *secrets: str) -> None:
    text = render_text(plan)
    blob = json.dumps(render_json(plan))
    dumped = plan.model_dump_json()
    for s in secrets:
        assert s not in text and s not in blob and s not in dumped


def test_sensitive_values_never_rendered_on_create(lab_spec: ClusterSpec) -> None:
    spec = spec_with(ssl__keystore__password=SECRET_NEW)
    assert f"ssl.keystore.password={SECRET_NEW}" in F.server_properties(spec, spec.brokers[0])
    plan = make_plan(spec, Observed.bare_cluster(spec).build())
    _assert_no_secret(plan, SECRET_NEW)


def test_sensitive_values_redacted_in_change(lab_spec: ClusterSpec) -> None:
    old = spec_with(ssl__keystore__password=SECRET_OLD)
    new = spec_with(ssl__keystore__password=SECRET_NEW, delegation__token__secret__key="tok-" + SECRET_NEW)
    plan = make_plan(new, Observed.converged_cluster(old, ARTS).build())
    assert len(plan.changes) == 3
    attrs = {a.name: (a.before, a.after) for a in plan.changes[0].attrs}
    assert attrs == {"config.ssl.keystore.password": ("(sensitive)", "(sensitive)"),
                     "config.delegation.token.secret.key": (None, "(sensitive)")}
    text = render_text(plan)
    assert re.search(r'~ config\.ssl\.keystore\.password +\= "\(sensitive\)" -> "\(sensitive\)"', text)
    _assert_no_secret(plan, SECRET_OLD, SECRET_NEW)


def test_sensitive_hand_edit_redacted(lab_spec: ClusterSpec) -> None:
    props = F.server_properties(lab_spec, lab_spec.brokers[1]) + f"ssl.key.password={SECRET_OLD}\n"
    obs = Observed.converged_cluster(lab_spec, ARTS).on(H2).file(F.SERVER_PROPERTIES, props).build()
    plan = make_plan(lab_spec, obs)
    assert '- config.ssl.key.password = "(sensitive)"' in render_text(plan)
    _assert_no_secret(plan, SECRET_OLD)


# --- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_ignores_isr_but_not_drift(lab_spec: ClusterSpec) -> None:
    base = Observed.converged_cluster(lab_spec, ARTS).partition("orders", 0, (1, 2, 3)).build()
    shrunk = Observed.converged_cluster(lab_spec, ARTS).partition("orders", 0, (1, 2, 3), isr=(1,)).build()
    drifted = (Observed.converged_cluster(lab_spec, ARTS).partition("orders", 0, (1, 2, 3))
               .on(H1).edit(F.SERVER_PROPERTIES, "num.partitions=3", "num.partitions=4").build())
    moved = Observed.converged_cluster(lab_spec, ARTS).partition("orders", 0, (2, 3, 1)).build()
    assert base.fingerprint() == shrunk.fingerprint()
    assert base.fingerprint() != drifted.fingerprint()
    assert base.fingerprint() != moved.fingerprint()


def test_owed_second_roll_restart_is_not_pulled_into_the_first_roll(lab_spec: ClusterSpec) -> None:
    from reconciler.apply.state import PendingRestart
    from reconciler.diff import carry_pending_restarts

    obs = interrupted_upgrade(lab_spec, (H1,))
    changes = ok_diff(lab_spec, obs)
    owed = [PendingRestart(step=f"restart:kafka@{h}#final", address=f"broker.{i}", service="kafka", host=h,
                           started_at=None) for i, h in ((1, H1), (2, H2), (3, H3))]
    carried, _ = carry_pending_restarts(changes, lab_spec, obs, owed)
    assert not next(c for c in carried if c.address == "broker.1").restart
