"""A second real Kafka version: a one-host cluster on Kafka 3.8.1, then upgraded in place to 3.9.1.

Exercises the artifact change path for real: the new build is pushed and verified, the unit
points at it, the broker restarts, and the data written before the upgrade is still there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler import lab
from reconciler.demo import consume_all, produce_consume
from tests.integration.conftest import Cli, lab_for

pytestmark = pytest.mark.integration

SINGLE = {
    "name": "single",
    "kafka": {
        "version": "3.8.1",
        "artifact": {"maven": True},
        "heap": "384m",
        "config": {
            "default.replication.factor": 1, "min.insync.replicas": 1, "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1, "transaction.state.log.min.isr": 1,
        },
    },
    "zookeeper": {"version": "3.8.4", "artifact": {"maven": True}, "heap": "128m",
                  "nodes": [{"myid": 1, "host": "10.213.0.11"}]},
    "brokers": [{"id": 1, "host": "10.213.0.11"}],
    "ssh": {"user": "root", "key_file": "/var/lib/kafkaform/lab/lab_key",
            "known_hosts_file": "/var/lib/kafkaform/lab/known_hosts"},
}


@pytest.fixture(scope="module")
def single(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    spec = tmp_path_factory.mktemp("single") / "single.yaml"
    spec.write_text(yaml.safe_dump(SINGLE))
    with lab_for(cli, spec, "single") as path:
        yield path


def _with_version(spec: Path, version: str) -> Path:
    data = yaml.safe_load(spec.read_text())
    data["kafka"]["version"] = version
    out = spec.with_name(f"single-{version}.yaml")
    out.write_text(yaml.safe_dump(data))
    return out


def test_kafka_381_cluster_then_upgrade_to_391(single: Path, cli: Cli) -> None:
    a = cli("apply", str(single), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "install kafka-3.8.1-" in a.stdout
    bootstrap = "10.213.0.11:9092"
    topic = f"v-{uuid.uuid4().hex[:6]}"
    assert produce_consume(bootstrap, topic, count=200, replication_factor=1) == 200
    assert cli("plan", str(single), "--detailed-exitcode").returncode == 0

    upgraded = _with_version(single, "3.9.1")
    p = cli("plan", str(upgraded), "--json")
    doc = json.loads(p.stdout)
    [change] = doc["changes"]
    assert change["address"] == "broker.1" and change["restart"] is True
    attrs = {x["name"]: (x["before"], x["after"]) for x in change["attrs"]}
    assert attrs["version"] == ("3.8.1", "3.9.1")
    a = cli("apply", str(upgraded), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "restart kafka on 10.213.0.11" in a.stdout
    assert cli("plan", str(upgraded), "--detailed-exitcode").returncode == 0
    marker = lab.exec_in("kf1", ["sh", "-c", "cat /opt/kafka/kafka-3.9.1-*/ARTIFACT"], check=True).stdout
    assert json.loads(marker)["version"] == "3.9.1"
    unit = lab.exec_in("kf1", ["cat", "/etc/systemd/system/kafka.service"], check=True).stdout
    assert "/opt/kafka/kafka-3.9.1-" in unit
    # what was written on 3.8.1 is all still there on 3.9.1
    before = consume_all(bootstrap, topic, expect=200)
    assert sorted(before) == sorted(f"{topic}-{i}".encode() for i in range(200))
