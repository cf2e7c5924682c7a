"""A secured KRaft cluster (Kafka 4.4.0) on real lab hosts, built from bare hosts by kafkaform:
TLS on every listener and between controllers, brokers authenticating to each other and to the
controllers with node certificates, clients with SCRAM-SHA-512 or a client certificate, ACLs
enforced (allow.everyone.if.no.acl.found=false).

Checked with Kafka's own console producer and consumer (tool classes from the same 4.4.0 jars,
run on this machine) and the client.properties `kafkaform client-config` writes: no credentials,
a wrong password and a missing ACL are refused, the right login works against every broker with
host names verified. Then plan/apply/re-plan, a rolling config change under a SCRAM producer, a
password rotation and an ACL removal — and a search of every output, state file, plan, journal
and host disk for the passwords the test planted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import lab
from reconciler.apply.state import write_private
from reconciler.lab.workload import (
    NumberedProducer,
    ProducerReport,
    ToolProducer,
    create_topic,
    java_log_config,
    read_numbers,
)
from tests.integration.conftest import REPO, Cli, lab_for

pytestmark = pytest.mark.integration

HOSTS = ["10.213.0.11", "10.213.0.12", "10.213.0.13"]
CLIENT = ",".join(f"{h}:9094" for h in HOSTS)  # SASL_SSL (SCRAM)
INTERNAL = ",".join(f"{h}:9092" for h in HOSTS)  # SSL with client certificates
# Distinctive values: a search for them must find them only in the files they are meant to be in.
APP_PW = "Planted-App-Secret-7f3a9c"
APP_PW2 = "Planted-App-Rotated-51be02"
OPS_PW = "Planted-Ops-Secret-c81d44"
LIBS = "/var/cache/kafkaform/artifacts/kafka-4.4.0/libs/*"


@dataclass
class Secure:
    spec: Path
    data: dict[str, Any]
    dir: Path
    home: Path
    mode: str
    outputs: list[str] = field(default_factory=list)  # every kafkaform output of this module
    started: float = field(default_factory=time.time)  # files in the temp dir older than this are not ours

    @property
    def tls(self) -> Path:
        return self.home / "clusters" / self.data["name"] / "tls"

    def write(self) -> Path:
        self.spec.write_text(yaml.safe_dump(self.data, sort_keys=False))
        return self.spec

    def admin(self) -> dict[str, Any]:
        """kafka-python settings of kafkaform's own admin certificate (a super user)."""
        return {"security_protocol": "SSL", "ssl_cafile": str(self.tls / "ca.crt"),
                "ssl_certfile": str(self.tls / "admin.crt"), "ssl_keyfile": str(self.tls / "admin.key")}

    def scram(self, user: str, password: str) -> dict[str, Any]:
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": user,
                "sasl_plain_password": password, "ssl_cafile": str(self.tls / "ca.crt")}


@pytest.fixture(scope="module", params=["kraft", "zookeeper"])
def secure(request: pytest.FixtureRequest, cli: Cli, kf_home: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Secure]:
    """KRaft 4.4.0 (examples/lab-secure.yaml), or ZooKeeper mode 3.9.1 with the same listeners and
    security (the ZooKeeper-mode lab's ensemble, brokers logging in to ZooKeeper) and ZooKeeper TLS
    from create (security.zookeeper_tls: a TLS-only client port, quorum TLS)."""
    d = tmp_path_factory.mktemp(f"secure-{request.param}")
    for name, value in (("app.pw", APP_PW), ("ops.pw", OPS_PW)):
        (d / name).write_text(value + "\n")
        os.chmod(d / name, 0o600)
    data = yaml.safe_load((REPO / "examples" / "lab-secure.yaml").read_text())
    data["security"]["users"] = [{"name": "app", "password": {"file": str(d / "app.pw")}},
                                 {"name": "ops", "password": {"file": str(d / "ops.pw")}}]
    if request.param == "zookeeper":
        zk = yaml.safe_load((REPO / "examples" / "lab-zookeeper.yaml").read_text())
        zk["kafka"]["listeners"] = data["kafka"]["listeners"]
        zk["kafka"]["inter_broker_listener"] = data["kafka"]["inter_broker_listener"]
        data = {**zk, "name": "secure-zk", "security": {**data["security"], "zookeeper_tls": True}}
    s = Secure(spec=d / "secure.yaml", data=data, dir=d, home=kf_home, mode=request.param)
    with lab_for(cli, s.write(), data["name"]):
        yield s


