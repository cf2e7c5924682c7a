"""ZooKeeper ensemble 3 -> 5 -> 3 on a real lab, each one plan, under load.

Brokers 1-3 run on hosts 1-3 next to ZooKeeper servers 1-3; servers 4 and 5 come and go on hosts 4
and 5. A kazoo client writes a znode every 0.1 s throughout (it must never fail and its session
must never expire: the ensemble keeps its quorum) and an acks=all producer must lose nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler import lab
from reconciler.lab.workload import NumberedProducer, create_topic, read_numbers
from reconciler.observe import zookeeper
from tests.integration.conftest import LAB_SPEC, Cli, lab_for

pytestmark = pytest.mark.integration

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
ZK3 = [f"10.213.0.{10 + i}:2181" for i in (1, 2, 3)]
TOPIC = "zk-resize"


def spec_file(d: Path, ids: list[int]) -> Path:
    data = yaml.safe_load(LAB_SPEC.read_text())
    data["zookeeper"]["nodes"] = [{"myid": i, "host": f"10.213.0.{10 + i}"} for i in ids]
    p = d / f"zk-{len(ids)}.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


class ZkWriter:
    """Writes a counter to a znode every 0.1 s with kazoo's retry; records failures and the session."""

    def __init__(self) -> None:
        from kazoo.client import KazooClient, KazooState

        self.client = KazooClient(hosts=",".join(ZK3), timeout=10)
        self.failures: list[str] = []
        self.lost_session = False
        self.writes = 0
        self.slowest = 0.0
        self._stop = threading.Event()  # before the listener that reads it

        def listen(state: str) -> None:
            if state == KazooState.LOST and not self._stop.is_set():  # stop() itself ends the session
                self.lost_session = True

        self.client.add_listener(listen)
        self.client.start(timeout=15)
        self.client.ensure_path("/kafkaform-test")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ZkWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            t0 = time.monotonic()
            try:
                self.client.retry(self.client.set, "/kafkaform-test", str(n).encode())
                self.writes += 1
            except Exception as e:  # noqa: BLE001 - counted, asserted by the test
                self.failures.append(f"{type(e).__name__}: {e}")
            self.slowest = max(self.slowest, time.monotonic() - t0)
            time.sleep(0.1)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.stop()
        self.client.close()


def srvr_modes(hosts: list[int]) -> dict[int, str]:
    return {i: zookeeper.ensemble_mode(f"10.213.0.{10 + i}:2181", timeout=2) for i in hosts}


def zk_pid(i: int) -> str:
    return lab.exec_in(f"kf{i}", ["systemctl", "show", "-p", "MainPID", "zookeeper.service"], check=True).stdout


@pytest.fixture(scope="module")
def specs(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Path]]:
    d = tmp_path_factory.mktemp("zk")
    out = {3: spec_file(d, [1, 2, 3]), 5: spec_file(d, [1, 2, 3, 4, 5])}
    with lab_for(cli, out[5], "lab"):
        a = cli("apply", str(out[3]), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        create_topic(BOOTSTRAP, TOPIC, partitions=12, replication_factor=3, min_insync_replicas=2)
        yield out


@pytest.fixture(scope="module")
def load(specs: dict[int, Path]) -> Iterator[tuple[NumberedProducer, ZkWriter]]:
    producer = NumberedProducer(BOOTSTRAP, TOPIC, rate_per_s=100).start()
    writer = ZkWriter().start()
    yield producer, writer
    writer.stop()
    producer.stop()


def plan_then_apply(cli: Cli, spec: Path, shown: str) -> str:
    """The plan shows `shown`; apply succeeds; returns apply's output."""
    plan = cli("plan", str(spec))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert shown in plan.stdout
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    return a.stdout


def test_grow_3_to_5_without_restarting_the_ensemble(specs: dict[int, Path], cli: Cli,
                                                    load: tuple[NumberedProducer, ZkWriter]) -> None:
    pids = {i: zk_pid(i) for i in (1, 2, 3)}
    plan_then_apply(cli, specs[5], "reconfigure the ZooKeeper ensemble: add server(s) 4, 5")
    st = zookeeper.read_cluster(ZK3)
    assert sorted(st.zookeeper_members) == [1, 2, 3, 4, 5]
    modes = srvr_modes([1, 2, 3, 4, 5])
    assert sorted(modes.values()) == ["follower"] * 4 + ["leader"], modes
    assert pids == {i: zk_pid(i) for i in (1, 2, 3)}, "no existing ZooKeeper server restarted"
    props = lab.exec_in("kf1", ["cat", "/etc/kafka/server.properties"], check=True).stdout
    assert "10.213.0.15:2181" in props, "brokers use the grown ensemble"
    assert cli("plan", str(specs[5]), "--detailed-exitcode").returncode == 0
    _, writer = load
    assert not writer.failures and not writer.lost_session, writer.failures[:3]


def test_shrink_5_to_3_leavers_out_before_they_stop(specs: dict[int, Path], cli: Cli,
                                                   load: tuple[NumberedProducer, ZkWriter]) -> None:
    pids = {i: zk_pid(i) for i in (1, 2, 3)}
    out = plan_then_apply(cli, specs[3], "remove server(s) 4, 5")
    assert "ZooKeeper on 10.213.0.14 out of the ensemble: ok" in out
    st = zookeeper.read_cluster(ZK3)
    assert sorted(st.zookeeper_members) == [1, 2, 3]
    modes = srvr_modes([1, 2, 3])
    assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
    for i in (4, 5):
        state = lab.exec_in(f"kf{i}", ["systemctl", "is-active", "zookeeper.service"]).stdout.strip()
        assert state in ("inactive", "unknown"), state
    assert pids == {i: zk_pid(i) for i in (1, 2, 3)}, "no remaining ZooKeeper server restarted"
    assert cli("plan", str(specs[3]), "--detailed-exitcode").returncode == 0
    producer, writer = load
    writer.stop()
    assert not writer.failures and not writer.lost_session, writer.failures[:3]
    assert writer.writes > 100
    report = producer.stop()
    assert not report.errors, report.failure()
    got = read_numbers(BOOTSTRAP, TOPIC, report.acked)
    assert not report.acked - got, f"{len(report.acked - got)} acknowledged messages lost"
