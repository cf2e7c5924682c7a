"""Two real Kafka versions: a 3-broker cluster on Kafka 3.8.1, upgraded to 3.9.1 by a rolling
upgrade in two rolls (inter.broker.protocol.version held at 3.8 during the first) while an
acks=all producer runs. kafkaform is killed inside the first roll and run again: it resumes with
the protocol still held, each broker restarts exactly twice, and nothing acknowledged is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler import lab
from reconciler.lab.workload import NumberedProducer, create_topic, read_numbers
from tests.integration.conftest import LAB_SPEC, Cli, lab_for, unit_logs, unit_starts

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


def running_build(name: str) -> str:
    pid = lab.exec_in(name, ["systemctl", "show", "-p", "MainPID", "--value", "kafka.service"], check=True).stdout
    return lab.exec_in(name, ["sh", "-c", f"tr '\\0' '\\n' < /proc/{pid.strip()}/cmdline | grep /libs/"],
                       check=True).stdout


def test_upgrade_381_to_391_in_two_rolls_killed_in_the_first_resumes_without_raising_the_protocol_early(
        old_spec: Path, cli: Cli, kf_home: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    a = cli("apply", str(old_spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "install kafka-3.8.1-" in a.stdout
    create_topic(BOOTSTRAP, "upgrade2", partitions=12, replication_factor=3, min_insync_replicas=2)
    producer = NumberedProducer(BOOTSTRAP, "upgrade2", rate_per_s=150).start()
    journal = kf_home / "clusters" / "upgrade" / "journal.jsonl"
    mark = len(journal.read_text().splitlines())
    new_spec = _spec(old_spec.parent, "3.9.1")
    doc = json.loads(cli("plan", str(new_spec), "--json").stdout)
    assert {c["address"] for c in doc["changes"]} == {"broker.1", "broker.2", "broker.3"}
    assert all(c["ibp_pin"] == "3.8" for c in doc["changes"])  # first roll: the protocol held at 3.8
    second = [s for s in doc["steps"] if s["kind"] == "restart" and s["id"].endswith("#final")]
    assert len(second) == 3  # second roll: raised
    since = time.time()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", str(new_spec), "--auto-approve"],
                                env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = False
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            first_roll = [x for x in journal.read_text().splitlines()[mark:]
                          if '"step_started"' in x and "restart:kafka" in x and "#final" not in x]
            if len(first_roll) == 2:
                time.sleep(0.25)  # inside the second broker's first-roll restart
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.1)
        proc.wait()
        assert killed, "the apply ended before its second restart"
        time.sleep(8)  # the orphaned Ansible run may still be finishing that restart
        builds = {n: running_build(n) for n in ("kf1", "kf2", "kf3")}
        assert sum("kafka-3.8.1-" in b for b in builds.values()) >= 1, builds  # the first roll is unfinished
        r = cli("apply", str(new_spec), "--auto-approve")
        assert r.returncode == 0, r.stdout + r.stderr + unit_logs(["kf1", "kf2", "kf3"], "kafka", since)
        assert "inter.broker.protocol.version stays 3.8" in r.stdout
    finally:
        report = producer.stop()
    entries = [json.loads(x) for x in journal.read_text().splitlines()[mark:]]
    first_done = [i for i, e in enumerate(entries) if e["event"] == "step_done"
                  and e["step"].startswith("restart:kafka") and "#final" not in e["step"]]
    raised = [i for i, e in enumerate(entries) if e["event"] == "step_started"
              and e["step"].startswith("configure:kafka") and e["step"].endswith("#final")]
    assert len(first_done) >= 3 and raised and max(first_done) < min(raised), \
        "the protocol was raised only after every broker had been restarted onto 3.9.1"
    # Each broker really started twice (once per roll), whether the killed restart had reached its
    # host (then the rerun confirms it) or not (then the rerun does it).
    starts = {n: unit_starts(n, "kafka", since) for n in ("kf1", "kf2", "kf3")}
    assert starts == {"kf1": 2, "kf2": 2, "kf3": 2}, f"starts per broker during the upgrade: {starts}"
    for name in ("kf1", "kf2", "kf3"):
        assert "kafka-3.9.1-" in running_build(name)
        props = lab.exec_in(name, ["cat", "/etc/kafka/server.properties"], check=True).stdout
        assert "inter.broker.protocol.version" not in props  # raised to 3.9's default
        unit = lab.exec_in(name, ["cat", "/etc/systemd/system/kafka.service"], check=True).stdout
        assert "/opt/kafka/kafka-3.9.1-" in unit
    assert cli("plan", str(new_spec), "--detailed-exitcode").returncode == 0
    assert not report.errors, report.failure()
    missing = report.acked - read_numbers(BOOTSTRAP, "upgrade2", report.acked)
    assert not missing, f"{len(missing)} acknowledged messages lost"