def run(s: Secure, cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    p = cli(*args)
    s.outputs.append(p.stdout + p.stderr)
    return p


def console(tool: str, props: Path, *args: str, stdin: str | None = None, timeout: float = 90
            ) -> subprocess.CompletedProcess[str]:
    """Kafka's own console producer/consumer (4.4.0 jars) with a client.properties, on this machine;
    warnings and errors on stderr."""
    log = java_log_config(props.with_name("console-log4j2.properties"))
    main = {"producer": "org.apache.kafka.tools.ConsoleProducer",
            "consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer"}[tool]
    return subprocess.run(["java", f"-Dlog4j2.configurationFile={log}", "-cp", LIBS, main, "--command-config",
                           str(props), *args], input=stdin, text=True, capture_output=True, timeout=timeout)


def records(out: str) -> list[str]:
    """The records a console consumer printed (its other lines are notices)."""
    return [line for line in out.splitlines() if re.fullmatch(r"(order|x)-\d+", line)]


def private_file(path: Path, text: str) -> Path:
    """A client config the test writes itself, 0600 like the ones client-config writes."""
    write_private(path, text)
    return path


def sees_topic(client: dict[str, Any], topic: str) -> bool:
    """Whether a consumer with these settings connects to the SCRAM listener and lists `topic`."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        c = KafkaConsumer(bootstrap_servers=CLIENT.split(","), request_timeout_ms=10_000, **client)
    except KafkaError:
        return False
    try:
        return topic in c.topics()
    except KafkaError:
        return False
    finally:
        c.close()


def client_config(s: Secure, cli: Cli, user: str, *extra: str) -> Path:
    out = s.dir / f"{user}-{len(s.outputs)}.properties"
    p = run(s, cli, "client-config", str(s.spec), "--user", user, "--out", str(out), *extra)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def test_secured_cluster_from_bare_hosts(secure: Secure, cli: Cli) -> None:
    a = run(secure, cli, "apply", str(secure.spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert "access: create 2 user(s), add 4 ACL(s)" in a.stdout
    assert run(secure, cli, "plan", str(secure.spec), "--detailed-exitcode").returncode == 0
    d = json.loads(run(secure, cli, "describe-cluster", str(secure.spec), "--json").stdout)
    assert d["State"] == "ACTIVE" and d["RegisteredBrokers"] == [1, 2, 3]
    assert d["EncryptionInTransit"] == {"ClientBroker": "TLS", "InCluster": True}
    assert all(c["DaysLeft"] > 300 for c in d["Certificates"].values())
    if secure.mode == "kraft":
        assert d["Quorum"]["LeaderId"] in (101, 102, 103)  # DescribeQuorum over TLS with kafkaform's certificate
        private = ["/etc/kafka/server.properties", "/etc/kafka-controller/controller.properties"]
    else:
        private = ["/etc/kafka/server.properties", "/etc/kafka/zookeeper-jaas.conf", "/etc/zookeeper/jaas.conf",
                   "/etc/zookeeper/security.args", "/etc/zookeeper/node.key.pem", "/etc/kafka/zookeeper-client.key.pem"]
    for h in ("kf1", "kf2", "kf3"):
        modes = lab.exec_in(h, ["stat", "-c", "%a", *private], check=True).stdout.split()
        assert modes == ["600"] * len(private), (h, private, modes)
    b = json.loads(run(secure, cli, "get-bootstrap-brokers", str(secure.spec), "--json").stdout)
    assert b == {"BootstrapBrokerStringTls": INTERNAL, "BootstrapBrokerStringSaslScram": CLIENT}
    # the lab's data dirs are not on dm-crypt (its kernel has no device-mapper): requiring it is refused
    rest = d["EncryptionAtRest"]
    assert rest["Required"] is False and not rest["DataDirs"]["Encrypted"] and not rest["DataDirs"]["Unknown"]
    assert len(rest["DataDirs"]["Unencrypted"]) == 6  # 3 brokers, and 3 controllers or 3 ZooKeeper nodes
    required = secure.dir / "at-rest.yaml"
    required.write_text(yaml.safe_dump({**secure.data, "security": {**secure.data["security"],
                                                                    "encryption_at_rest": "required"}}))
    p = run(secure, cli, "plan", str(required))
    host, data_dir = rest["DataDirs"]["Unencrypted"][0].split(":", 1)
    assert p.returncode == 1 and f"security.encryption_at_rest: data dir {data_dir} of " in p.stderr, p.stderr
    assert f" on {host} is on " in p.stderr and "not on a dm-crypt (LUKS) device" in p.stderr
    assert p.stderr.count("security.encryption_at_rest:") == len(rest["DataDirs"]["Unencrypted"])


def test_kafkas_own_clients_are_authenticated_and_authorized(secure: Secure, cli: Cli) -> None:
    create_topic(INTERNAL, "orders", partitions=3, replication_factor=3, client=secure.admin())
    create_topic(INTERNAL, "payroll", partitions=1, replication_factor=3, client=secure.admin())
    app = client_config(secure, cli, "app")
    props = app.read_text()
    assert "ssl.endpoint.identification.algorithm=https" in props
    lines = "".join(f"order-{i}\n" for i in range(30))
    p = console("producer", app, "--bootstrap-server", CLIENT, "--topic", "orders", stdin=lines)
    assert p.returncode == 0 and "ERROR" not in p.stderr, p.stderr[-2000:]
    c = console("consumer", app, "--bootstrap-server", CLIENT, "--topic", "orders", "--group", "orders-reader",
                "--from-beginning", "--max-messages", "30", "--timeout-ms", "30000")
    assert sorted(records(c.stdout)) == sorted(f"order-{i}" for i in range(30)), c.stdout + c.stderr[-2000:]
    # the three partitions are led by the three brokers: the client connected to each, host names verified
    from kafka import KafkaAdminClient

    from reconciler.observe.kafka_admin import to_partitions

    admin = KafkaAdminClient(bootstrap_servers=INTERNAL.split(","), **secure.admin())
    try:
        leaders = {p.leader for p in to_partitions(admin.describe_topics(["orders"]))}
    finally:
        admin.close()
    assert leaders == {1, 2, 3}
    # a wrong password is refused
    wrong = private_file(secure.dir / "wrong.properties", props.replace(APP_PW, "not-the-password"))
    c = console("consumer", wrong, "--bootstrap-server", CLIENT, "--topic", "orders", "--group", "orders-x",
                "--from-beginning", "--max-messages", "1", "--timeout-ms", "20000")
    assert records(c.stdout) == [] and "Authentication failed" in c.stdout + c.stderr, c.stderr[-2000:]
    # no credentials at all (TLS only) are refused on the SCRAM listener
    tls_only = [x for x in props.splitlines() if not x.startswith(("sasl.", "security.protocol"))]
    anon = private_file(secure.dir / "anonymous.properties", "\n".join(tls_only) + "\nsecurity.protocol=SSL\n")
    c = console("consumer", anon, "--bootstrap-server", CLIENT, "--topic", "orders", "--group", "orders-y",
                "--from-beginning", "--max-messages", "1", "--timeout-ms", "15000")
    assert records(c.stdout) == [], c.stdout
    # an authenticated user without an ACL for the topic is refused
    c = console("consumer", app, "--bootstrap-server", CLIENT, "--topic", "payroll", "--group", "orders-z",
                "--from-beginning", "--max-messages", "1", "--timeout-ms", "20000")
    assert records(c.stdout) == [] and "Not authorized to access topics: [payroll]" in c.stdout + c.stderr, \
        c.stderr[-2000:]
    p = console("producer", app, "--bootstrap-server", CLIENT, "--topic", "payroll", stdin="x\n")
    assert "TopicAuthorizationException" in p.stdout + p.stderr or "Not authorized" in p.stdout + p.stderr, \
        p.stderr[-2000:]
    # a client certificate from the cluster CA logs in as its CN: the super user ops can read payroll
    ops = client_config(secure, cli, "ops", "--mtls")
    c = console("consumer", ops, "--bootstrap-server", INTERNAL, "--topic", "orders", "--group", "ops-reader",
                "--from-beginning", "--max-messages", "30", "--timeout-ms", "30000")
    assert len(records(c.stdout)) == 30, c.stderr[-2000:]


def tls_reply(host: str, port: int, ctx: ssl.SSLContext, send: bytes = b"") -> bytes | None:
    """What a TLS client gets from host:port for `send` (read until the server closes), or None
    when the server refuses the handshake or ends the session with an alert."""
    try:
        with socket.create_connection((host, port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(send)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
    except (ssl.SSLError, ConnectionError):
        return None


# Run inside a ZooKeeper host: a TLS handshake with the election port of another ensemble member,
# with this host's own ZooKeeper key store (the server checks the certificate names the address the
# connection comes from); prints the protocol and the server certificate's SAN.
QUORUM_PROBE = """
import socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile="/etc/zookeeper/ca.pem")
ctx.load_cert_chain("/etc/zookeeper/node.key.pem")
with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
    print(s.version(), ",".join(v for _, v in s.getpeercert()["subjectAltName"]))
