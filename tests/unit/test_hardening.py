"""Escaping rules, signed plans, removal proofs and private state: the parts of hardening that need
no host. (Hostile specs: test_hostile_specs.py; rendering fuzzed specs: test_fuzz_render.py; the
real lab: tests/integration/test_cluster.py.)"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest

from reconciler import files as F
from reconciler.apply.runner import TemplatedDataError, check_no_templates
from reconciler.apply.state import Journal, cluster_dir, record_revision
from reconciler.diff import diff
from reconciler.observe.model import ManagedFile
from reconciler.pipeline import destroy_changes
from reconciler.plan import planfile
from reconciler.plan.build import build_plan
from reconciler.plan.model import Plan
from reconciler.plan.render import render_text, warnings
from reconciler.removal import Deletion, Proof, deletions
from reconciler.render.formats import FormatError, parse_properties, properties_line, sh, systemd_arg
from reconciler.spec import ClusterSpec, is_sensitive, parse_spec

from .builders import Observed
from .conftest import ARTS, REPO

# --- formats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["C:\\temp\\new", " leading", "trailing\\", "a=b:c#d!e", "é", "😀",
                                   "\\u0041", "{{ x }}", "", "  ", "\u00a0nbsp"])
def test_properties_values_read_back_exactly(value: str) -> None:
    line = properties_line("k", value)
    assert line.isascii() and line.count("\n") == 1
    assert parse_properties(line) == {"k": value}


def test_properties_refuse_control_characters_and_odd_keys() -> None:
    with pytest.raises(FormatError, match="U\\+0009"):
        properties_line("k", "\tx")
    with pytest.raises(FormatError, match="U\\+000A"):
        properties_line("k", "a\nb")
    with pytest.raises(FormatError, match="cannot be a properties key"):
        properties_line("k=v", "x")


def test_properties_reader_follows_java() -> None:
    text = "# c\n! c\n a = 1 \nb:2\nc 3\nd=\\\n   4\ne=\\u00e9\\\\\nf\\ g=h\n\n"
    assert parse_properties(text) == {"a": "1 ", "b": "2", "c": "3", "d": "4", "e": "é\\", "f g": "h"}


@pytest.mark.parametrize(("value", "unit"), [
    ("-Dx=1", "-Dx=1"), ("-Dp=%p", '"-Dp=%%p"'), ("-Dh=$HOME", '"-Dh=$$HOME"'), ('-Dq="x"', '"-Dq=\\"x\\""'),
    ("-Db=a\\b", '"-Db=a\\\\b"'), ("-Ds=a b", '"-Ds=a b"'), ("-D;", '"-D;"')])
def test_systemd_arguments(value: str, unit: str) -> None:
    assert systemd_arg(value) == unit


def test_systemd_and_shell_refuse_what_they_cannot_hold() -> None:
    with pytest.raises(FormatError):
        systemd_arg("-Dx=\n")
    with pytest.raises(FormatError):
        sh("a\x00b")
    assert sh("/var/lib/a b; id") == "'/var/lib/a b; id'"


def test_sensitive_keys_come_from_the_password_type() -> None:
    for key in ("delegation.token.master.key", "ssl.keystore.key", "ssl.truststore.certificates",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", "listener.name.x.ssl.key.password",
                "ssl.quorum.keyStore.password"):
        assert is_sensitive(key), key
    for key in ("log.retention.hours", "delegation.token.max.lifetime.ms", "ssl.keystore.type"):
        assert not is_sensitive(key), key


def test_zoo_cfg_with_a_secret_is_private(lab_spec: ClusterSpec) -> None:
    plain = F.zookeeper_desired(lab_spec, lab_spec.zookeeper.nodes[0], ARTS.zookeeper).file(F.ZOO_CFG)
    assert (plain.mode, plain.owner) == ("0644", "root")
    zk = lab_spec.zookeeper.model_copy(update={"config": {"ssl.keyStore.password": "s3cret"}})
    spec = lab_spec.model_copy(update={"zookeeper": zk})
    secret = F.zookeeper_desired(spec, spec.zookeeper.nodes[0], ARTS.zookeeper).file(F.ZOO_CFG)
    assert (secret.mode, secret.owner) == ("0600", "zookeeper")
    props = F.broker_desired(lab_spec, lab_spec.brokers[0], ARTS.kafka).file(F.SERVER_PROPERTIES)
    assert (props.mode, props.owner) == ("0600", "kafka")


# --- Ansible gets no template ----------------------------------------------------------------------


def test_file_contents_travel_base64_and_nothing_templatable_reaches_ansible(lab_spec: ClusterSpec) -> None:
    import base64

    from reconciler.apply.inventory import host_vars, inventory

    data = lab_spec.model_dump()
    data["kafka"]["config"]["sasl.kerberos.service.name"] = "{{ lookup('pipe', 'id') }}"
    spec = parse_spec(data)
    art = _art("kafka", ARTS.kafka)
    inv = inventory(spec, host_vars(spec, art, _art("zookeeper", ARTS.zookeeper or "")))
    check_no_templates(inv)  # the hostile value is inside base64: Ansible never sees it as text
    files = inv["all"]["hosts"]["10.213.0.11"]["kf_kafka"]["files"]
    props = next(f for f in files if f["path"] == F.SERVER_PROPERTIES)
    assert "sasl.kerberos.service.name={{ lookup('pipe', 'id') }}\n" in base64.b64decode(props["content_b64"]).decode()
    with pytest.raises(TemplatedDataError):
        check_no_templates({"path": "/data/{{ x }}"})


def _art(name: str, artifact_id: str):  # noqa: ANN202 - a PackedArtifact stand-in
    from reconciler.artifacts import PackedArtifact

    version = artifact_id.split("-")[1]
    return PackedArtifact(name, version, Path(f"/cache/{artifact_id}.tar.gz"), "0" * 64, "1" * 64)


# --- removal -----------------------------------------------------------------------------------------


def test_removal_deletes_only_paths_it_can_prove(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS)
    facts = obs.build().hosts["10.213.0.11"]
    text = facts.files[F.SERVER_PROPERTIES].content or ""
    edited = text.replace("log.dirs=/var/lib/kafka/data", "log.dirs=/var/lib/kafka/data,/etc,/srv/x,/data/../etc")
    facts = facts.model_copy(update={"files": {**facts.files, F.SERVER_PROPERTIES: ManagedFile(
        path=F.SERVER_PROPERTIES, sha256="0" * 64, content=edited)}})
    got = {d.path: d.proof for d in deletions("kafka", facts)}
    assert got[F.KAFKA_UNIT] is Proof.KAFKAFORM_HEADER
    assert got["/var/lib/kafka/data"] is Proof.OWNER_MARKER and got["/srv/x"] is Proof.OWNER_MARKER
    assert "/etc" not in got and "/data/../etc" not in got
    assert got[f"/opt/kafka/{ARTS.kafka}"] is Proof.ARTIFACT_MARKER and got["/opt/kafka"] is Proof.EMPTY


def test_destroy_plan_shows_every_deleted_path(lab_spec: ClusterSpec) -> None:
    obs = Observed.converged_cluster(lab_spec, ARTS).build()
    plan = build_plan(destroy_changes(obs), obs, spec_path="/x.yaml", spec_digest="d", destroy=True)
    text = render_text(plan)
    for path in ("/etc/systemd/system/kafka.service", "/var/lib/kafka/data", "/var/lib/zookeeper", "/etc/kafka"):
        assert f"deletes {path} (" in text
    assert any("destroys every service" in w for w in warnings(plan))


def _kf_remove():  # the Ansible module's functions, loaded from the playbooks' library
    spec = importlib.util.spec_from_file_location("kf_remove", REPO / "playbooks" / "library" / "kf_remove.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_remove_module_checks_each_proof(tmp_path: Path) -> None:
    m = _kf_remove()
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / F.OWNER_MARKER).write_text("x")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    unit = tmp_path / "kafka.service"
    unit.write_text(F.HEADER.format(name="lab"))
    foreign_unit = tmp_path / "other.service"
    foreign_unit.write_text("[Unit]\n")
    link = tmp_path / "link"
    link.symlink_to(theirs)
    assert m._proven(str(ours), "owner_marker") and not m._proven(str(theirs), "owner_marker")
    assert m._proven(str(unit), "kafkaform_header") and not m._proven(str(foreign_unit), "kafkaform_header")
    assert not m._proven(str(ours), "empty") and m._proven(str(theirs), "empty")
    m._delete(str(link))  # a link goes as a link: its target stays
    assert theirs.is_dir() and not link.exists()


# --- signed plans ------------------------------------------------------------------------------------


@pytest.fixture
def change_plan(lab_spec: ClusterSpec) -> Plan:
    obs = Observed.converged_cluster(lab_spec, ARTS).on("10.213.0.12").service("zookeeper", "inactive").build()
    result = diff(lab_spec, obs, ARTS)
    return build_plan(result.changes, obs, spec_path="/specs/lab.yaml", spec_digest=planfile.spec_digest(lab_spec))


def _resave(path: Path, doc: dict[str, object]) -> None:
    path.write_text(json.dumps(doc))


def test_plan_file_is_private_and_written_through_a_fresh_temp_file(change_plan: Plan, tmp_path: Path) -> None:
    target = tmp_path / "p.plan"
    planted = tmp_path / "victim"
    planted.write_text("precious")
    (tmp_path / "p.plan.tmp").symlink_to(planted)  # where the old fixed temp name pointed
    planfile.save(change_plan, target)
    assert planted.read_text() == "precious"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert planfile.load(target) == change_plan


@pytest.mark.parametrize("edit", [{"allow_unavailable": True}, {"fingerprint": "f" * 64},
                                  {"spec_path": "/tmp/evil.yaml"}, {"signature": None}])
def test_edited_plan_refused(change_plan: Plan, tmp_path: Path, edit: dict[str, object]) -> None:
    p = tmp_path / "p.plan"
    planfile.save(change_plan, p)
    doc = json.loads(p.read_text())
    doc.update(edit)
    _resave(p, {k: v for k, v in doc.items() if v is not None})
    with pytest.raises(planfile.PlanFileError, match="changed after it was saved|is not signed"):
        planfile.load(p)


def test_plan_from_another_machine_cannot_be_verified(change_plan: Plan, tmp_path: Path) -> None:
    p = tmp_path / "p.plan"
    planfile.save(change_plan, p)
    (cluster_dir("lab") / "plan.key").unlink()
    with pytest.raises(planfile.UnsignedPlanError, match="no plan key for cluster 'lab'"):
        planfile.load(p)


def test_graph_checks(change_plan: Plan) -> None:
    hosts = {"10.213.0.11", "10.213.0.12", "10.213.0.13"}
    planfile.check_graph(change_plan, hosts)
    first, last = change_plan.steps[0].id, change_plan.steps[-1].id
    bad = {
        "form a cycle": change_plan.model_copy(update={"edges": (*change_plan.edges, (last, first))}),
        "names a step the plan does not have": change_plan.model_copy(
            update={"edges": (*change_plan.edges, (first, "restart:kafka@10.9.9.9"))}),
        "appears twice": change_plan.model_copy(update={"steps": (*change_plan.steps, change_plan.steps[0])}),
        "which neither the spec": change_plan.model_copy(
            update={"steps": (change_plan.steps[0].model_copy(update={"host": "10.9.9.9"}), *change_plan.steps[1:])}),
        "not a path kafkaform deletes": change_plan.model_copy(update={"steps": (change_plan.steps[0].model_copy(
            update={"deletions": (Deletion(path="/etc", proof=Proof.EMPTY),)}), *change_plan.steps[1:])}),
    }
    for why, plan in bad.items():
        with pytest.raises(planfile.PlanFileError, match=why):
            planfile.check_graph(plan, hosts)


def test_spec_path_of_a_plan_is_checked(change_plan: Plan, lab_spec: ClusterSpec, tmp_path: Path) -> None:
    planfile.check_spec(change_plan, lab_spec)
    with pytest.raises(planfile.StalePlanError, match="was made for the spec /specs/lab.yaml"):
        planfile.check_spec(change_plan, lab_spec, tmp_path / "other.yaml")


def test_show_marks_weakened_checks(change_plan: Plan) -> None:
    risky = change_plan.model_copy(update={"allow_unavailable": True})
    assert warnings(change_plan) == []
    assert "Warning: --allow-unavailable" in render_text(risky)


# --- control-machine state ----------------------------------------------------------------------------


def test_state_is_private_even_under_a_loose_umask(kafkaform_home: Path) -> None:
    old = os.umask(0o022)
    try:
        Journal("lab").record(event="x")
        record_revision("lab", "d", [], {})
        planfile.signing_key("lab")
    finally:
        os.umask(old)
    for p in [kafkaform_home, *kafkaform_home.rglob("*")]:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, p
