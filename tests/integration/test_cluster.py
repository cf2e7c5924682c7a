"""The foundation end to end on real lab hosts: real sshd, Ansible, ZooKeeper and Kafka.

The tests run in file order on one lab (module fixture): bad spec first (no host touched), then
apply from bare hosts, re-plan, config change, drift, stale plan, lock, unreachable host.

The cluster carries two hostile config values throughout (`HOSTILE`): a Jinja expression that would
run a command if Ansible templated it, and a Windows path whose backslashes Java's properties
reader would turn into a tab and a newline if they were not escaped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from reconciler import lab
from reconciler.lab.demo import produce_consume
from reconciler.spec import load_spec
from tests.integration.conftest import Cli, tinfra, write_spec

pytestmark = pytest.mark.integration

HOSTS = {"kf1": "10.213.0.11", "kf2": "10.213.0.12", "kf3": "10.213.0.13"}
PWNED = "/tmp/kafkaform-pwned"
# String configs the broker reads but does not use on PLAINTEXT listeners.
HOSTILE = {
    "sasl.kerberos.service.name": "{{ lookup('pipe','touch " + PWNED + "') }}",
    "ssl.truststore.location": "C:\\temp\\new",
}


@pytest.fixture(scope="module")
def lab3(lab3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab spec plus the hostile values (the lab hosts are the conftest fixture's)."""
    spec = tmp_path_factory.mktemp("cluster-spec") / "lab.yaml"
    data = yaml.safe_load(lab3.read_text())
    data["kafka"]["config"].update(HOSTILE)
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec


def accepted_ssh_logins(name: str) -> int:
    """Count of accepted SSH logins on a lab host, from its own sshd journal."""
    out = lab.exec_in(name, ["journalctl", "-q", "--no-pager", "-u", "ssh.service", "-g", "Accepted"]).stdout
    return len([line for line in out.splitlines() if "Accepted" in line])


def test_bad_spec_refused_without_touching_hosts(lab3: Path, cli: Cli, tmp_path: Path) -> None:
    before = {n: accepted_ssh_logins(n) for n in HOSTS}
    bad = write_spec(lab3, tmp_path / "bad.yaml", **{"kafka/config": {"min.insync.replicas": 3}})
    for cmd in (["plan", str(bad)], ["apply", str(bad), "--auto-approve"]):
        p = cli(*cmd)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "kafka.config.min.insync.replicas" in p.stderr
    after = {n: accepted_ssh_logins(n) for n in HOSTS}
    assert after == before, "a bad spec must not open any SSH connection"


def test_apply_from_bare_hosts(lab3: Path, cli: Cli) -> None:
    plan = cli("plan", str(lab3), "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in plan.stdout
    p = cli("apply", str(lab3), "--auto-approve")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Apply complete!" in p.stdout
    # one progress line per action and host
    for addr in HOSTS.values():
        assert re.search(rf"broker\.\d: start kafka on {re.escape(addr)}: (ok|changed)", p.stdout), p.stdout


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_hosts_run_what_the_spec_says(lab3: Path, name: str, tmp_path: Path) -> None:
    spec = load_spec(lab3)
    addr = HOSTS[name]
    host = tinfra(addr, tmp_path)
    for svc in ("zookeeper", "kafka"):
        s = host.service(svc)
        assert s.is_running and s.is_enabled, svc
    listening = host.socket.get_listening_sockets()
    # Java binds dual-stack sockets: the broker shows as [::ffff:<addr>]:9092, ZooKeeper as [::]:2181
    assert any(s.endswith(f"{addr}:9092") for s in listening), listening
    assert any(s.endswith(":2181") for s in listening), listening
    assert any(s.endswith(":2888") or s.endswith(":3888") for s in listening), listening
    props = host.file("/etc/kafka/server.properties")
    assert props.user == "kafka" and props.mode == 0o600
    broker = next(b for b in spec.brokers if b.host == addr)
    text = props.content_string
    assert f"broker.id={broker.id}\n" in text
    assert f"broker.rack={broker.rack}\n" in text
    assert f"zookeeper.connect={spec.zookeeper_connect()}\n" in text
    assert "min.insync.replicas=2\n" in text and "auto.create.topics.enable=false\n" in text
    zoo = host.file("/etc/zookeeper/zoo.cfg").content_string
    assert "reconfigEnabled=true\n" in zoo and "server." not in zoo  # membership is ZooKeeper's own
    runtime = host.file("/var/lib/zookeeper/conf/zoo.cfg").content_string
    assert "dynamicConfigFile=/var/lib/zookeeper/conf/zoo.cfg.dynamic." in runtime
    members = host.file(runtime.split("dynamicConfigFile=", 1)[1].split()[0]).content_string
    assert "server.3=10.213.0.13:2888:3888:participant;0.0.0.0:2181" in members
    myid = next(n.myid for n in spec.zookeeper.nodes if n.host == addr)
    assert host.file("/var/lib/zookeeper/myid").content_string.strip() == str(myid)
    assert host.process.filter(user="kafka", comm="java")


def test_hostile_values_reach_the_broker_exactly_and_run_nothing(lab3: Path) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    assert not Path(PWNED).exists(), "Ansible evaluated a spec value on the control machine"
    for name in HOSTS:
        found = lab.exec_in(name, ["find", "/", "-xdev", "-name", Path(PWNED).name], check=False).stdout
        assert not found.strip(), f"{name}: {found}"
    text = lab.exec_in("kf1", ["cat", "/etc/kafka/server.properties"], check=True).stdout
    assert "sasl.kerberos.service.name={{ lookup('pipe','touch " + PWNED + "') }}\n" in text
    assert "ssl.truststore.location=C:\\\\temp\\\\new\n" in text  # Java reads \\ as one backslash
    admin = KafkaAdminClient(bootstrap_servers=load_spec(lab3).bootstrap_brokers().split(","))
    try:
        for broker in ("1", "2", "3"):
            res = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker,
                                                         configs=list(HOSTILE))], config_filter="all")
            seen = _config_values(res)
            assert seen == HOSTILE, f"broker {broker} reads {seen}"
    finally:
        admin.close()