"""


@pytest.mark.parametrize("secure", ["zookeeper"], indirect=True)
def test_zookeeper_speaks_tls_only_and_an_unauthenticated_client_cannot_change_brokers_or_configs(
        secure: Secure, cli: Cli) -> None:
    """security.zookeeper_tls: no plaintext ZooKeeper client reaches any member (nor a TLS client
    without a certificate from the cluster CA), the quorum's election port speaks TLS between
    members, and a TLS client with a certificate but without the brokers' or the super user's
    login can read but not change /brokers or /config, nor read SCRAM credentials."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError
    from kazoo.handlers.threading import KazooTimeoutError
    from kazoo.retry import KazooRetry

    ca, cert, key = (str(secure.tls / n) for n in ("trust.crt", "admin.crt", "admin.key"))
    with_cert = ssl.create_default_context(cafile=ca)
    with_cert.load_cert_chain(cert, key)
    no_cert = ssl.create_default_context(cafile=ca)
    for h in HOSTS:
        plain = KazooClient(hosts=f"{h}:2181", timeout=3, connection_retry=KazooRetry(max_tries=0))
        try:
            with pytest.raises(KazooTimeoutError):
                plain.start(timeout=5)
        finally:
            plain.stop()
            plain.close()
        assert tls_reply(h, 2181, no_cert, b"srvr") is None, h  # ssl.clientAuth=need
        assert b"Mode: " in (tls_reply(h, 2181, with_cert, b"srvr") or b""), h  # 4lw over TLS (kafkaform's gates)
        runtime = lab.exec_in(f"kf{HOSTS.index(h) + 1}", ["cat", "/var/lib/zookeeper/conf/zoo.cfg"],
                              check=True).stdout.splitlines()
        assert "sslQuorum=true" in runtime and "secureClientPort=2181" in runtime, runtime
        assert not any(x.startswith("clientPort=") for x in runtime), runtime
        # the election port: a member's own certificate completes the handshake, none is refused
        g = HOSTS[(HOSTS.index(h) + 1) % len(HOSTS)]
        probe = lab.exec_in(f"kf{HOSTS.index(g) + 1}", ["python3", "-c", QUORUM_PROBE, h, "3888"])
        assert probe.returncode == 0 and probe.stdout.split()[1] == h, probe.stdout + probe.stderr
        assert tls_reply(h, 3888, no_cert) is None, h
    assert run(secure, cli, "plan", str(secure.spec), "--detailed-exitcode").returncode == 0
    zk = KazooClient(hosts=",".join(f"{h}:2181" for h in HOSTS), timeout=10, use_ssl=True, ca=ca, certfile=cert,
                     keyfile=key, verify_certs=True, check_hostname=True)
    zk.start(timeout=15)
    try:
        assert sorted(zk.get_children("/brokers/ids")) == ["1", "2", "3"]  # reading is allowed
        for attempt in (lambda: zk.set("/brokers/ids/1", b"{}"), lambda: zk.delete("/brokers/ids/1"),
                        lambda: zk.create("/brokers/ids/9", b"{}"), lambda: zk.set("/config/topics/orders", b"{}"),
                        lambda: zk.create("/config/changes/config_change_9999999999", b"{}"),
                        lambda: zk.get("/config/users/app")):
            with pytest.raises(NoAuthError):
                attempt()
    finally:
        zk.stop()
        zk.close()


