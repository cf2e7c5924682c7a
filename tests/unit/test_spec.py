"""Spec loading and validation: every bad spec is refused with its field path and the reason.

The bad specs are data: each file under specs/bad/ starts with a header line
`# expect: <field path> | <message fragment>` (an empty path means the whole document).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reconciler import versions
from reconciler.cli import app
from reconciler.spec import (
    MSK_DEFAULTS,
    ClusterSpec,
    SpecError,
    broker_config,
    check_against_facts,
    heap_bytes,
    load_spec,
    parse_spec,
    semantic_issues,
)

from .conftest import LAB_YAML, REPO, SPECS

BAD = sorted((SPECS / "bad").glob("*.yaml"))
GOOD = sorted((SPECS / "good").glob("*.yaml"))
EXPECT_RE = re.compile(r"^# expect: (?P<path>[^|]*?) ?\| (?P<fragment>.+)$")


def _expectation(f: Path) -> tuple[str, str]:
    m = EXPECT_RE.match(f.read_text().splitlines()[0])
    assert m, f"{f.name}: first line must be '# expect: <path> | <fragment>'"
    return m["path"].strip(), m["fragment"].strip()


def _with_kafka(spec: ClusterSpec, **update: object) -> ClusterSpec:
    """A copy with kafka fields replaced, skipping validation (for versions without a table)."""
    return spec.model_copy(update={"kafka": spec.kafka.model_copy(update=update)})


# --- good specs --------------------------------------------------------------------------------


def test_lab_example_loads(lab_spec: ClusterSpec) -> None:
    assert lab_spec.name == "lab"
    assert [b.id for b in lab_spec.brokers] == [1, 2, 3]
    assert lab_spec.hosts() == ["10.213.0.11", "10.213.0.12", "10.213.0.13"]
    assert lab_spec.zookeeper_connect() == "10.213.0.11:2181,10.213.0.12:2181,10.213.0.13:2181"
    assert lab_spec.bootstrap_brokers() == "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
    assert lab_spec.kafka.artifact.maven and lab_spec.zookeeper.artifact.maven
    assert lab_spec.broker_heap(lab_spec.brokers[0]) == "384m"


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    load_spec(path)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_specs_load(path: Path) -> None:
    spec = load_spec(path)
    assert semantic_issues(spec) == []


def test_uneven_racks_allowed_by_override() -> None:
    spec = load_spec(SPECS / "good" / "uneven_racks_allowed.yaml")
    assert spec.allow_uneven_racks
    assert [b.rack for b in spec.brokers] == ["a", "a", "b"]
    # The same spec without the override is refused.
    data = yaml.safe_load((SPECS / "good" / "uneven_racks_allowed.yaml").read_text())
    data.pop("allow_uneven_racks")
    with pytest.raises(SpecError, match=r"brokers: brokers are not spread evenly across racks \(a=2, b=1\)"):
        parse_spec(data)


def test_config_value_types_are_kept(lab_spec: ClusterSpec) -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["config"].update({"compression.type": "lz4", "log.cleaner.min.cleanable.ratio": 0.4,
                                    "delete.topic.enable": False})
    cfg = parse_spec(data).kafka.config
    assert cfg["num.partitions"] == 3 and type(cfg["num.partitions"]) is int
    assert cfg["delete.topic.enable"] is False
    assert cfg["log.cleaner.min.cleanable.ratio"] == 0.4


# --- bad specs ---------------------------------------------------------------------------------


def test_bad_spec_corpus_is_large_and_distinct() -> None:
    assert len(BAD) >= 30
    expectations = [_expectation(f) for f in BAD]
    texts = [f.read_text().split("\n", 1)[1] for f in BAD]
    assert len(set(texts)) == len(texts), "two bad specs have the same body"
    assert len(set(expectations)) >= 30


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_spec_names_field_and_reason(path: Path) -> None:
    field, fragment = _expectation(path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert err.source == str(path)
    assert err.issues, "a SpecError must carry at least one issue"
    shown = [str(i) for i in err.issues]
    assert any(i.path == field and fragment in i.message for i in err.issues), (
        f"no issue at {field!r} containing {fragment!r}; got {shown}")
    # The exception text is what people see: path and reason together.
    expected_line = f"{field}: " if field else ""
    assert any(line.startswith(expected_line) and fragment in line for line in str(err).splitlines())
    # Union internals or pydantic location tags never leak into a field path.
    for i in err.issues:
        assert not re.search(r"\.(str|int|float|bool)$|function-|\[\D", i.path), i.path


def test_kafka_4_reports_missing_zookeeper_mode_and_table() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / "bad" / "zookeeper_mode_on_kafka_4.yaml")
    by_path = {i.path: i.message for i in info.value.issues}
    assert "removed in 4.0" in by_path["kafka.metadata_mode"]
    assert "use kraft" in by_path["kafka.metadata_mode"]
    assert "4.0.0 is not in kafkaform's version table" in by_path["kafka.version"]


def test_two_brokers_hit_every_msk_replication_default() -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["brokers"] = data["brokers"][:2]
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    paths = {i.path for i in info.value.issues}
    assert {
        "kafka.config.default.replication.factor (MSK default)",
        "kafka.config.offsets.topic.replication.factor (MSK default)",
        "kafka.config.transaction.state.log.replication.factor (MSK default)",
    } <= paths


def test_every_issue_is_reported_not_just_the_first() -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["brokers"][1]["id"] = 1
    data["zookeeper"]["nodes"][2]["myid"] = 1
    data["kafka"]["config"]["broker.id"] = 9
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    paths = [i.path for i in info.value.issues]
    assert "brokers[1].id" in paths
    assert "zookeeper.nodes[2].myid" in paths
    assert "kafka.config.broker.id" in paths


def test_pydantic_errors_name_every_bad_field() -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["heap"] = "lots"
    data["brokers"][2]["host"] = "not a host"
    data["ssh"]["port"] = 0
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    paths = {i.path for i in info.value.issues}
    assert paths == {"kafka.heap", "brokers[2].host", "ssh.port"}


def test_unreadable_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read .*missing.yaml"):
        load_spec(tmp_path / "missing.yaml")


# --- CLI ---------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_ok() -> None:
    result = runner.invoke(app, ["validate", str(LAB_YAML)])
    assert result.exit_code == 0, result.output
    assert ("The spec is valid: cluster 'lab', 3 brokers, 3 ZooKeeper nodes, Kafka 3.9.1 (zookeeper mode)."
            in result.stdout)


def test_cli_validate_ok_json() -> None:
    result = runner.invoke(app, ["validate", "--json", str(LAB_YAML)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "cluster": "lab", "metadata_mode": "zookeeper", "brokers": 3,
                                         "controllers": 0, "zookeeper_nodes": 3, "kafka_version": "3.9.1"}


def test_cli_validate_bad_spec_exits_1_and_names_field() -> None:
    bad = SPECS / "bad" / "duplicate_broker_id.yaml"
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad} is not a valid cluster spec" in result.stderr
    assert "brokers[1].id: duplicate broker id 1" in result.stderr
    assert result.stdout == ""


def test_cli_validate_bad_spec_json_lists_issues() -> None:
    bad = SPECS / "bad" / "even_zookeeper_ensemble.yaml"
    result = runner.invoke(app, ["validate", "--json", str(bad)])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["source"] == str(bad)
    assert isinstance(doc["issues"], list) and doc["issues"]
    assert {"path", "message"} == set(doc["issues"][0])
    assert any(i["path"] == "zookeeper.nodes" and "odd size" in i["message"] for i in doc["issues"])


def test_cli_validate_yaml_error_names_line() -> None:
    result = runner.invoke(app, ["validate", str(SPECS / "bad" / "yaml_syntax_error.yaml")])
    assert result.exit_code == 1
    assert "not valid YAML at line 6" in result.stderr


# --- checks against observed facts -------------------------------------------------------------


def test_heap_larger_than_host_memory(lab_spec: ClusterSpec) -> None:
    mem = {h: 8 * 2**30 for h in lab_spec.hosts()}
    assert check_against_facts(lab_spec, mem) == []
    mem["10.213.0.12"] = 256 * 2**20  # 384m Kafka + 128m ZooKeeper do not fit
    issues = check_against_facts(lab_spec, mem)
    assert len(issues) == 1
    assert issues[0].path == "kafka.heap"
    assert "10.213.0.12" in issues[0].message
    assert "heap 384m (+ ZooKeeper 128m) does not fit in 10.213.0.12's 256 MiB of memory" == issues[0].message


def test_broker_heap_override_is_named(tmp_path: Path) -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["brokers"][2]["heap"] = "4g"
    data["zookeeper"]["nodes"] = data["zookeeper"]["nodes"][:1]
    spec = parse_spec(data)
    issues = check_against_facts(spec, {"10.213.0.11": 2**33, "10.213.0.12": 2**33, "10.213.0.13": 2**31})
    assert [(i.path, i.message) for i in issues] == [
        ("brokers[2].heap", "heap 4g does not fit in 10.213.0.13's 2048 MiB of memory")]


def test_unknown_memory_is_not_an_issue(lab_spec: ClusterSpec) -> None:
    assert check_against_facts(lab_spec, {h: None for h in lab_spec.hosts()}) == []
    assert check_against_facts(lab_spec, {}) == []


@pytest.mark.parametrize(("heap", "expected"),
                         [("512m", 512 * 2**20), ("2g", 2 * 2**30), ("64K", 64 * 2**10)])
def test_heap_bytes(heap: str, expected: int) -> None:
    assert heap_bytes(heap) == expected


# --- broker_config -----------------------------------------------------------------------------


def test_broker_config_has_msk_defaults(lab_spec: ClusterSpec) -> None:
    cfg = broker_config(lab_spec)
    for key, value, _cap in MSK_DEFAULTS:
        if key not in lab_spec.kafka.config:
            assert cfg[key] == value, key
    assert cfg["auto.create.topics.enable"] is False
    assert cfg["min.insync.replicas"] == 2
    assert cfg["allow.everyone.if.no.acl.found"] is True


def test_broker_config_spec_override_wins(lab_spec: ClusterSpec) -> None:
    cfg = broker_config(lab_spec)
    assert cfg["log.retention.hours"] == 24  # MSK default is 168, lab.yaml says 24
    assert cfg["num.partitions"] == 3
    spec = _with_kafka(lab_spec, config={"auto.create.topics.enable": True,
                                         "authorizer.class.name": "my.Authorizer"})
    cfg = broker_config(spec)
    assert cfg["auto.create.topics.enable"] is True
    assert cfg["authorizer.class.name"] == "my.Authorizer"


@pytest.mark.parametrize(("version", "authorizer"), [
    ("3.9.1", "kafka.security.authorizer.AclAuthorizer"),
    ("2.4.0", "kafka.security.authorizer.AclAuthorizer"),
    ("2.3.1", "kafka.security.auth.SimpleAclAuthorizer"),
    ("0.10.2.1", "kafka.security.auth.SimpleAclAuthorizer"),
])
def test_broker_config_authorizer_by_version(lab_spec: ClusterSpec, version: str, authorizer: str) -> None:
    assert broker_config(_with_kafka(lab_spec, version=version))["authorizer.class.name"] == authorizer


def test_broker_config_filters_by_capability(lab_spec: ClusterSpec) -> None:
    old = broker_config(_with_kafka(lab_spec, version="0.10.2", config={}))
    assert not versions.has("0.10.2", "transactions")
    assert not any(k.startswith("transaction.") for k in old)
    assert "group.initial.rebalance.delay.ms" not in old
    assert old["offsets.topic.replication.factor"] == 3
    new = broker_config(_with_kafka(lab_spec, config={}))
    assert new["transaction.state.log.min.isr"] == 2
