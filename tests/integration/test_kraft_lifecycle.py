"""A KRaft cluster's life on real lab hosts (one lab of 5 hosts, one cluster), under acks=all load:

1. Version upgrade: 3 controllers and 3 brokers on Kafka 4.3.1 (formatted by 4.3.1, so at
   metadata.version 4.3-IV0) upgraded to 4.4.0. kafkaform is killed during the second controller
   restart and run again: it resumes there (no node restarts twice), rolls the rest (controllers
   before brokers, the active controller last), and only then finalizes metadata.version 4.4-IV2
   through UpdateFeatures, naming the feature (kraft.version stays as it was).
2. Controller quorum 3 -> 5 -> 3, one plan each: two controllers on hosts of their own join as
   observers and are added as voters, then removed as voters and stopped; no running node restarts.
Nothing acknowledged is lost."""

from __future__ import annotations

import json
import os
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
from reconciler.lab.workload import NumberedProducer, create_topic, read_numbers
from reconciler.observe import kraft, wire
from reconciler.observe.connect import Endpoint
from reconciler.safety import can_restart_voter
from tests.integration.conftest import KRAFT_LAB_SPEC, Cli, lab_for, unit_starts

pytestmark = pytest.mark.integration

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
CONTROLLERS = [f"10.213.0.1{i}:9093" for i in range(1, 6)]  # 104 and 105 vote during the quorum test
HOST_OF = {101: "10.213.0.11", 102: "10.213.0.12", 103: "10.213.0.13"}


def _spec(d: Path, version: str, controllers: int = 3) -> Path:
    data = yaml.safe_load(KRAFT_LAB_SPEC.read_text())
    data["name"] = "kupgrade"
    data["kafka"]["version"] = version
    for i in range(4, controllers + 1):
        data["controllers"].append({"id": 100 + i, "host": f"10.213.0.1{i}"})
    p = d / f"kupgrade-{version}-{controllers}.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _quorum_healthy(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = kraft.read_cluster(Endpoint(tuple(BOOTSTRAP.split(","))), Endpoint(tuple(CONTROLLERS)))
        q = st.quorum
        if q and q.leader_id and all(can_restart_voter(q, v.node_id).ok for v in q.voters) \
                and len(st.unfenced_brokers) == 3 and all(set(p.isr) == set(p.replicas) for p in st.partitions):
            return
        time.sleep(1)
    raise AssertionError("the cluster did not get healthy again")


def _described(cli: Cli, spec: Path) -> dict:
    """describe-cluster --json. Its kraft.version is the leading controller's: a broker's ApiVersions
    can stay behind (1 create in 11 here, and one in CI: a broker read kraft.version 1 from the first
    leader, that leader lost its epoch before the records were committed, and the broker answered 0
    until it restarted). A broker whose own answer differs is printed to stderr."""
    doc = json.loads(cli("describe-cluster", str(spec), "--json", check=True).stdout)
    for address in BOOTSTRAP.split(","):
        try:
            conn = wire.Connection(address, 3.0)
            try:
                level = conn.api_versions()["finalized"].get("kraft.version")
            finally:
                conn.close()
        except (OSError, wire.WireError) as e:
            level = f"{type(e).__name__}: {e}"
        if level != doc["FinalizedFeatures"].get("kraft.version"):
            print(f"broker {address} answers kraft.version {level}, the quorum's leader "
                  f"{doc['FinalizedFeatures'].get('kraft.version')}", file=sys.stderr)
    return doc