# The roll and the users' and ACLs' Admin API calls are the same in both modes: run once.
@pytest.mark.parametrize("secure", ["kraft"], indirect=True)
def test_rolling_config_change_under_a_scram_producer(secure: Secure, cli: Cli) -> None:
    create_topic(INTERNAL, "orders-rolling", partitions=6, replication_factor=3, min_insync_replicas=2,
                 client=secure.admin())
    secure.data["security"]["acls"].append({"principal": "app", "resource_type": "topic",
                                            "resource_name": "orders-rolling", "operations": ["write", "describe"]})
    a = run(secure, cli, "apply", str(secure.write()), "--auto-approve")
    assert a.returncode == 0 and "add 2 ACL(s)" in a.stdout, a.stdout + a.stderr
    producer = NumberedProducer(CLIENT, "orders-rolling", rate_per_s=100, client=secure.scram("app", APP_PW)).start()
    try:
        secure.data["kafka"]["config"]["log.retention.hours"] = 48
        plan = run(secure, cli, "plan", str(secure.write()))
        assert len(re.findall(r"broker\.\d: restart kafka", plan.stdout)) == 3, plan.stdout
        a = run(secure, cli, "apply", str(secure.spec), "--auto-approve")
        assert a.returncode == 0, a.stdout + a.stderr
    finally:
        report = producer.stop()
    assert run(secure, cli, "plan", str(secure.spec), "--detailed-exitcode").returncode == 0
    assert report.sent > 300 and not report.errors, report.failure()
    missing = report.acked - read_numbers(INTERNAL, "orders-rolling", report.acked, client=secure.admin())
    assert not missing, f"{len(missing)} acknowledged messages lost"


