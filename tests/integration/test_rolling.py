"""Safe rolling changes on a real 3-broker lab cluster under a continuous acks=all producer.

One producer runs through all the changes (static config, heap, dynamic config, ZooKeeper config,
an apply killed mid-roll and resumed); afterwards every acknowledged message must be read back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler import lab
from reconciler.observe import zookeeper
from reconciler.workload import NumberedProducer, create_topic, read_numbers
from tests.integration.conftest import LAB_SPEC, Cli, lab_for

pytestmark = pytest.mark.integration

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
ZK = ["10.213.0.11:2181", "10.213.0.12:2181", "10.213.0.13:2181"]
HOST_OF = {1: "10.213.0.11", 2: "10.213.0.12", 3: "10.213.0.13"}
TOPIC = "rolling"


class Spec:
    """The lab spec as data; each change writes a new file so every apply is from a spec file."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.data = yaml.safe_load(LAB_SPEC.read_text())
        self.n = 0

    def write(self) -> Path:
        self.n += 1
        p = self.dir / f"lab-{self.n}.yaml"
        p.write_text(yaml.safe_dump(self.data, sort_keys=False))
        return p


@pytest.fixture(scope="module")
def cluster(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spec]:
    with lab_for(cli, LAB_SPEC, "lab"):
        a = cli("apply", str(LAB_SPEC), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        create_topic(BOOTSTRAP, TOPIC, partitions=12, replication_factor=3, min_insync_replicas=2)
        yield Spec(tmp_path_factory.mktemp("rolling"))


@pytest.fixture(scope="module")
def producer(cluster: Spec) -> Iterator[NumberedProducer]:
    p = NumberedProducer(BOOTSTRAP, TOPIC, rate_per_s=150).start()
    yield p
    p.stop()


def kafka_started(name: str) -> str:
    return lab.exec_in(name, ["systemctl", "show", "-p", "ActiveEnterTimestamp,MainPID", "kafka.service"],
                       check=True).stdout


def restart_order(output: str, service: str) -> list[str]:
    return re.findall(rf"restart {service} on (\S+): (?:ok|changed)", output)


def wait_in_sync(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = zookeeper.read_cluster(ZK)
        if len(st.broker_ids) == 3 and all(set(p.isr) == set(p.replicas) for p in st.partitions):
            return
        time.sleep(1)
    raise AssertionError("cluster did not get back in sync")


def test_plan_refused_while_a_broker_is_down(cluster: Spec, cli: Cli) -> None:
    lab.exec_in("kf3", ["systemctl", "stop", "kafka.service"], check=True)
    try:
        cluster.data["kafka"]["config"]["num.partitions"] = 4
        p = cli("plan", str(cluster.write()))
        assert p.returncode == 1, p.stdout
        assert "unavailable for acks=all writes" in p.stderr
        assert f"{TOPIC}-" in p.stderr and "broker.1" in p.stderr and "broker.2" in p.stderr
        assert "--allow-unavailable" in p.stderr
    finally:
        lab.exec_in("kf3", ["systemctl", "start", "kafka.service"], check=True)
        wait_in_sync()


def test_static_config_rolls_one_at_a_time_controller_last(cluster: Spec, cli: Cli, producer: NumberedProducer
                                                           ) -> None:
    controller_before = zookeeper.read_cluster(ZK).controller_id
    seen: list[int | None] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            c = zookeeper.read_cluster(ZK, timeout=2).controller_id
            if c is not None and (not seen or seen[-1] != c):
                seen.append(c)
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    spec = cluster.write()  # num.partitions 4 from the previous test
    plan = cli("plan", str(spec)).stdout
    assert plan.count("availability: broker") == 3
    a = cli("apply", str(spec), "--auto-approve")
    stop.set()
    t.join()
    assert a.returncode == 0, a.stdout + a.stderr
    order = restart_order(a.stdout, "kafka")
    assert len(order) == 3 and len(set(order)) == 3
    assert order[-1] == HOST_OF[controller_before]
    assert len(seen) <= 2, f"controller moved more than once: {seen}"
    assert "preferred leaders:" in a.stdout
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0


def test_heap_change_is_a_rolling_restart(cluster: Spec, cli: Cli, producer: NumberedProducer) -> None:
    cluster.data["kafka"]["heap"] = "416m"
    spec = cluster.write()
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert len(restart_order(a.stdout, "kafka")) == 3
    unit = lab.exec_in("kf2", ["cat", "/etc/systemd/system/kafka.service"], check=True).stdout
    assert "-Xmx416m" in unit
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0


def test_dynamic_config_changes_without_restart(cluster: Spec, cli: Cli, producer: NumberedProducer) -> None:
    before = {n: kafka_started(n) for n in ("kf1", "kf2", "kf3")}
    cluster.data["kafka"]["config"]["log.cleaner.threads"] = 2
    spec = cluster.write()
    p = cli("plan", str(spec))
    assert p.stdout.count("will be updated in-place (no restart)") == 3 and "restart kafka" not in p.stdout
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert {n: kafka_started(n) for n in ("kf1", "kf2", "kf3")} == before, "a broker restarted"
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP.split(","))
    try:
        desc = str(admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "2")]))
    finally:
        admin.close()
    assert "log.cleaner.threads" in desc and "DYNAMIC_BROKER_CONFIG" in desc
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0


