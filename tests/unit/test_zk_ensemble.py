"""ZooKeeper ensemble growth and shrink: planned as a dynamic reconfiguration, quorum-safe order."""

from __future__ import annotations

import base64

import networkx as nx
import yaml

from reconciler import files as F
from reconciler.apply.inventory import host_vars
from reconciler.diff import Action, diff
from reconciler.plan.build import build_plan
from reconciler.plan.model import Plan, StepKind
from reconciler.plan.planfile import spec_digest
from reconciler.plan.render import render_text
from reconciler.spec import ClusterSpec, parse_spec

from .builders import Observed
from .conftest import ARTS, LAB_YAML

H = {i: f"10.213.0.{10 + i}" for i in range(1, 6)}


def spec_with_zk(ids: list[int]) -> ClusterSpec:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["zookeeper"]["nodes"] = [{"myid": i, "host": H[i]} for i in ids]
    return parse_spec(data)


def plan_of(spec: ClusterSpec, obs) -> Plan:  # noqa: ANN001
    result = diff(spec, obs, ARTS)
    assert result.errors == [], [str(e) for e in result.errors]
    return build_plan(result.changes, obs, spec_path="/x.yaml", spec_digest=spec_digest(spec))


def test_zoo_cfg_has_no_membership_and_the_unit_runs_a_composed_copy() -> None:
    spec = spec_with_zk([1, 2, 3])
    cfg = F.zoo_cfg(spec)
    assert "server." not in cfg and "clientPort" not in cfg
    assert "reconfigEnabled=true" in cfg
    unit = F.zookeeper_unit(spec, "/opt/zookeeper/x")
    assert f"ExecStartPre=/bin/sh {F.ZK_RUNTIME_SCRIPT}" in unit
    assert unit.rstrip().splitlines()  # QuorumPeerMain reads the runtime copy, never kafkaform's file
    assert "QuorumPeerMain /var/lib/zookeeper/conf/zoo.cfg" in unit
    script = F.zk_runtime_script(spec)
    assert f"dynamicConfigFile={F.ZK_SEED}" in script and "grep -s '^dynamicConfigFile='" in script


def test_seed_of_a_new_ensemble_lists_every_server_and_a_joiner_the_members_plus_itself() -> None:
    spec = spec_with_zk([1, 2, 3, 4, 5])
    fresh = F.zk_seed(spec, spec.zookeeper.nodes[3], None)
    assert [line.split("=")[0] for line in fresh.splitlines()] == [f"server.{i}" for i in range(1, 6)]
    members = {i: F.zk_server_line(spec, spec.zookeeper.nodes[i - 1])[1] for i in (1, 2, 3)}
    joiner = F.zk_seed(spec, spec.zookeeper.nodes[3], members)
    assert [line.split("=")[0] for line in joiner.splitlines()] == ["server.1", "server.2", "server.3", "server.4"]
    assert "server.4=10.213.0.14:2888:3888:participant;0.0.0.0:2181" in joiner


def test_growth_3_to_5_starts_new_servers_then_reconfigures_then_rolls_brokers(lab_spec: ClusterSpec) -> None:
    spec = spec_with_zk([1, 2, 3, 4, 5])
    obs = Observed.converged_cluster(lab_spec, ARTS).host(H[4]).bare().host(H[5]).bare().build()
    plan = plan_of(spec, obs)
    changes = {c.address: c for c in plan.changes}
    assert changes["zookeeper.4"].action is Action.CREATE and changes["zookeeper.5"].action is Action.CREATE
    ens = changes["zookeeper.ensemble"]
    assert ens.zk_join == (4, 5) and ens.zk_leave == ()
    assert [a.before for a in ens.attrs if a.name == "members"] == ["1,2,3"]
    # existing servers keep running: no zookeeper restart, only brokers roll (zookeeper.connect)
    assert not [s for s in plan.steps if s.kind is StepKind.RESTART and s.service == "zookeeper"]
    g = plan.graph()
    (rc,) = [s.id for s in plan.steps if s.kind is StepKind.ZK_RECONFIG]
    for h in (H[4], H[5]):
        assert nx.has_path(g, f"start:zookeeper@{h}", rc)
    for s in plan.steps:
        if s.kind is StepKind.RESTART and s.service == "kafka":
            assert nx.has_path(g, rc, s.id), "brokers switch to the 5-server connect string after the growth"
    assert "reconfigure the ZooKeeper ensemble: add server(s) 4, 5" in render_text(plan)