@pytest.mark.parametrize("secure", ["kraft"], indirect=True)
def test_password_rotation_and_acl_removal(secure: Secure, cli: Cli) -> None:

    def can_log_in(password: str) -> bool:
        return sees_topic(secure.scram("app", password), "orders")

    (secure.dir / "app.pw").write_text(APP_PW2 + "\n")
    plan = run(secure, cli, "plan", str(secure.spec))
    assert "rotate the password of 1 user(s)" in plan.stdout and ": restart" not in plan.stdout, plan.stdout
    a = run(secure, cli, "apply", str(secure.spec), "--auto-approve")
    assert a.returncode == 0, a.stdout + a.stderr
    assert can_log_in(APP_PW2) and not can_log_in(APP_PW)
    secure.data["security"]["acls"] = [x for x in secure.data["security"]["acls"]
                                       if x["resource_name"] != "orders-rolling"]
    plan = run(secure, cli, "plan", str(secure.write()))
    assert "delete 2 ACL(s)" in plan.stdout, plan.stdout
    assert run(secure, cli, "apply", str(secure.spec), "--auto-approve").returncode == 0
    assert run(secure, cli, "plan", str(secure.spec), "--detailed-exitcode").returncode == 0


@pytest.mark.parametrize("secure", ["zookeeper"], indirect=True)  # (3 brokers and, with ZooKeeper TLS, 3 servers roll)
def test_certificate_renewal_and_ca_rotation_under_load(secure: Secure, cli: Cli) -> None:
    """A certificate near expiry is renewed by a plan (that node rolls); then the CA is rotated in
    three applies, each a roll, under SCRAM producers (Kafka's own VerifiableProducer): one trusting
    only the old CA through the renewal and phase 1, then, as the apply ending phase 1 says, one
    given the new trust through phases 2 and 3: 0 lost; afterwards a client trusting only the new
    CA connects and one trusting only the old CA does not."""

    from reconciler.security import tls

    create_topic(INTERNAL, "orders-rotation", partitions=6, replication_factor=3, min_insync_replicas=2,
                 client=secure.admin())
    secure.data["security"]["acls"].append({"principal": "app", "resource_type": "topic",
                                            "resource_name": "orders-rotation", "operations": ["write", "describe"]})
    assert run(secure, cli, "apply", str(secure.write()), "--auto-approve").returncode == 0
    old_ca = (secure.tls / "ca.crt").read_text()
    ca_key = (secure.tls / "ca.key").read_text()
    # A Java client reads its trust once, at start: the first producer's config trusts the old CA only
    # (written before the short certificate below: client-config prepares material, renewing it)
    old_trust = client_config(secure, cli, "app")
    # kf1's certificate expires in 10 days (renew_before_days: 30)
    cert, key = tls.issue(old_ca, ca_key, "kafka-nodes", ["10.213.0.11"], 10, organization=secure.data["name"])
    (secure.tls / "hosts" / "10.213.0.11.crt").write_text(cert)
    (secure.tls / "hosts" / "10.213.0.11.key").write_text(key)
    password = (secure.dir / "app.pw").read_text().strip()
    producers = {"1": ToolProducer(CLIENT, "orders-rotation", old_trust, LIBS, "1").start()}
    reports: dict[str, ProducerReport] = {}
    try:
        plan = run(secure, cli, "plan", str(secure.spec))
        assert "certificate of 10.213.0.11: issued (it expires in 10 days" in plan.stdout + plan.stderr
        assert re.findall(r"broker\.\d: restart kafka", plan.stdout) == ["broker.1: restart kafka"], plan.stdout
        assert re.findall(r"zookeeper\.\d: restart zookeeper", plan.stdout) == ["zookeeper.1: restart zookeeper"]
        assert run(secure, cli, "apply", str(secure.spec), "--auto-approve").returncode == 0
        assert run(secure, cli, "rotate-ca", str(secure.spec)).returncode == 0
        for phase in ("1 of 3", "2 of 3", "3 of 3"):
            if phase == "2 of 3":  # clients restart with client-config's new trust (both CAs)
                reports["1"] = producers["1"].stop()
                new_trust = client_config(secure, cli, "app")
                producers["2"] = ToolProducer(CLIENT, "orders-rotation", new_trust, LIBS, "2").start()
            a = run(secure, cli, "apply", str(secure.spec), "--auto-approve")
            assert a.returncode == 0 and f"phase {phase}" in a.stdout + a.stderr, a.stdout + a.stderr
            if phase == "1 of 3":
                assert "give clients the new trust" in a.stdout + a.stderr, a.stdout + a.stderr
            assert len(re.findall(r"restart kafka on \S+: (?:ok|changed)", a.stdout)) == 3, a.stdout
            assert len(re.findall(r"restart zookeeper on \S+: (?:ok|changed)", a.stdout)) == 3, a.stdout
    finally:
        for name, producer in producers.items():
            if name not in reports:
                reports[name] = producer.stop()
    assert run(secure, cli, "plan", str(secure.spec), "--detailed-exitcode").returncode == 0
    new_ca = (secure.tls / "ca.crt").read_text()
    assert new_ca != old_ca and (secure.tls / "trust.crt").read_text() == new_ca
    d = json.loads(run(secure, cli, "describe-cluster", str(secure.spec), "--json").stdout)
    assert d["CertificateAuthority"]["Trusted"] == 1 and d["CertificateAuthority"]["Rotation"] is None
    assert all(c["DaysLeft"] > 300 for c in d["Certificates"].values())

    def connects(ca_pem: str) -> bool:
        f = private_file(secure.dir / "only-one-ca.pem", ca_pem)
        return sees_topic({**secure.scram("app", password), "ssl_cafile": str(f)}, "orders-rotation")

    assert connects(new_ca) and not connects(old_ca)
    for name, report in reports.items():
        assert report.sent > 300 and not report.errors, f"producer {name}: {report.failure()}"
        missing = report.acked - read_numbers(INTERNAL, "orders-rotation", report.acked, client=secure.admin(),
                                              prefix=name)
        assert not missing, f"producer {name}: {len(missing)} acknowledged messages lost"


