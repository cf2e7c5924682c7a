"""Saved plans: round trip, refusal of stale or damaged files, and the golden text of a create plan.

Regenerate the golden file after an intended rendering change with
`KAFKAFORM_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_planfile.py`, then review the diff.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import pytest
import yaml

from reconciler import files as F
from reconciler.diff import (
    AccessChange,
    Action,
    AttrDiff,
    Change,
    EnsembleChange,
    FeatureChange,
    ReassignChange,
    ReplicaMove,
    RestartReason,
    ServiceChange,
    ThrottleChange,
    UnregisterChange,
    VolumeChange,
    VoterChange,
    ZnodeAclChange,
    diff,
)
from reconciler.plan import planfile
from reconciler.plan.build import build_plan
from reconciler.plan.model import FORMAT_VERSION, Plan
from reconciler.plan.planfile import PlanFileError, StalePlanError, check_current, load, save, spec_digest
from reconciler.plan.render import render_text
from reconciler.removal import Deletion, Proof
from reconciler.security.access import AccessPlan, AclRow
from reconciler.spec import ClusterSpec, parse_spec

from .builders import Observed
from .conftest import ARTS, LAB_YAML

GOLDEN = Path(__file__).resolve().parent / "golden" / "plan_create.txt"


def _plan(spec: ClusterSpec, observed_builder: Observed) -> Plan:
    obs = observed_builder.build()
    result = diff(spec, obs, ARTS)
    assert not result.errors
    return build_plan(result.changes, obs, spec_path="/specs/lab.yaml", spec_digest=spec_digest(spec))


@pytest.fixture
def bare_plan(lab_spec: ClusterSpec) -> Plan:
    return _plan(lab_spec, Observed.bare_cluster(lab_spec))


@pytest.fixture
def mixed_plan(lab_spec: ClusterSpec) -> Plan:
    """Updates with attribute diffs, a restart chain, a start and a delete: every part of the model."""
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["config"]["num.partitions"] = 6
    data["brokers"] = data["brokers"][:2]
    data["kafka"]["config"].update({"default.replication.factor": 2, "offsets.topic.replication.factor": 2,
                                    "transaction.state.log.replication.factor": 2,
                                    "transaction.state.log.min.isr": 1, "min.insync.replicas": 1})
    spec = parse_spec(data)
    obs = (Observed.converged_cluster(lab_spec, ARTS).controller(1)
           .on("10.213.0.12").service("zookeeper", "inactive"))
    return _plan(spec, obs)


def _write_doc(path: Path, plan: Plan, resign: bool = True, **changes: object) -> Path:
    """A saved plan edited after saving; re-signed with this machine's key unless `resign=False`
    (so the checks after the signature can be reached)."""
    save(plan, path)
    doc = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    if resign:
        doc["signature"] = planfile._sign(doc, planfile.signing_key(plan.cluster))  # noqa: SLF001
    path.write_text(json.dumps(doc))
    return path


# --- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["bare_plan", "mixed_plan"])
def test_save_load_round_trip(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    plan: Plan = request.getfixturevalue(which)
    path = tmp_path / "lab.plan"
    save(plan, path)
    loaded = load(path)
    assert loaded == plan
    assert loaded.graph().edges == plan.graph().edges
    assert render_text(loaded) == render_text(plan)
    assert [p.name for p in tmp_path.iterdir()] == ["lab.plan"], "no temp file left behind"
    doc = json.loads(path.read_text())
    assert doc["magic"] == "kafkaform-plan" and doc["format_version"] == FORMAT_VERSION


def _every_kind() -> tuple[Change, ...]:
    """One change of each kind, every kind-specific field set away from its default."""
    why, attrs = ("r",), (AttrDiff(name="a", before="1"),)
    return (
        ServiceChange(address="broker.1", service="kafka", key="1", host="10.213.0.11", action=Action.UPDATE,
                      reasons=("upgrade",), attrs=(AttrDiff(name="version", before="3.8.1", after="3.9.1"),),
                      install_java=True, install_artifact="kafka-3.9.1-0123456789ab", configure=True,
                      file_hashes={"/etc/kafka/server.properties": "ab" * 32}, start=True, restart=True,
                      restart_reasons=(RestartReason.NEW_BUILD, RestartReason.CONFIG),
                      dynamic_keys=("log.retention.ms",),
                      ibp_pin="3.8", pinned_hashes={"/etc/kafka/server.properties": "cd" * 32}, format_storage=True,
                      voter=True),
        ServiceChange(address="zookeeper.3", service="zookeeper", key="3", host="10.213.0.13", action=Action.DELETE,
                      reasons=("gone",), deletions=(Deletion(path="/var/lib/zookeeper", proof=Proof.OWNER_MARKER),)),
        ReassignChange(address="partitions", service="kafka", key="reassignment", host="cluster",
                       action=Action.UPDATE, reasons=why, attrs=attrs,
                       moves=(ReplicaMove(topic="t", partition=0, before=(1, 2), after=(2, 3), bytes=10),),
                       drain=(1,), throttle_bytes_per_s=2**20, per_broker=2),
        EnsembleChange(address="zookeeper.ensemble", service="zookeeper", key="ensemble", host="cluster",
                       action=Action.UPDATE, reasons=why, attrs=attrs, zk_join=(4,), zk_leave=(1,)),
        ThrottleChange(address="throttles", service="kafka", key="throttles", host="cluster",
                       action=Action.UPDATE, reasons=why, attrs=attrs,
                       throttled_topics=("t",), throttled_brokers=(1, 2)),
        FeatureChange(address="features", service="kafka", key="metadata.version", host="cluster",
                      action=Action.UPDATE, reasons=why, attrs=attrs, feature_levels={"metadata.version": 27}),
        UnregisterChange(address="registrations", service="kafka", key="registrations", host="cluster",
                         action=Action.UPDATE, reasons=why, attrs=attrs, unregister=(4,)),
        VoterChange(address="controllers.quorum", service="kafka-controller", key="quorum", host="cluster",
                    action=Action.UPDATE, reasons=why, attrs=attrs,
                    voters_join=(104,), voters_leave=(101,), voter_dirs={101: "dir-101"},
                    voter_hosts={104: "10.213.0.14", 101: "10.213.0.12"}),
        AccessChange(address="access", service="kafka", key="access", host="cluster", action=Action.UPDATE,
                     reasons=why, attrs=attrs, access=AccessPlan(
                         users_create=("app",), users_rotate=("ops",), users_delete=("old",),
                         acls_add=(AclRow(principal="User:app", resource_type="topic", resource_name="t",
                                          pattern="prefixed", operation="read", permission="allow"),),
                         acls_delete=(AclRow(principal="User:old", resource_type="group", resource_name="g",
                                             pattern="literal", operation="read", permission="deny", host="10.0.0.1"),),
                         marks={"app": "ab" * 32, "ops": "cd" * 32}, unmanaged_users=1, unmanaged_acls=2)),
        ZnodeAclChange(address="zookeeper.acls", service="kafka", key="znode-acls", host="10.213.0.11",
                       action=Action.UPDATE, reasons=why, attrs=attrs, znodes=("/brokers", "/config")),
        VolumeChange(address="volume.10.213.0.11.data", service="volume", key="data", host="10.213.0.11",
                     action=Action.CREATE, reasons=why, attrs=attrs, name="data", device="/dev/vdb",
                     mount="/var/lib/kafka/data", filesystem="xfs", format=True),
    )


def test_every_change_kind_round_trips(bare_plan: Plan, tmp_path: Path) -> None:
    union, _ = typing.get_args(Change)  # Annotated[A | B | ..., Field(discriminator="kind")]
    changes = _every_kind()
    assert {type(c) for c in changes} == set(typing.get_args(union)), "an example of every kind"
    plan = bare_plan.model_copy(update={"changes": changes})
    save(plan, tmp_path / "p.plan")
    loaded = load(tmp_path / "p.plan")
    assert loaded == plan
    assert [type(c) for c in loaded.changes] == [type(c) for c in changes]
    doc = json.loads((tmp_path / "p.plan").read_text())
    assert [c["kind"] for c in doc["changes"]] == ["service", "service", "reassign", "zk_ensemble", "throttles",
                                                   "features", "unregister", "voters", "access", "znode_acls", "volume"]
    assert "moves" not in doc["changes"][0] and "restart" not in doc["changes"][2], "each kind: its own fields"


@pytest.mark.parametrize("kind", ["reboot", None])
def test_unknown_change_kind_is_refused_as_damaged(bare_plan: Plan, tmp_path: Path, kind: str | None) -> None:
    p = tmp_path / "p.plan"
    save(bare_plan, p)
    doc = json.loads(p.read_text())
    if kind is None:
        del doc["changes"][0]["kind"]
    else:
        doc["changes"][0]["kind"] = kind
    doc["signature"] = planfile._sign(doc, planfile.signing_key(bare_plan.cluster))  # noqa: SLF001
    p.write_text(json.dumps(doc))
    with pytest.raises(PlanFileError, match=r"p\.plan is damaged: changes\.0: ") as info:
        load(p)
    assert ("'reboot'" if kind else "'kind'") in str(info.value)


def test_mixed_plan_has_every_action(mixed_plan: Plan) -> None:
    assert mixed_plan.counts() == {"add": 0, "change": 3, "destroy": 1}
    assert {c.address for c in mixed_plan.changes} == {"broker.1", "broker.2", "zookeeper.2", "broker.3"}


def test_saved_plan_holds_no_file_contents(lab_spec: ClusterSpec, tmp_path: Path) -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["config"]["ssl.keystore.password"] = "hunter2-do-not-save"
    spec = parse_spec(data)
    plan = _plan(spec, Observed.bare_cluster(spec))
    save(plan, tmp_path / "p.plan")
    text = (tmp_path / "p.plan").read_text()
    assert "hunter2-do-not-save" not in text
    assert "zookeeper.connect" not in text  # no server.properties content either
    sha = F.broker_desired(spec, spec.brokers[0], ARTS.kafka).file(F.SERVER_PROPERTIES).sha256
    assert sha in text  # only its hash


# --- staleness ---------------------------------------------------------------------------------


def test_current_plan_passes(lab_spec: ClusterSpec, bare_plan: Plan) -> None:
    check_current(bare_plan, lab_spec, bare_plan.fingerprint)


def test_stale_fingerprint_is_refused(lab_spec: ClusterSpec, bare_plan: Plan, tmp_path: Path) -> None:
    save(bare_plan, tmp_path / "p.plan")
    loaded = load(tmp_path / "p.plan")
    now = Observed.bare_cluster(lab_spec).on("10.213.0.11").java().build().fingerprint()
    assert now != bare_plan.fingerprint
    with pytest.raises(StalePlanError) as info:
        check_current(loaded, lab_spec, now)
    msg = str(info.value)
    assert "saved plan is stale" in msg and "observed state changed" in msg
    assert f"{bare_plan.fingerprint[:12]} -> {now[:12]}" in msg
    assert isinstance(info.value, PlanFileError)


def test_changed_spec_is_refused(lab_spec: ClusterSpec, bare_plan: Plan) -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["config"]["num.partitions"] = 4
    changed = parse_spec(data)
    assert spec_digest(changed) != spec_digest(lab_spec)
    with pytest.raises(StalePlanError, match="saved plan is stale: the spec /specs/lab.yaml changed"):
        check_current(bare_plan, changed, bare_plan.fingerprint)


def test_plan_for_another_cluster_is_refused(lab_spec: ClusterSpec, bare_plan: Plan) -> None:
    other = lab_spec.model_copy(update={"name": "prod"})
    with pytest.raises(StalePlanError, match="saved plan is for cluster 'lab', the spec is 'prod'"):
        check_current(bare_plan, other, bare_plan.fingerprint)


def test_spec_digest_is_stable(lab_spec: ClusterSpec) -> None:
    again = parse_spec(yaml.safe_load(LAB_YAML.read_text()))
    assert spec_digest(again) == spec_digest(lab_spec)
    assert planfile.spec_digest(lab_spec) == spec_digest(lab_spec)


# --- damaged files -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match=r"cannot read saved plan .*nope\.plan: No such file"):
        load(tmp_path / "nope.plan")


def test_binary_garbage(tmp_path: Path) -> None:
    p = tmp_path / "garbage.plan"
    p.write_bytes(b"\xff\xfe\x00\x01\x89PNG garbage")
    with pytest.raises(PlanFileError, match=r"garbage\.plan is not a kafkaform plan \(not UTF-8 text\)"):
        load(p)


def test_text_garbage(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("terraform apply\n")
    with pytest.raises(PlanFileError, match=r"notes\.txt is not a kafkaform plan \(not JSON: .* at line 1;"):
        load(p)


def test_truncated_json(bare_plan: Plan, tmp_path: Path) -> None:
    p = tmp_path / "cut.plan"
    save(bare_plan, p)
    text = p.read_text()
    p.write_text(text[: len(text) // 2])
    with pytest.raises(PlanFileError, match=r"cut\.plan is not a kafkaform plan \(not JSON: .* at line \d+"):
        load(p)


@pytest.mark.parametrize("doc", [{"magic": "terraform-plan"}, {"format_version": 1}, [1, 2],
                                 "kafkaform-plan"])
def test_wrong_magic(doc: object, tmp_path: Path) -> None:
    p = tmp_path / "other.plan"
    p.write_text(json.dumps(doc))
    with pytest.raises(PlanFileError, match=r"other\.plan is not a kafkaform plan file$"):
        load(p)


def test_wrong_magic_on_real_plan(bare_plan: Plan, tmp_path: Path) -> None:
    p = _write_doc(tmp_path / "p.plan", bare_plan, magic="kafkaform-plan-v0")
    with pytest.raises(PlanFileError, match="is not a kafkaform plan file"):
        load(p)


@pytest.mark.parametrize(("version", "shown"), [(1, "1"), (3, "3"), (5, "5"), (0, "0"), ("4", "'4'")])
def test_wrong_format_version(bare_plan: Plan, tmp_path: Path, version: object, shown: str) -> None:
    p = _write_doc(tmp_path / "p.plan", bare_plan, format_version=version)
    with pytest.raises(PlanFileError) as info:
        load(p)
    assert not isinstance(info.value, StalePlanError)
    assert str(info.value) == (f"{p} has plan format version {shown}; "
                               f"this kafkaform reads version {FORMAT_VERSION}")


def test_missing_format_version(bare_plan: Plan, tmp_path: Path) -> None:
    p = _write_doc(tmp_path / "p.plan", bare_plan, format_version=None)
    with pytest.raises(PlanFileError, match="has plan format version None"):
        load(p)


def test_damaged_field_names_the_field(bare_plan: Plan, tmp_path: Path) -> None:
    p = _write_doc(tmp_path / "p.plan", bare_plan, fingerprint=None)
    with pytest.raises(PlanFileError, match=r"p\.plan is damaged: fingerprint: Field required"):
        load(p)
    save(bare_plan, p)
    doc = json.loads(p.read_text())
    doc["steps"][0]["kind"] = "reboot"
    doc["signature"] = planfile._sign(doc, planfile.signing_key(bare_plan.cluster))  # noqa: SLF001
    p.write_text(json.dumps(doc))
    with pytest.raises(PlanFileError, match=r"is damaged: steps\.0\.kind: Input should be"):
        load(p)


# --- golden text -------------------------------------------------------------------------------


def test_render_text_golden_create_plan(bare_plan: Plan) -> None:
    text = render_text(bare_plan)
    if os.environ.get("KAFKAFORM_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_render_text_has_no_timestamp_or_paths(bare_plan: Plan) -> None:
    text = render_text(bare_plan)
    assert bare_plan.created_at not in text
    assert bare_plan.fingerprint not in text and bare_plan.spec_digest not in text
    later = bare_plan.model_copy(update={"created_at": "2030-01-01T00:00:00+00:00"})
    assert render_text(later) == text
