"""Safe rolling changes on a real 3-host lab cluster under a continuous acks=all producer, in both
metadata modes (the module runs once per mode: ZooKeeper mode on Kafka 3.9.1, KRaft on 4.4.0 with
a controller and a broker on each host).

One producer runs through all the changes (static config, heap, dynamic config, a quorum config
change, an apply killed mid-roll and resumed); afterwards every acknowledged message must be read
back. The cluster is read through the mode seam (`mode_of(spec).read_cluster`): ZooKeeper's view
in ZooKeeper mode, the Admin API and the controllers' DescribeQuorum in KRaft.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
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
from reconciler.modes import mode_of
from reconciler.observe.model import ClusterState
from reconciler.safety import can_restart_voter
from reconciler.spec import load_spec
from tests.integration.conftest import KRAFT_LAB_SPEC, LAB_SPEC, Cli, lab_for, tinfra, unit_logs, unit_starts

pytestmark = pytest.mark.integration

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
HOST_OF = {1: "10.213.0.11", 2: "10.213.0.12", 3: "10.213.0.13", 101: "10.213.0.11", 102: "10.213.0.12",
           103: "10.213.0.13"}
TOPIC = "rolling"
SPECS = {"zookeeper": LAB_SPEC, "kraft": KRAFT_LAB_SPEC}
# the service holding the metadata quorum, and a config change that rolls only it
QUORUM = {"zookeeper": "zookeeper", "kraft": "kafka-controller"}


class Spec:
    """The lab spec as data; each change writes a new file so every apply is from a spec file."""

    def __init__(self, d: Path, mode: str) -> None:
        self.dir = d
        self.mode = mode
        self.data = yaml.safe_load(SPECS[mode].read_text())
        self.n = 0

    def write(self) -> Path:
        self.n += 1
        p = self.dir / f"lab-{self.n}.yaml"
        p.write_text(yaml.safe_dump(self.data, sort_keys=False))
        return p

    def state(self, timeout: float = 3.0) -> ClusterState:
        spec = load_spec(SPECS[self.mode])
        return mode_of(spec).read_cluster(spec, timeout)

    def quorum_change(self, value: int) -> None:
        """A config change only the quorum's nodes take (ZooKeeper servers, KRaft controllers)."""
        if self.mode == "zookeeper":
            self.data["zookeeper"]["config"] = {"maxClientCnxns": value}
        else:
            self.data["kafka"]["controller_config"] = {"controller.quorum.election.backoff.max.ms": value * 10}

    def quorum_leader_host(self) -> str:
        st = self.state()
        if self.mode == "zookeeper":
            return next(h for h, m in st.zookeeper_modes.items() if m == "leader")
        assert st.quorum and st.quorum.leader_id is not None, st.error
        return HOST_OF[st.quorum.leader_id]