def test_planted_secrets_are_nowhere_but_their_files(secure: Secure, cli: Cli) -> None:
    saved = secure.dir / "saved.plan"
    assert run(secure, cli, "plan", str(secure.spec), "-out", str(saved)).returncode == 0
    run(secure, cli, "show", str(saved), "--json")
    planted = [APP_PW, APP_PW2, OPS_PW]
    intended = {secure.dir / "app.pw", secure.dir / "ops.pw"} | set(secure.dir.glob("*.properties"))
    on_hosts: set[str] = set()
    if secure.mode == "zookeeper":  # kafkaform's own ZooKeeper logins: only in their 0600 files
        from reconciler.security.zookeeper import super_digest

        zk = json.loads((secure.tls / "zookeeper.json").read_text())
        planted += [zk["kafka"], zk["super"], super_digest(zk["super"]).split(":", 1)[1]]
        intended.add(secure.tls / "zookeeper.json")
        on_hosts = {"etc/zookeeper/jaas.conf", "etc/zookeeper/security.args", "etc/kafka/zookeeper-jaas.conf"}
    for text in secure.outputs:
        assert not any(p in text for p in planted), "a planted secret in kafkaform's output"
    # this machine's state, every temp file written since this module began (older ones, such as a
    # checkout holding this test's own source with the planted values, are not kafkaform's), and
    # every file the hosts wrote (their overlay upper dirs)
    grep = ["grep", "-l", "-a", "-F", *sum((["-e", p] for p in planted), [])]
    found = subprocess.run([*grep, "-r", str(secure.home), str(secure.dir)], capture_output=True, text=True
                           ).stdout.splitlines()
    recent = subprocess.run(["find", tempfile.gettempdir(), "-xdev", "-path", f"{tempfile.gettempdir()}/pytest-of-*",
                             "-prune", "-o", "-type", "f", "-newermt", f"@{int(secure.started) - 1}", "-print0"],
                            capture_output=True).stdout.split(b"\0")
    recent_files = [f.decode() for f in recent if f and not Path(f.decode()).is_relative_to(REPO)]
    for i in range(0, len(recent_files), 500):
        found += subprocess.run([*grep, "--", *recent_files[i:i + 500]], capture_output=True, text=True
                                ).stdout.splitlines()
    st = lab.status()
    assert st is not None
    found += subprocess.run([*grep, "-r", *(h.upper for h in st.hosts)], capture_output=True, text=True
                            ).stdout.splitlines()
    intended |= {Path(h.upper) / f for h in st.hosts for f in on_hosts}
    found = [f for f in found if Path(f) not in intended]
    assert not found, f"planted secrets found in {found}"
    for f in intended:
        assert f.stat().st_mode & 0o077 == 0, f