@pytest.fixture(scope="module")
def old_spec(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("kupgrade")
    spec = _spec(d, "4.3.1")
    with lab_for(cli, _spec(d, "4.3.1", controllers=5), "kupgrade"):  # 5 hosts; the cluster starts on 3
        a = cli("apply", str(spec), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        yield spec


def test_upgrade_431_to_440_killed_mid_roll_resumes_then_finalizes_metadata_version(
        old_spec: Path, cli: Cli, kf_home: Path) -> None:
    before = _described(cli, old_spec)
    assert before["MetadataVersion"] == 30 and before["FinalizedFeatures"].get("kraft.version") == 1, before
    leader_before = before["Quorum"]["LeaderId"]
    create_topic(BOOTSTRAP, "kupgrade", partitions=12, replication_factor=3, min_insync_replicas=2)
    producer = NumberedProducer(BOOTSTRAP, "kupgrade", rate_per_s=150).start()
    leaders: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the active controller, as DescribeQuorum reports it during the upgrade
        while not stop.is_set():
            try:
                q = kraft.describe_quorum(CONTROLLERS, timeout=1.0)
                if q.leader_id is not None and (not leaders or leaders[-1] != q.leader_id):
                    leaders.append(q.leader_id)
            except kraft.QuorumUnreadable:
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    journal = kf_home / "clusters" / "kupgrade" / "journal.jsonl"
    mark = len(journal.read_text().splitlines())
    new_spec = _spec(old_spec.parent, "4.4.0")
    since = time.time()
    try:
        plan = cli("plan", str(new_spec)).stdout
        assert "finalize metadata.version 33 (UpdateFeatures)" in plan and "kraft.version" in plan
        order = [line.split(":")[0].strip("- ") for line in plan.splitlines() if ": restart " in line]
        assert order[-4] == f"controller.{leader_before}" and order[-3:] == ["broker.1", "broker.2", "broker.3"]
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", str(new_spec), "--auto-approve"],
                                env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            started = [json.loads(x) for x in journal.read_text().splitlines()[mark:]
                       if '"step_started"' in x and "restart:kafka-controller" in x]
            if len(started) == 2:
                time.sleep(0.25)
                os.kill(proc.pid, signal.SIGKILL)
                killed = started[-1]["step"]
                break
            time.sleep(0.1)
        proc.wait()
        assert killed, "the apply ended before its second controller restart"
        mid = json.loads(cli("describe-cluster", str(new_spec), "--json").stdout or "{}")
        assert mid.get("MetadataVersion") == 30, "metadata.version was raised before every node ran 4.4.0"
        time.sleep(3)
        _quorum_healthy()
        a = cli("apply", str(new_spec), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
    finally:
        stop.set()
        watcher.join()
        report = producer.stop()
    entries = [json.loads(x) for x in journal.read_text().splitlines()[mark:]]
    done = [e["step"] for e in entries if e["event"] == "step_done" and e["step"].startswith("restart:")]
    assert sorted(done) == sorted([f"restart:kafka-controller@{h}" for h in HOST_OF.values()]
                                  + [f"restart:kafka@{h}" for h in HOST_OF.values()]), done
    # every node really started once (the killed restart either reached its host and was
    # confirmed by the rerun, or had not and was done by it)
    starts = {f"{n}/{u}": unit_starts(n, u, since)
              for n in ("kf1", "kf2", "kf3") for u in ("kafka", "kafka-controller")}
    assert set(starts.values()) == {1}, f"starts per node during the upgrade: {starts}"
    # the active controller went last: leadership moved once during the controllers' roll (at most
    # once more if an election followed the kill)
    assert leaders[0] == leader_before and len(leaders) <= 3, leaders
    # metadata.version finalized after every restart, and only it
    done_at = [(i, e["step"]) for i, e in enumerate(entries) if e["event"] == "step_done"]
    feat = next(i for i, step in done_at if step == "update_features:kafka")
    last_restart = max(i for i, step in done_at if step.startswith("restart:"))
    assert feat > last_restart
    after = _described(cli, new_spec)
    assert after["MetadataVersion"] == 33 and after["FinalizedFeatures"].get("kraft.version") == 1, after
    for name in ("kf1", "kf2", "kf3"):
        for unit in ("kafka", "kafka-controller"):
            cmd = lab.exec_in(name, ["sh", "-c", f"tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value "
                                                 f"{unit}.service)/cmdline"], check=True).stdout
            assert "/kafka-4.4.0-" in cmd, (name, unit, cmd)
    assert cli("plan", str(new_spec), "--detailed-exitcode").returncode == 0
    assert report.sent > 1000 and not report.errors, report.failure()
    missing = report.acked - read_numbers(BOOTSTRAP, "kupgrade", report.acked)
    assert not missing, f"{len(missing)} acknowledged messages lost"


def _pids() -> dict[str, str]:
    out = {}
    for name in ("kf1", "kf2", "kf3"):
        for unit in ("kafka", "kafka-controller"):
            out[f"{name}/{unit}"] = lab.exec_in(name, ["systemctl", "show", "-p", "MainPID", "--value",
                                                       f"{unit}.service"], check=True).stdout.strip()
    return out


def test_controller_quorum_grows_to_five_and_back_to_three(old_spec: Path, cli: Cli) -> None:
    five, three = _spec(old_spec.parent, "4.4.0", controllers=5), _spec(old_spec.parent, "4.4.0")
    producer = NumberedProducer(BOOTSTRAP, "kupgrade", rate_per_s=150).start()
    try:
        before = _pids()
        plan = cli("plan", str(five)).stdout
        assert "add controller 104 to the quorum's voters" in plan and "add controller 105" in plan
        assert ": restart " not in plan, "adding voters restarts nothing"
        a = cli("apply", str(five), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        q = kraft.describe_quorum(CONTROLLERS)
        assert q.voter_ids == (101, 102, 103, 104, 105) and q.leader_id is not None
        assert cli("plan", str(five), "--detailed-exitcode").returncode == 0
        a = cli("apply", str(three), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        assert "remove controller 104 from the quorum's voters" in a.stdout
        assert kraft.describe_quorum(CONTROLLERS).voter_ids == (101, 102, 103)
        for name in ("kf4", "kf5"):
            assert lab.exec_in(name, ["systemctl", "is-active", "kafka-controller.service"]).stdout.strip() != "active"
        assert _pids() == before, "a running controller or broker restarted"
        assert cli("plan", str(three), "--detailed-exitcode").returncode == 0
    finally:
        report = producer.stop()
    assert report.sent > 500 and not report.errors, report.failure()
    missing = report.acked - read_numbers(BOOTSTRAP, "kupgrade", report.acked)
    assert not missing, f"{len(missing)} acknowledged messages lost"