def test_zookeeper_config_rolls_followers_first_leader_last(cluster: Spec, cli: Cli,
                                                            producer: NumberedProducer) -> None:
    modes = zookeeper.read_cluster(ZK).zookeeper_modes
    leader = next(h for h, m in modes.items() if m == "leader")
    cluster.data["zookeeper"]["config"] = {"maxClientCnxns": 120}
    spec = cluster.write()
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    order = restart_order(a.stdout, "zookeeper")
    assert len(order) == 3 and order[-1] == leader
    assert "restart kafka" not in a.stdout
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0


def test_killed_apply_resumes_without_restarting_twice(cluster: Spec, cli: Cli, kf_home: Path,
                                                       producer: NumberedProducer) -> None:
    journal = kf_home / "clusters" / "lab" / "journal.jsonl"
    mark = len(journal.read_text().splitlines())
    cluster.data["kafka"]["config"]["log.retention.hours"] = 36
    spec = cluster.write()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", str(spec), "--auto-approve"],
                            env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_during = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        started = [json.loads(x) for x in journal.read_text().splitlines()[mark:]
                   if '"step_started"' in x and "restart:kafka" in x]
        if len(started) == 2:
            time.sleep(0.25)  # inside the second broker's restart: its controlled shutdown alone takes ~0.8 s
            os.kill(proc.pid, signal.SIGKILL)
            killed_during = started[-1]["step"]
            break
        time.sleep(0.1)
    proc.wait()
    assert killed_during, "the apply ended before its second restart"
    time.sleep(8)  # the orphaned Ansible run may still be finishing that restart
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0
    entries = [json.loads(x) for x in journal.read_text().splitlines()[mark:]]
    done = [e["step"] for e in entries if e["event"] == "step_done" and e["step"].startswith("restart:kafka")]
    assert sorted(done) == sorted(f"restart:kafka@{h}" for h in HOST_OF.values()), done
    started = [e["step"] for e in entries if e["event"] == "step_started" and e["step"].startswith("restart:kafka")]
    assert started.count(killed_during) == 1, "the interrupted broker was restarted again"
    resumed = [e for e in entries if e.get("resumed")]
    assert [e["step"] for e in resumed] == [killed_during]


def test_no_acknowledged_message_lost(cluster: Spec, producer: NumberedProducer) -> None:
    report = producer.stop()
    assert report.sent > 1000
    assert not report.errors, report.errors[:5]
    got = read_numbers(BOOTSTRAP, TOPIC, report.acked)
    missing = report.acked - got
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