def _config_values(res: dict[str, dict[str, dict[str, dict[str, object]]]]) -> dict[str, object]:
    """{key: value} of one broker from kafka-python's describe_configs result
    ({"broker": {"<id>": {key: {"value": ..., "config_source": ...}}}})."""
    (configs,) = res["broker"].values()
    return {k: v["value"] for k, v in configs.items()}


# Writes the files of a JSON document {path: content} on a lab host (content given on stdin).
_WRITE_FILES = ("import json, os, sys\n"
                "for p, c in json.load(sys.stdin).items():\n"
                "    os.makedirs(os.path.dirname(p), exist_ok=True)\n"
                "    open(p, 'w', encoding='utf-8').write(c)\n")


def test_fuzzed_units_pass_systemd_and_hand_over_arguments_exactly(lab3: Path) -> None:
    """Units rendered from fuzzed specs: `systemd-analyze verify` accepts every one on a real host,
    and the JVM options reach the process exactly as the spec wrote them (real systemd, real exec)."""
    from hypothesis import given, settings

    from reconciler import files as F
    from reconciler.render.formats import systemd_command
    from reconciler.spec import SpecError, parse_spec
    from tests.fuzz_specs import spec_dicts

    units: dict[str, str] = {}
    argvs: list[list[str]] = []

    @settings(max_examples=60, derandomize=True, database=None, deadline=None)
    @given(spec_dicts())
    def collect(data: dict[str, object]) -> None:
        try:
            spec = parse_spec(data)
        except SpecError:
            return
        n = len(units)
        units[f"/run/kf-fuzz/kf-fuzz-{n}.service"] = F.kafka_unit(
            spec, spec.brokers[0], F.kafka_home(spec, "kafka-3.9.1-0123456789ab"))
        units[f"/run/kf-fuzz/kf-fuzz-{n + 1}.service"] = F.zookeeper_unit(
            spec, F.zookeeper_home(spec, "zookeeper-3.8.4-0123456789ab"))
        if spec.kafka.jvm_opts:
            argvs.append(list(spec.kafka.jvm_opts))

    collect()
    assert len(units) >= 20 and argvs, (len(units), len(argvs))
    argv_units = {f"/run/systemd/system/kf-argv-{i}.service": (
        "[Service]\nType=oneshot\nExecStart="
        + systemd_command(["/usr/bin/python3", "/run/kf-fuzz/argv.py", f"/run/kf-fuzz/argv-{i}.json", *opts]) + "\n")
        for i, opts in enumerate(argvs)}
    dump = "import json, sys\nopen(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n"
    lab.exec_in("kf1", ["python3", "-c", _WRITE_FILES], input=json.dumps(
        {**units, **argv_units, "/run/kf-fuzz/argv.py": dump}), check=True)
    try:
        v = lab.exec_in("kf1", ["systemd-analyze", "verify", *sorted(units)], timeout=300)
        assert v.returncode == 0, v.stdout[-3000:] + v.stderr[-3000:]
        lab.exec_in("kf1", ["systemctl", "daemon-reload"], check=True)
        names = [Path(p).name for p in argv_units]
        lab.exec_in("kf1", ["systemctl", "start", *names], check=True, timeout=300)
        for i, opts in enumerate(argvs):
            got = json.loads(lab.exec_in("kf1", ["cat", f"/run/kf-fuzz/argv-{i}.json"], check=True).stdout)
            assert got == opts
    finally:
        lab.exec_in("kf1", ["sh", "-c", "rm -rf /run/kf-fuzz /run/systemd/system/kf-argv-*.service && "
                            "systemctl daemon-reload"])