@pytest.fixture(scope="module", params=["zookeeper", "kraft"])
def cluster(request: pytest.FixtureRequest, cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spec]:
    mode = request.param
    with lab_for(cli, SPECS[mode], "lab"):
        a = cli("apply", str(SPECS[mode]), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        create_topic(BOOTSTRAP, TOPIC, partitions=12, replication_factor=3, min_insync_replicas=2)
        yield Spec(tmp_path_factory.mktemp(f"rolling-{mode}"), mode)


@pytest.fixture(scope="module")
def producer(cluster: Spec) -> Iterator[NumberedProducer]:
    p = NumberedProducer(BOOTSTRAP, TOPIC, rate_per_s=150).start()
    yield p
    p.stop()


def kafka_started(name: str, unit: str = "kafka") -> str:
    return lab.exec_in(name, ["systemctl", "show", "-p", "ActiveEnterTimestamp,MainPID", f"{unit}.service"],
                       check=True).stdout


def restart_order(output: str, service: str) -> list[str]:
    return re.findall(rf"restart {service} on (\S+): (?:ok|changed)", output)


def wait_in_sync(cluster: Spec, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = cluster.state()
        if len(st.unfenced_brokers) == 3 and st.partitions and all(set(p.isr) == set(p.replicas)
                                                                    for p in st.partitions):
            q = st.quorum
            if cluster.mode == "zookeeper" or (q and all(can_restart_voter(q, v.node_id).ok for v in q.voters)):
                return  # (KRaft: every voter caught up with the leader)
        time.sleep(1)
    raise AssertionError("cluster did not get back in sync")


@pytest.mark.parametrize("addr", ["10.213.0.11", "10.213.0.12", "10.213.0.13"])
def test_hosts_run_what_the_spec_says(cluster: Spec, addr: str, tmp_path: Path) -> None:
    """The cluster built from bare hosts: services, ports and files (testinfra over SSH)."""
    host = tinfra(addr, tmp_path)
    quorum = QUORUM[cluster.mode]
    for svc in (quorum, "kafka"):
        s = host.service(svc)
        assert s.is_running and s.is_enabled, svc
    listening = host.socket.get_listening_sockets()
    assert any(x.endswith(f"{addr}:9092") for x in listening), listening
    quorum_port = ":2181" if cluster.mode == "zookeeper" else f"{addr}:9093"
    assert any(x.endswith(quorum_port) for x in listening), listening
    props = host.file("/etc/kafka/server.properties")
    assert props.user == "kafka" and props.mode == 0o600
    broker_id = {"10.213.0.11": 1, "10.213.0.12": 2, "10.213.0.13": 3}[addr]
    if cluster.mode == "zookeeper":
        assert f"broker.id={broker_id}\n" in props.content_string
        return
    text = props.content_string
    assert "process.roles=broker\n" in text and f"node.id={broker_id}\n" in text
    assert "controller.quorum.bootstrap.servers=10.213.0.11:9093,10.213.0.12:9093,10.213.0.13:9093\n" in text
    assert "zookeeper.connect" not in text and "controller.quorum.voters" not in text
    ctrl = host.file("/etc/kafka-controller/controller.properties")
    assert ctrl.user == "kafka" and ctrl.mode == 0o600
    assert "process.roles=controller\n" in ctrl.content_string and f"node.id={100 + broker_id}\n" in ctrl.content_string
    ids = {host.file(f"{d}/meta.properties").content_string.split("cluster.id=")[1].split()[0]
           for d in ("/var/lib/kafka/data", "/var/lib/kafka-controller/metadata")}
    assert len(ids) == 1, ids  # broker and controller storage formatted into one cluster
    for d in ("/var/lib/kafka/data", "/var/lib/kafka-controller/metadata"):
        assert host.file(f"{d}/meta.properties").user == "kafka"  # the format's files: the service's
        marker = host.file(f"{d}/.kafkaform-owner")  # the removal proof: not the service's to rewrite
        assert (marker.user, marker.group) == ("root", "root"), d
    assert host.file("/etc/kafka/log4j2.properties").exists
    assert host.file("/var/log/kafka-controller/server.log").size > 0  # log4j2 logs (without a config: nothing)


def test_describe_cluster_agrees_with_kafkas_own_tools(cluster: Spec, cli: Cli) -> None:
    d = json.loads(cli("describe-cluster", str(SPECS[cluster.mode]), "--json", check=True).stdout)
    assert d["State"] == "ACTIVE" and d["RegisteredBrokers"] == [1, 2, 3]
    if cluster.mode == "zookeeper":
        assert d["MetadataMode"] == "ZOOKEEPER"
        assert d["ZookeeperConnectString"] == "10.213.0.11:2181,10.213.0.12:2181,10.213.0.13:2181"
        return
    assert d["MetadataMode"] == "KRAFT" and isinstance(d["MetadataVersion"], int) and d["MetadataVersion"] > 0
    q = d["Quorum"]
    assert [v["Id"] for v in q["Voters"]] == [101, 102, 103] and q["LeaderId"] in (101, 102, 103)
    # Kafka's own MetadataQuorumCommand, from the same jars, on a cluster host
    tool = lab.exec_in("kf1", ["sh", "-c", "exec java -Dlog4j2.configurationFile=/etc/kafka/log4j2.properties "
                                           "-Dkafka.logs.dir=/tmp -cp \"$(ls -d /opt/kafka/kafka-*)/libs/*\" "
                                           "org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-controller "
                                           "10.213.0.11:9093 describe --status"], check=True).stdout
    fields = dict(line.split(":", 1) for line in tool.splitlines() if ":" in line)
    assert int(fields["LeaderId"]) == q["LeaderId"]
    assert fields["ClusterId"].strip() == d["ClusterId"]
    voters = json.loads(fields["CurrentVoters"])
    assert {v["id"]: v["directoryId"] for v in voters} == {v["Id"]: v["DirectoryId"] for v in q["Voters"]}


def test_plan_refused_while_a_broker_is_down(cluster: Spec, cli: Cli) -> None:
    lab.exec_in("kf3", ["systemctl", "stop", "kafka.service"], check=True)
    try:
        cluster.data["kafka"]["config"]["log.retention.hours"] = 48
        p = cli("plan", str(cluster.write()))
        assert p.returncode == 1, p.stdout
        assert "unavailable for acks=all writes" in p.stderr
        assert f"{TOPIC}-" in p.stderr and "broker.1" in p.stderr and "broker.2" in p.stderr
        assert "--allow-unavailable" in p.stderr
    finally:
        lab.exec_in("kf3", ["systemctl", "start", "kafka.service"], check=True)
        wait_in_sync(cluster)


def test_plan_refused_while_a_quorum_node_is_down(cluster: Spec, cli: Cli) -> None:
    """With one of the 3 quorum nodes stopped by hand, restarting another would lose the quorum:
    refused, naming the quorum rule (ZooKeeper's majority; KRaft's KafkaQuorumCheck)."""
    unit = QUORUM[cluster.mode]
    lab.exec_in("kf3", ["systemctl", "stop", f"{unit}.service"], check=True)
    try:
        before = dict(cluster.data["kafka"].get("controller_config", {})), dict(
            (cluster.data.get("zookeeper") or {}).get("config", {}))
        cluster.quorum_change(90)
        p = cli("plan", str(cluster.write()))
        assert p.returncode == 1, p.stdout
        rule = "the ensemble needs 2 of 3" if cluster.mode == "zookeeper" else "KafkaQuorumCheck"
        assert "restart refused" in p.stderr and rule in p.stderr, p.stderr
        assert "--allow-unavailable" in p.stderr
    finally:
        lab.exec_in("kf3", ["systemctl", "start", f"{unit}.service"], check=True)
        if cluster.mode == "kraft":
            cluster.data["kafka"]["controller_config"] = before[0]
        else:
            cluster.data["zookeeper"]["config"] = before[1]
        wait_in_sync(cluster)


def test_static_config_rolls_one_at_a_time_controller_last(cluster: Spec, cli: Cli, producer: NumberedProducer
                                                           ) -> None:
    """ZooKeeper mode: brokers one at a time, the controller broker last. KRaft: a cluster-wide
    setting the controllers act on (num.partitions) rolls the controllers first, followers before
    the active controller, then the brokers; the active controller moves once."""
    controller_before = cluster.state().controller_id
    seen: list[int | None] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            c = cluster.state(timeout=2).controller_id
            if c is not None and (not seen or seen[-1] != c):
                seen.append(c)
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    cluster.data["kafka"]["config"]["num.partitions"] = 4
    spec = cluster.write()
    plan = cli("plan", str(spec)).stdout
    assert plan.count("availability: broker") == 3
    a = cli("apply", str(spec), "--auto-approve")
    stop.set()
    t.join()
    assert a.returncode == 0, a.stdout + a.stderr
    order = restart_order(a.stdout, "kafka")
    assert len(order) == 3 and len(set(order)) == 3
    if cluster.mode == "zookeeper":
        assert order[-1] == HOST_OF[controller_before]  # type: ignore[index]
    else:
        ctrl = restart_order(a.stdout, "kafka-controller")
        assert len(ctrl) == 3 and len(set(ctrl)) == 3
        assert ctrl[-1] == HOST_OF[controller_before]  # type: ignore[index]  # the active controller last
        done = re.findall(r"restart (kafka-controller|kafka) on \S+: (?:ok|changed)", a.stdout)
        assert done == ["kafka-controller"] * 3 + ["kafka"] * 3, done  # controllers first, then brokers
        assert plan.count("KafkaQuorumCheck") == 3
    assert len(seen) <= 2, f"controller moved more than once: {seen}"
    assert "preferred leaders:" in a.stdout
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0


def test_heap_change_is_a_rolling_restart(cluster: Spec, cli: Cli, producer: NumberedProducer) -> None:
    """KRaft run (the watch is the same code in both modes): the JVM is first made unexecutable for
    the kafka user (running processes keep running), so the first broker restarted crash-loops
    (systemd status 203, EXEC). The apply stops there within seconds, naming the unit, its host and
    its exit, not after the gate's 180 s; once java is fixed the next apply resumes the roll."""
    cluster.data["kafka"]["heap"] = "416m"
    spec = cluster.write()
    restarted: list[str] = []
    if cluster.mode == "kraft":
        hosts = ("kf1", "kf2", "kf3")
        java = lab.exec_in("kf1", ["readlink", "-f", "/usr/bin/java"], check=True).stdout.strip()
        for h in hosts:
            lab.exec_in(h, ["chmod", "700", java], check=True)
        try:
            t0 = time.monotonic()
            a = cli("apply", str(spec), "--auto-approve")
            took = time.monotonic() - t0
        finally:
            for h in hosts:
                lab.exec_in(h, ["chmod", "755", java], check=True)
        restarted = restart_order(a.stdout, "kafka")
        assert a.returncode == 1 and len(restarted) == 1, a.stdout + a.stderr
        assert re.search(rf"kafka on {re.escape(restarted[0])}: activating \(auto-restart\), after \d+ automatic "
                         r"restart\(s\), its process last exited with status 203 \(EXEC", a.stderr), a.stderr
        assert "it will not be" in a.stderr and took < 90, (took, a.stderr)  # not the gate's 180 s
        wait_in_sync(cluster)  # systemd's next try starts it; until it is back in the ISR a plan refuses
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    # each broker restarted once: the one that crash-looped came up on the new unit, so it is not again
    assert sorted(restarted + restart_order(a.stdout, "kafka")) == ["10.213.0.11", "10.213.0.12", "10.213.0.13"]
    assert restart_order(a.stdout, "kafka-controller") == [] and restart_order(a.stdout, "zookeeper") == []
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


def test_quorum_config_rolls_followers_first_leader_last(cluster: Spec, cli: Cli,
                                                         producer: NumberedProducer) -> None:
    """A setting of the quorum's nodes alone (ZooKeeper servers, KRaft controllers) rolls them one
    at a time, followers first, the leader last, and restarts no broker."""
    leader = cluster.quorum_leader_host()
    before = {n: kafka_started(n) for n in ("kf1", "kf2", "kf3")}
    cluster.quorum_change(120)
    spec = cluster.write()
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    order = restart_order(a.stdout, QUORUM[cluster.mode])
    assert len(order) == 3 and len(set(order)) == 3 and order[-1] == leader
    assert restart_order(a.stdout, "kafka") == []
    assert {n: kafka_started(n) for n in ("kf1", "kf2", "kf3")} == before, "a broker restarted"
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0


def test_killed_apply_resumes_without_restarting_twice(cluster: Spec, cli: Cli, kf_home: Path,
                                                       producer: NumberedProducer) -> None:
    journal = kf_home / "clusters" / "lab" / "journal.jsonl"
    mark = len(journal.read_text().splitlines())
    cluster.data["kafka"]["config"]["log.retention.hours"] = 36
    spec = cluster.write()
    since = time.time()
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
    time.sleep(3)  # the orphaned Ansible run may still be finishing that restart,
    wait_in_sync(cluster)  # and the broker then catching up (a KRaft broker is fenced until it has)
    a = cli("apply", str(spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr + unit_logs(["kf1", "kf2", "kf3"], "kafka", since)
    assert cli("plan", str(spec), "--detailed-exitcode").returncode == 0
    entries = [json.loads(x) for x in journal.read_text().splitlines()[mark:]]
    done = [e["step"] for e in entries if e["event"] == "step_done" and e["step"].startswith("restart:kafka")]
    assert sorted(done) == sorted(f"restart:kafka@{HOST_OF[b]}" for b in (1, 2, 3)), done
    # Every broker really started once (systemd's journal on each host). The interrupted restart either
    # reached its host before the kill (the rerun confirms it from the service's start time and does
    # not repeat it) or had not (the rerun does it): never twice.
    starts = {n: unit_starts(n, "kafka", since) for n in ("kf1", "kf2", "kf3")}
    assert starts == {"kf1": 1, "kf2": 1, "kf3": 1}, f"starts per broker: {starts}"
    started = [e["step"] for e in entries if e["event"] == "step_started" and e["step"].startswith("restart:kafka")]
    resumed = [e["step"] for e in entries if e.get("resumed")]
    assert (resumed, started.count(killed_during)) in (([killed_during], 1), ([], 2)), (resumed, started)


def test_no_acknowledged_message_lost(cluster: Spec, producer: NumberedProducer) -> None:
    report = producer.stop()
    assert report.sent > 1000
    assert not report.errors, report.failure()
    got = read_numbers(BOOTSTRAP, TOPIC, report.acked)
    missing = report.acked - got
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"


MIGRATION_PW = "Migration-App-Secret-93d1"


def test_securing_the_running_cluster_plaintext_to_sasl_ssl(cluster: Spec, cli: Cli, kf_home: Path) -> None:
    """The open cluster becomes a SASL_SSL one in planned rolls under an acks=all producer that
    moves from PLAINTEXT to SCRAM midway (see reconciler/security/migration.py):

    0. doing two steps in one roll is refused, naming what to apply first;
    1. add the SASL_SSL client listener, the mTLS listener inter-broker traffic will use and the
       security section (anonymous allowed while PLAINTEXT clients remain); KRaft: the mTLS
       controller listener beside the PLAINTEXT one. Everything rolls, the user is created; the
       producer moves;
    2. move inter-broker traffic onto the mTLS listener; KRaft: every node reaches the controllers
       over the mTLS controller listener (the PLAINTEXT one stays served);
    3. drop PLAINTEXT and anonymous access (KRaft: the PLAINTEXT controller listener too): it is
       closed, nothing acknowledged is lost, and (ZooKeeper mode) the znodes the open cluster made
       are no longer writable by anyone;
    4. (ZooKeeper mode) ZooKeeper TLS goes on in three more rolls (security.zookeeper_tls "serve",
       "quorum", true; true at once is refused): the client port then takes no plaintext client.
    """
    kraft = cluster.mode == "kraft"
    tls = kf_home / "clusters" / "lab" / "tls"
    pw = cluster.dir / "app.pw"
    pw.touch(mode=0o600)
    pw.write_text(MIGRATION_PW + "\n")
    plain = {"name": "PLAINTEXT", "port": 9092}
    sasl = {"name": "CLIENT", "port": 9094, "protocol": "SASL_SSL"}
    mtls = {"name": "INTERNAL", "port": 9096, "protocol": "SSL", "authentication": "mtls"}
    old_ctrl = {"name": "CONTROLLER", "port": 9093}
    new_ctrl = {"name": "CONTROLLER_TLS", "port": 9095, "protocol": "SSL", "authentication": "mtls"}

    def step(listeners: list[dict[str, object]], inter_broker: str, anonymous: bool,
             controllers: tuple[dict[str, object], ...], zookeeper_tls: object = False) -> Path:
        cluster.data["kafka"]["listeners"] = listeners
        cluster.data["kafka"]["inter_broker_listener"] = inter_broker
        if kraft:
            cluster.data["kafka"]["controller_listener"] = controllers[0]
            cluster.data["kafka"].pop("second_controller_listener", None)
            if len(controllers) > 1:
                cluster.data["kafka"]["second_controller_listener"] = controllers[1]
        cluster.data["security"] = {
            "allow_anonymous": anonymous, "users": [{"name": "app", "password": {"file": str(pw)}}],
            "acls": [{"principal": "app", "resource_type": "topic", "resource_name": "migrate",
                      "operations": ["write", "read", "describe"]}], "zookeeper_tls": zookeeper_tls}
        return cluster.write()

    def apply(spec: Path) -> str:
        a = cli("apply", str(spec), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
        return a.stdout

    hosts = ("10.213.0.11", "10.213.0.12", "10.213.0.13")
    client = ",".join(f"{h}:9094" for h in hosts)
    create_topic(BOOTSTRAP, "migrate", partitions=6, replication_factor=3, min_insync_replicas=2)
    before = NumberedProducer(BOOTSTRAP, "migrate", rate_per_s=100).start()
    after = None
    try:
        p = cli("plan", str(step([plain, sasl, mtls], "INTERNAL", True, (new_ctrl, old_ctrl))))
        assert p.returncode == 1 and "do not serve INTERNAL yet" in p.stderr, p.stdout + p.stderr
        assert not kraft or "do not all serve CONTROLLER_TLS yet" in p.stderr, p.stderr
        out = apply(step([plain, sasl, mtls], "PLAINTEXT", True, (old_ctrl, new_ctrl)))
        assert "create 1 user(s)" in out, out
        if not kraft:  # the znodes the open cluster made get ACLs
            assert restart_order(out, "zookeeper") and "made before ZooKeeper was secured" in out, out
        scram = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "app",
                 "sasl_plain_password": MIGRATION_PW, "ssl_cafile": str(tls / "ca.crt")}
        after = NumberedProducer(client, "migrate", rate_per_s=100, client=scram).start()
        time.sleep(2)
        first = before.stop()  # the clients have moved to SASL_SSL
        apply(step([plain, sasl, mtls], "INTERNAL", True, (new_ctrl, old_ctrl)))
        closed = step([sasl, mtls], "INTERNAL", False, (new_ctrl,))
        apply(closed)
        assert cli("plan", str(closed), "--detailed-exitcode").returncode == 0
        if not kraft:
            _znodes_not_writable_anonymously(hosts)
            final = step([sasl, mtls], "INTERNAL", False, (new_ctrl,), zookeeper_tls=True)
            p = cli("plan", str(final))
            assert p.returncode == 1 and 'apply "serve" first' in p.stderr, p.stdout + p.stderr
            out = apply(step([sasl, mtls], "INTERNAL", False, (new_ctrl,), zookeeper_tls="serve"))
            assert restart_order(out, "zookeeper") and restart_order(out, "kafka"), out
            out = apply(step([sasl, mtls], "INTERNAL", False, (new_ctrl,), zookeeper_tls="quorum"))
            assert restart_order(out, "zookeeper") and not restart_order(out, "kafka"), out
            out = apply(final)
            assert "drop the plaintext client port from the lines of server(s) 1, 2, 3" in out, out
            assert cli("plan", str(final), "--detailed-exitcode").returncode == 0
    finally:
        second = after.stop() if after is not None else None
        before.stop()  # (already stopped unless a step failed)
    for h in hosts:
        for port in (9092, 9093) if kraft else (9092,):
            with pytest.raises(OSError):
                socket.create_connection((h, port), timeout=3).close()  # PLAINTEXT is gone
    if not kraft:
        _no_plaintext_zookeeper_client(hosts)
    assert second is not None
    admin = {"security_protocol": "SSL", "ssl_cafile": str(tls / "ca.crt"), "ssl_certfile": str(tls / "admin.crt"),
             "ssl_keyfile": str(tls / "admin.key")}
    internal = ",".join(f"{h}:9096" for h in hosts)
    for report in (first, second):
        assert report.sent > 200 and not report.errors, report.failure()
        missing = report.acked - read_numbers(internal, "migrate", report.acked, client=admin)
        assert not missing, f"{len(missing)} acknowledged messages lost"


def _no_plaintext_zookeeper_client(hosts: tuple[str, ...]) -> None:
    """ZooKeeper TLS only: a plaintext client gets no session on any server's client port."""
    from kazoo.client import KazooClient
    from kazoo.handlers.threading import KazooTimeoutError

    for h in hosts:
        zk = KazooClient(hosts=f"{h}:2181", timeout=3, connection_retry={"max_tries": 1})
        with pytest.raises(KazooTimeoutError):
            zk.start(timeout=6)
        zk.stop()
        zk.close()


def _znodes_not_writable_anonymously(hosts: tuple[str, ...]) -> None:
    """An unauthenticated ZooKeeper client can no longer change what the open cluster made."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    zk = KazooClient(hosts=",".join(f"{h}:2181" for h in hosts), timeout=10)
    zk.start(timeout=15)
    try:
        for attempt in (lambda: zk.create("/brokers/ids/9", b"{}"), lambda: zk.set("/config/topics/migrate", b"{}"),
                        lambda: zk.set("/brokers/topics/rolling", b"{}"), lambda: zk.create("/admin/x", b"")):
            with pytest.raises(NoAuthError):
                attempt()
    finally:
        zk.stop()
        zk.close()
