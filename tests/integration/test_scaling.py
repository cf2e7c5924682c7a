"""Horizontal scaling on a real lab: 3 -> 4 brokers and back, each one plan, under an acks=all
producer, in both metadata modes (ZooKeeper mode on 3.9.1; KRaft on 4.4.0 with a controller on
each of the first three hosts: the 4th broker joins as a broker only, formatted into the
cluster without initial controllers, and after the scale-in its registration is gone).

4 topics x 24 partitions (RF 3, min ISR 2, some data in each) on 3 racks. The 4th broker joins
rack-a, so the best balance the rack spread allows is rack-a's replicas split between brokers 1
and 4 while brokers 2 and 3 keep theirs.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler import lab
from reconciler.lab.workload import NumberedProducer, create_topic, read_numbers
from reconciler.modes import mode_of
from reconciler.observe.model import ClusterState
from reconciler.spec import load_spec
from tests.integration.conftest import KRAFT_LAB_SPEC, LAB_SPEC, Cli, lab_for

pytestmark = pytest.mark.integration

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
SPECS = {"zookeeper": LAB_SPEC, "kraft": KRAFT_LAB_SPEC}
TOPICS = [f"scale-{i}" for i in range(4)]
RACK = {1: "rack-a", 2: "rack-b", 3: "rack-c", 4: "rack-a"}


def spec_file(d: Path, name: str, brokers: list[int], mode: str = "zookeeper", **kafka_config: object) -> Path:
    data = yaml.safe_load(SPECS[mode].read_text())
    if 4 in brokers:
        data["brokers"].append({"id": 4, "host": "10.213.0.14", "rack": "rack-a"})
        data["allow_uneven_racks"] = True
    data["brokers"] = [b for b in data["brokers"] if b["id"] in brokers]
    data["kafka"]["config"].update(kafka_config)
    data["kafka"]["reassignment"] = {"throttle_mib_per_s": 2, "max_partitions_per_broker": 8}
    p = d / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.fixture(scope="module", params=["zookeeper", "kraft"])
def specs(request: pytest.FixtureRequest, cli: Cli, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Path]]:
    mode = request.param
    d = tmp_path_factory.mktemp(f"scaling-{mode}")
    out = {"three": spec_file(d, "three.yaml", [1, 2, 3], mode), "four": spec_file(d, "four.yaml", [1, 2, 3, 4], mode)}
    with lab_for(cli, out["four"], "lab"):  # four hosts; the cluster starts on three of them
        a = cli("apply", str(out["three"]), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        for t in TOPICS:
            create_topic(BOOTSTRAP, t, partitions=24, replication_factor=3, min_insync_replicas=2)
        for t in TOPICS:  # some data in each partition before anything moves
            fill = NumberedProducer(BOOTSTRAP, t, rate_per_s=5000, max_messages=5000).start()
            deadline = time.monotonic() + 60
            while sum(fill.counts()) < 5000 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert fill.stop().errors == []
        yield out


def state(specs: dict[str, Path]) -> ClusterState:
    """The cluster as the mode seam reads it (ZooKeeper's znodes, or the Admin API in KRaft)."""
    spec = load_spec(specs["three"])
    return mode_of(spec).read_cluster(spec, 5.0)


def no_throttles_left(specs: dict[str, Path]) -> None:
    """No replication throttle on any topic or broker (ZooKeeper's /config znodes, or
    DescribeConfigs in KRaft: what the plan's leftover-throttle check reads too)."""
    st = state(specs)
    assert st.reachable, st.error
    assert not st.throttled_topics and not st.throttled_brokers, (st.throttled_topics, st.throttled_brokers)


def assert_lost_nothing(p: NumberedProducer, topic: str) -> None:
    report = p.stop()
    assert not report.errors, report.failure()
    assert len(report.acked) > 100
    got = read_numbers(BOOTSTRAP, topic, report.acked)
    lost = report.acked - got
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {sorted(lost)[:10]}"


def test_scale_out_3_to_4_in_one_plan(specs: dict[str, Path], cli: Cli) -> None:
    p = NumberedProducer(BOOTSTRAP, TOPICS[0], rate_per_s=100).start()
    time.sleep(2)
    plan = cli("plan", str(specs["four"]), "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    doc = json.loads(plan.stdout)
    (reassign,) = [s for s in doc["steps"] if s["kind"] == "reassign"]
    data_moves = [m for m in reassign["moves"] if set(m["after"]) != set(m["before"])]
    # only towards the new broker, from its rack-mate: nothing shuffles between the old brokers
    assert data_moves and all(set(m["after"]) - set(m["before"]) == {4} for m in data_moves)
    assert all(set(m["before"]) - set(m["after"]) == {1} for m in data_moves)
    text = cli("plan", str(specs["four"])).stdout
    assert "partitions will be reassigned" in text and "lower bound" in text and "MiB" in text

    a = cli("apply", str(specs["four"]), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "throttle 2 MiB/s" in a.stdout and "throttles removed" in a.stdout
    st = state(specs)
    assert sorted(st.broker_ids) == [1, 2, 3, 4]
    assert all(set(p_.isr) == set(p_.replicas) for p_ in st.partitions)
    assert all(len({RACK[b] for b in p_.replicas}) == 3 for p_ in st.partitions if len(p_.replicas) == 3)
    replicas = Counter(b for p_ in st.partitions for b in p_.replicas)
    rf3 = [p_ for p_ in st.partitions if len(p_.replicas) == 3]
    assert replicas[2] == replicas[3] == len(rf3)  # one replica per rack: racks b and c keep everything
    assert abs(replicas[1] - replicas[4]) <= 1, replicas  # rack-a's share split evenly
    leaders = Counter(p_.replicas[0] for p_ in st.partitions)
    assert max(leaders.values()) - min(leaders.values()) <= 1, leaders
    assert all(p_.leader == p_.replicas[0] for p_ in st.partitions), "preferred leaders in place"
    no_throttles_left(specs)
    assert cli("plan", str(specs["four"]), "--detailed-exitcode").returncode == 0
    assert_lost_nothing(p, TOPICS[0])


def test_scale_in_4_to_3_drains_before_stopping(specs: dict[str, Path], cli: Cli, kf_home: Path) -> None:
    p = NumberedProducer(BOOTSTRAP, TOPICS[0], rate_per_s=100).start()
    time.sleep(2)
    plan = cli("plan", str(specs["three"]))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "broker(s) 4 leave the spec and must be drained" in plan.stdout
    assert "broker.4 on 10.213.0.14 will be destroyed" in plan.stdout
    a = cli("apply", str(specs["three"]), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    journal = [json.loads(x) for x in (kf_home / "clusters" / "lab" / "journal.jsonl").read_text().splitlines()]
    last = max(i for i, e in enumerate(journal) if e["event"] == "apply_started")
    events = [(e["event"], e.get("step"), e.get("gate")) for e in journal[last:]]
    empty_at = events.index(("gate_passed", "reassign:partitions", "broker 4 empty"))
    stop_at = events.index(("step_started", "stop:kafka@10.213.0.14", None))
    assert empty_at < stop_at, "broker 4 held nothing before it was stopped"
    st = state(specs)
    assert sorted(st.broker_ids) == [1, 2, 3]  # KRaft: fenced registrations included, so 4 was unregistered
    assert not [p_ for p_ in st.partitions if 4 in p_.replicas]
    assert all(set(p_.isr) == set(p_.replicas) for p_ in st.partitions)
    unit = lab.exec_in("kf4", ["systemctl", "is-active", "kafka.service"])
    assert unit.stdout.strip() in ("inactive", "unknown"), unit.stdout
    no_throttles_left(specs)
    assert cli("plan", str(specs["three"]), "--detailed-exitcode").returncode == 0
    assert_lost_nothing(p, TOPICS[0])


def test_removing_two_of_three_brokers_is_refused_naming_topics(specs: dict[str, Path], cli: Cli,
                                                               tmp_path: Path) -> None:
    mode = "kraft" if "controllers" in yaml.safe_load(specs["three"].read_text()) else "zookeeper"
    one = spec_file(tmp_path, "one.yaml", [1], mode, **{
        "default.replication.factor": 1, "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1, "transaction.state.log.min.isr": 1,
        "min.insync.replicas": 1})
    before = {b: lab.exec_in(f"kf{b}", ["systemctl", "show", "-p", "MainPID", "kafka.service"]).stdout
              for b in (2, 3)}
    p = cli("plan", str(one))
    assert p.returncode == 1, p.stdout
    assert "cannot remove broker(s) 2, 3" in p.stderr
    assert all(t in p.stderr for t in TOPICS), p.stderr
    a = cli("apply", str(one), "--auto-approve")
    assert a.returncode == 1
    assert before == {b: lab.exec_in(f"kf{b}", ["systemctl", "show", "-p", "MainPID", "kafka.service"]).stdout
                      for b in (2, 3)}, "no broker was touched"


def test_throttles_left_by_a_killed_reassignment_are_removed(specs: dict[str, Path], cli: Cli) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    # what a reassignment killed mid-way leaves behind: rates on brokers, throttled replicas on a topic
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP.split(","))
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "2", configs={
            "leader.replication.throttled.rate": ("SET", "1048576"),
            "follower.replication.throttled.rate": ("SET", "1048576")}),
            ConfigResource(ConfigResourceType.TOPIC, TOPICS[3], configs={
                "leader.replication.throttled.replicas": ("SET", "0:1,0:2")})], incremental=True,
            raise_on_unknown=False)  # kafka-python does not know the throttle keys; the brokers do
    finally:
        admin.close()
    plan = cli("plan", str(specs["three"]))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "remove leftover replication throttles on broker(s) 2 and 1 topic(s)" in plan.stdout
    a = cli("apply", str(specs["three"]), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    no_throttles_left(specs)
    assert cli("plan", str(specs["three"]), "--detailed-exitcode").returncode == 0