def test_thousand_messages_acks_all_round_trip(lab3: Path) -> None:
    spec = load_spec(lab3)
    topic = f"it-{uuid.uuid4().hex[:6]}"
    got = produce_consume(spec.bootstrap_brokers(), topic, count=1000)
    assert got == 1000


def test_replan_is_empty(lab3: Path, cli: Cli) -> None:
    p = cli("plan", str(lab3), "--detailed-exitcode")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "No changes. The cluster matches the spec." in p.stdout
    j = cli("plan", str(lab3), "--json")
    assert j.returncode == 0 and json.loads(j.stdout)["no_changes"] is True


def test_config_change_touches_only_brokers(lab3: Path, cli: Cli, tmp_path: Path) -> None:
    changed = write_spec(lab3, tmp_path / "lab.yaml", **{"kafka/config/log.retention.hours": 48})
    p = cli("plan", str(changed), "--json")
    doc = json.loads(p.stdout)
    assert [c["address"] for c in doc["changes"]] == ["broker.1", "broker.2", "broker.3"]
    assert all(c["action"] == "update" and c["restart"] for c in doc["changes"])
    text = cli("plan", str(changed)).stdout
    assert text.count("(rolling restart)") == 3
    assert 'config.log.retention.hours = "24" -> "48"' in text
    assert "zookeeper." not in text.split("Steps")[0]
    a = cli("apply", str(changed), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    again = cli("plan", str(changed), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout
    # back to the lab spec for the following tests
    assert cli("apply", str(lab3), "--auto-approve").returncode == 0


def test_hand_edit_shows_as_drift_on_that_host_only(lab3: Path, cli: Cli) -> None:
    lab.exec_in("kf2", ["sed", "-i", "s/^num.partitions=3$/num.partitions=7/", "/etc/kafka/server.properties"],
                check=True)
    p = cli("plan", str(lab3), "--json")
    doc = json.loads(p.stdout)
    assert [(c["address"], c["host"]) for c in doc["changes"]] == [("broker.2", "10.213.0.12")]
    attrs = {a["name"]: (a["before"], a["after"]) for a in doc["changes"][0]["attrs"]}
    assert attrs["config.num.partitions"] == ("7", "3")


def test_stale_saved_plan_refused(lab3: Path, cli: Cli, tmp_path: Path) -> None:
    planfile = tmp_path / "drift.plan"
    p = cli("plan", str(lab3), "-out", str(planfile))
    assert p.returncode == 0 and planfile.exists()
    shown = cli("show", str(planfile), "--json")
    assert json.loads(shown.stdout)["summary"]["change"] == 1
    # the world moves on: another hand edit on another host
    lab.exec_in("kf3", ["sh", "-c", "echo '# touched' >> /etc/kafka/server.properties"], check=True)
    a = cli("apply", str(planfile))
    assert a.returncode == 1
    assert "saved plan is stale" in a.stderr
    # converge both hosts again; a fresh saved plan applies as reviewed
    fresh = tmp_path / "fresh.plan"
    assert cli("plan", str(lab3), "-out", str(fresh)).returncode == 0
    a = cli("apply", str(fresh))
    assert a.returncode == 0, a.stdout + a.stderr
    assert cli("plan", str(lab3), "--detailed-exitcode").returncode == 0


def test_forged_truncated_and_broken_plans_refused_before_the_journal(lab3: Path, cli: Cli, tmp_path: Path,
                                                                     kf_home: Path) -> None:
    import hashlib
    import hmac
    import os

    journal = kf_home / "clusters" / "lab" / "journal.jsonl"
    lab.exec_in("kf2", ["sed", "-i", "s/^num.partitions=3$/num.partitions=5/", "/etc/kafka/server.properties"],
                check=True)
    genuine = tmp_path / "genuine.plan"
    cli("plan", str(lab3), "-out", str(genuine), check=True)
    assert genuine.stat().st_mode & 0o777 == 0o600
    doc = json.loads(genuine.read_text())
    key = bytes.fromhex((kf_home / "clusters" / "lab" / "plan.key").read_text().strip())

    def signed(d: dict[str, object], with_key: bytes) -> str:
        body = json.dumps({k: v for k, v in d.items() if k != "signature"}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=True).encode()
        return json.dumps({**d, "signature": "hmac-sha256:" + hmac.new(with_key, body, hashlib.sha256).hexdigest()})

    forged = tmp_path / "forged.plan"  # weakened, re-signed by someone without this machine's key
    forged.write_text(signed({**doc, "allow_unavailable": True}, os.urandom(32)))
    truncated = tmp_path / "truncated.plan"
    truncated.write_text(genuine.read_text()[: len(genuine.read_text()) // 2])
    cycle = tmp_path / "cycle.plan"  # a graph kafkaform itself must never run, even signed
    first, last = doc["steps"][0]["id"], doc["steps"][-1]["id"]
    cycle.write_text(signed({**doc, "edges": [*doc["edges"], [last, first]]}, key))
    stranger = tmp_path / "stranger.plan"
    steps = [{**doc["steps"][0], "host": "10.213.0.99"}, *doc["steps"][1:]]
    stranger.write_text(signed({**doc, "steps": steps}, key))
    before = journal.read_text()
    for path, why in ((forged, "was changed after it was saved"), (truncated, "not JSON"),
                      (cycle, "form a cycle"), (stranger, "10.213.0.99")):
        p = cli("apply", str(path))
        assert p.returncode == 1, (path.name, p.stdout, p.stderr)
        assert why in p.stderr and "Traceback" not in p.stderr, (path.name, p.stderr)
        assert journal.read_text() == before, f"{path.name}: the journal was written before the refusal"
    # a flag that weakens a check is shown in red
    risky = tmp_path / "risky.plan"
    cli("plan", str(lab3), "--allow-unavailable", "-out", str(risky), check=True)
    shown = subprocess.run([sys.executable, "-m", "reconciler.cli", "show", str(risky)], text=True,
                           capture_output=True, env={**cli.env, "FORCE_COLOR": "1"}, check=True)
    assert "\x1b[1;31mWarning: --allow-unavailable" in shown.stdout
    a = cli("apply", str(genuine))  # the genuine one still applies
    assert a.returncode == 0, a.stdout + a.stderr
    assert cli("plan", str(lab3), "--detailed-exitcode").returncode == 0


def test_control_machine_state_is_private(lab3: Path, kf_home: Path) -> None:
    state = kf_home / "clusters" / "lab"
    assert {p.name for p in state.iterdir()} >= {"journal.jsonl", "revisions.jsonl", "apply.lock", "plan.key"}
    for p in [kf_home, kf_home / "clusters", *state.rglob("*")]:
        want = 0o700 if p.is_dir() else 0o600
        assert p.stat().st_mode & 0o777 == want, f"{p}: {oct(p.stat().st_mode & 0o777)}"


def test_concurrent_apply_refused(lab3: Path, cli: Cli, kf_home: Path) -> None:
    import os

    from reconciler.apply.state import ApplyLock

    os.environ["KAFKAFORM_HOME"] = str(kf_home)
    try:
        with ApplyLock("lab"):
            p = cli("apply", str(lab3), "--auto-approve")
    finally:
        del os.environ["KAFKAFORM_HOME"]
    assert p.returncode == 1
    assert "another apply is running on cluster 'lab'" in p.stderr


def test_unreachable_host_named(lab3: Path, cli: Cli) -> None:
    # SSH gone from the host, as on one that went down: the listener and its open sessions (an
    # earlier plan's master connection would otherwise still serve; Debian's unit keeps sessions).
    lab.exec_in("kf3", ["systemctl", "stop", "ssh.service"], check=True)
    lab.exec_in("kf3", ["pkill", "-KILL", "-x", "sshd"])
    try:
        t0 = time.monotonic()
        p = cli("plan", str(lab3))
        assert p.returncode == 1
        assert "10.213.0.13" in p.stderr and "unreachable" in p.stderr
        assert "10.213.0.11" not in p.stderr and "10.213.0.12" not in p.stderr
        assert time.monotonic() - t0 < 60
    finally:
        lab.exec_in("kf3", ["systemctl", "start", "ssh.service"], check=True)


def test_describe_cluster_and_bootstrap_brokers(lab3: Path, cli: Cli) -> None:
    d = json.loads(cli("describe-cluster", str(lab3), "--json", check=True).stdout)
    assert d["State"] == "ACTIVE"
    assert d["RegisteredBrokers"] == [1, 2, 3] and d["ControllerId"] in (1, 2, 3)
    assert d["CurrentVersion"] >= 3  # create, config change, revert (+ converges after drift)
    assert d["ZookeeperConnectString"] == "10.213.0.11:2181,10.213.0.12:2181,10.213.0.13:2181"
    b = cli("get-bootstrap-brokers", str(lab3), check=True).stdout.strip()
    assert b == "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"


def test_rebalance_evens_a_skewed_cluster(lab3: Path, cli: Cli) -> None:
    from collections import Counter

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from reconciler.lab.workload import NumberedProducer
    from reconciler.observe import zookeeper

    admin = KafkaAdminClient(bootstrap_servers=["10.213.0.11:9092"], request_timeout_ms=30000)
    try:  # every leader on broker 1, and a RF 2 topic living only on brokers 1 and 2
        admin.create_topics([NewTopic("skew-leaders", -1, -1, replica_assignments={p: [1, 2, 3] for p in range(12)}),
                             NewTopic("skew-replicas", -1, -1, replica_assignments={p: [1, 2] for p in range(12)})])
    finally:
        admin.close()
    for topic in ("skew-leaders", "skew-replicas"):
        p = NumberedProducer("10.213.0.11:9092", topic, rate_per_s=400).start()
        time.sleep(2)
        assert p.stop().acked
    dry = cli("rebalance", str(lab3), "--dry-run", "--json")
    doc = json.loads(dry.stdout)
    assert doc["replica_moves"] == doc["lower_bound"] > 0
    assert doc["before"]["leaders"]["1"] >= 24
    a = cli("rebalance", str(lab3), "--auto-approve", "--throttle", "5")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "throttles removed" in a.stdout
    st = zookeeper.read_cluster(["10.213.0.11:2181"])
    replicas = Counter(b for p in st.partitions for b in p.replicas)  # the whole cluster, every topic
    leaders = Counter(p.leader for p in st.partitions)
    assert max(replicas.values()) - min(replicas.values()) <= 1, replicas
    assert max(leaders.values()) - min(leaders.values()) <= 1, leaders
    assert all(p.leader == p.replicas[0] for p in st.partitions), "leaders are the planned preferred replicas"
    assert all(set(p.isr) == set(p.replicas) for p in st.partitions)
    again = json.loads(cli("rebalance", str(lab3), "--dry-run", "--json").stdout)
    assert again["moves"] == []
    status = cli("reassignment", "status", str(lab3))
    assert "No partition reassignment is running." in status.stdout
    from kazoo.client import KazooClient

    zk = KazooClient(hosts="10.213.0.11:2181")
    zk.start(timeout=10)
    try:
        for path in [f"/config/topics/{t}" for t in ("skew-leaders", "skew-replicas")] + \
                    [f"/config/brokers/{b}" for b in (1, 2, 3)]:
            if zk.exists(path):
                assert b"throttled" not in zk.get(path)[0], path
    finally:
        zk.stop()
        zk.close()


def test_destroy_needs_confirmation_then_removes_everything(lab3: Path, cli: Cli, tmp_path: Path) -> None:
    refused = cli("destroy", str(lab3))  # no terminal to confirm on
    assert refused.returncode == 1 and "needs confirmation" in refused.stderr
    assert tinfra(HOSTS["kf1"], tmp_path).service("kafka").is_running
    # a directory the host's config names but kafkaform did not make is never deleted
    lab.exec_in("kf1", ["sh", "-c", "mkdir -p /srv/precious && echo keep > /srv/precious/data && "
                        "sed -i 's|^log.dirs=.*|&,/srv/precious|' /etc/kafka/server.properties"], check=True)
    p = cli("destroy", str(lab3), "--auto-approve")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Plan: 0 to add, 0 to change, 6 to destroy." in p.stdout
    assert "deletes /srv/precious (if kafkaform's marker is in it)" in p.stdout  # every path is shown
    assert "deletes /var/lib/kafka/data (if kafkaform's marker is in it)" in p.stdout
    assert "Destroy complete!" in p.stdout
    assert lab.exec_in("kf1", ["cat", "/srv/precious/data"], check=True).stdout == "keep\n"
    for addr in HOSTS.values():
        host = tinfra(addr, tmp_path)
        assert not host.service("kafka").is_running and not host.service("zookeeper").is_running
        for path in ("/opt/kafka", "/opt/zookeeper", "/etc/kafka", "/var/lib/kafka/data", "/var/lib/zookeeper",
                     "/etc/systemd/system/kafka.service"):
            assert not host.file(path).exists, f"{addr}:{path}"
    again = cli("plan", str(lab3))
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in again.stdout
