"""Two real Kafka versions: a 3-broker cluster on Kafka 3.8.1, upgraded to 3.9.1 by a rolling
upgrade in two rolls (inter.broker.protocol.version held at 3.8 during the first) while an
acks=all producer runs; nothing acknowledged is lost, before or during the upgrade.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler import lab
from reconciler.workload import NumberedProducer, create_topic, read_numbers
from tests.integration.conftest import LAB_SPEC, Cli, lab_for

pytestmark = pytest.mark.integration

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"


def _spec(d: Path, version: str) -> Path:
    data = yaml.safe_load(LAB_SPEC.read_text())
    data["name"] = "upgrade"
    data["kafka"]["version"] = version
    p = d / f"upgrade-{version}.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def old_spec(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    spec = _spec(tmp_path_factory.mktemp("upgrade"), "3.8.1")
    with lab_for(cli, spec, "upgrade") as path:
        yield path


def test_rolling_upgrade_381_to_391_in_two_rolls(old_spec: Path, cli: Cli) -> None:
    a = cli("apply", str(old_spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "install kafka-3.8.1-" in a.stdout
    create_topic(BOOTSTRAP, "upgrade", partitions=12, replication_factor=3, min_insync_replicas=2)
    producer = NumberedProducer(BOOTSTRAP, "upgrade", rate_per_s=150).start()
    try:
        new_spec = _spec(old_spec.parent, "3.9.1")
        plan = cli("plan", str(new_spec), "--json")
        doc = json.loads(plan.stdout)
        assert {c["address"] for c in doc["changes"]} == {"broker.1", "broker.2", "broker.3"}
        assert all(c["ibp_pin"] == "3.8" for c in doc["changes"])
        a = cli("apply", str(new_spec), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
    finally:
        report = producer.stop()
    first = re.findall(r"restart kafka on (\S+): (?:ok|changed)", a.stdout)
    second = re.findall(r"restart kafka \(second roll\) on (\S+): (?:ok|changed)", a.stdout)
    assert len(first) == 3 and second == first, (first, second)
    assert cli("plan", str(new_spec), "--detailed-exitcode").returncode == 0
    for name in ("kf1", "kf2", "kf3"):
        props = lab.exec_in(name, ["cat", "/etc/kafka/server.properties"], check=True).stdout
        assert "inter.broker.protocol.version" not in props  # raised to 3.9's default
        unit = lab.exec_in(name, ["cat", "/etc/systemd/system/kafka.service"], check=True).stdout
        assert "/opt/kafka/kafka-3.9.1-" in unit
    assert report.sent > 500 and not report.errors, report.errors[:5]
    missing = report.acked - read_numbers(BOOTSTRAP, "upgrade", report.acked)
    assert not missing, f"{len(missing)} acknowledged messages lost"
