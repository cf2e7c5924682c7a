"""The smallest KRaft cluster on a real lab host: one combined node (process.roles=broker,controller
in one JVM) from a bare host, on Kafka 4.4.0 and on 3.9.1 (the last 3.x line: KRaft with log4j 1).
It comes up, serves, converges, and a restart of its only voter is refused (it would take the
quorum down) unless the operator accepts the outage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.lab.demo import produce_consume
from tests.integration.conftest import REPO, Cli, lab_for, tinfra, write_spec

pytestmark = pytest.mark.integration

SOLO = REPO / "examples" / "lab-combined.yaml"


@pytest.fixture(scope="module", params=["4.4.0", "3.9.1"])
def solo(request: pytest.FixtureRequest, cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    spec = write_spec(SOLO, tmp_path_factory.mktemp("solo") / "solo.yaml", **{"kafka/version": request.param})
    with lab_for(cli, spec, "solo") as spec:
        yield spec


def test_combined_node_from_a_bare_host_serves_and_converges(solo: Path, cli: Cli, tmp_path: Path) -> None:
    plan = cli("plan", str(solo), "--detailed-exitcode")
    assert plan.returncode == 2 and "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout, plan.stdout
    assert "initial controllers" in plan.stdout
    a = cli("apply", str(solo), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    host = tinfra("10.213.0.11", tmp_path)
    assert host.service("kafka").is_running and not host.file("/etc/systemd/system/kafka-controller.service").exists
    listening = host.socket.get_listening_sockets()
    assert any(s.endswith("10.213.0.11:9092") for s in listening) and any(s.endswith("10.213.0.11:9093")
                                                                           for s in listening)
    assert "process.roles=broker,controller\n" in host.file("/etc/kafka/server.properties").content_string
    assert produce_consume("10.213.0.11:9092", "solo-topic", count=100, replication_factor=1) == 100
    d = json.loads(cli("describe-cluster", str(solo), "--json", check=True).stdout)
    assert d["MetadataMode"] == "KRAFT" and d["RegisteredBrokers"] == [1]
    assert [v["Id"] for v in d["Quorum"]["Voters"]] == [1] and d["Quorum"]["LeaderId"] == 1
    version = yaml.safe_load(solo.read_text())["kafka"]["version"]
    assert d["MetadataVersionName"].startswith(version.rsplit(".", 1)[0] + "-IV"), d["MetadataVersionName"]
    assert cli("plan", str(solo), "--detailed-exitcode").returncode == 0


def test_restarting_the_only_voter_is_refused(solo: Path, cli: Cli, tmp_path: Path) -> None:
    changed = write_spec(solo, tmp_path / "solo.yaml", **{"kafka/config/log.retention.hours": 48})
    p = cli("plan", str(changed))
    assert p.returncode == 1 and "broker.1: restart refused" in p.stderr and "KafkaQuorumCheck" in p.stderr
    assert "--allow-unavailable" in p.stderr