def test_joiner_seed_comes_from_the_observed_membership(lab_spec: ClusterSpec) -> None:
    spec = spec_with_zk([1, 2, 3, 4, 5])
    obs = Observed.converged_cluster(lab_spec, ARTS).host(H[4]).bare().host(H[5]).bare().build()
    hv = host_vars(spec, _art("kafka"), _art("zookeeper"), obs.hosts, zk_members=obs.cluster.zookeeper_members)
    seed = hv[H[4]]["kf_zookeeper"]["seed_files"][0]
    assert seed["path"] == F.ZK_SEED
    content = base64.b64decode(seed["content_b64"]).decode()
    assert [x.split("=")[0] for x in content.splitlines()] == ["server.1", "server.2", "server.3", "server.4"]


def _art(name: str):  # noqa: ANN202
    from pathlib import Path

    from reconciler.artifacts import PackedArtifact

    return PackedArtifact(name=name, version="3.9.1", tarball=Path("/x.tgz"), sha256="0" * 64, tarball_sha256="1" * 64)


def five_observed(spec5: ClusterSpec) -> Observed:
    return Observed.converged_cluster(spec5, ARTS)


def test_shrink_5_to_3_rolls_brokers_then_reconfigures_then_stops_the_leavers() -> None:
    spec5, spec3 = spec_with_zk([1, 2, 3, 4, 5]), spec_with_zk([1, 2, 3])
    obs = five_observed(spec5).build()
    plan = plan_of(spec3, obs)
    changes = {c.address: c for c in plan.changes}
    assert changes["zookeeper.ensemble"].zk_leave == (4, 5)
    assert changes[f"zookeeper.{H[4]}"].action is Action.DELETE
    g = plan.graph()
    (rc,) = [s.id for s in plan.steps if s.kind is StepKind.ZK_RECONFIG]
    for s in plan.steps:
        if s.kind is StepKind.RESTART and s.service == "kafka":
            assert nx.has_path(g, s.id, rc), "brokers drop the leaving servers from zookeeper.connect first"
    for h in (H[4], H[5]):
        stop = next(s for s in plan.steps if s.id == f"stop:zookeeper@{h}")
        assert nx.has_path(g, rc, stop.id) and str(stop.gate) == "left_ensemble"


def test_shrink_refused_while_membership_is_unknown() -> None:
    spec5, spec3 = spec_with_zk([1, 2, 3, 4, 5]), spec_with_zk([1, 2, 3])
    obs = five_observed(spec5).zk_members({}).build()
    errors = diff(spec3, obs, ARTS).errors
    assert any(e.path == "zookeeper.nodes" and "membership" in e.message for e in errors)


def test_replacing_most_of_the_ensemble_at_once_is_refused(lab_spec: ClusterSpec) -> None:
    spec = parse_spec({**yaml.safe_load(LAB_YAML.read_text()),
                       "zookeeper": {**yaml.safe_load(LAB_YAML.read_text())["zookeeper"],
                                     "nodes": [{"myid": 1, "host": H[1]}, {"myid": 4, "host": H[4]},
                                               {"myid": 5, "host": H[5]}]}})
    obs = Observed.converged_cluster(lab_spec, ARTS).host(H[4]).bare().host(H[5]).bare().build()
    errors = diff(spec, obs, ARTS).errors
    assert any("only 1 current member" in e.message for e in errors), [str(e) for e in errors]


def test_destroy_does_not_wait_for_servers_to_leave(lab_spec: ClusterSpec) -> None:
    from reconciler.pipeline import destroy_changes

    obs = Observed.converged_cluster(lab_spec, ARTS).build()
    plan = build_plan(destroy_changes(obs), obs, spec_path="/x.yaml", spec_digest="d", destroy=True)
    assert all(s.gate is None for s in plan.steps if s.kind is StepKind.STOP)
