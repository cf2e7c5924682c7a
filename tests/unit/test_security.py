"""Security without hosts: bad security specs refused by the real command line before any
connection, the rendered TLS/SASL settings read back as Java reads them, the CA and certificates,
secrets that never print, users and ACLs planned, client configs."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import files as F
from reconciler.security import material, secrets, tls
from reconciler.security.access import AclRow, desired_rows, plan_access
from reconciler.spec import SpecError, load_spec
from tests.unit.test_hostile_specs import _run, _set, no_connections  # noqa: F401  (fixture)

HOSTS = ["10.213.0.11", "10.213.0.12", "10.213.0.13"]


def _base(secret_dir: Path) -> dict[str, Any]:
    return {
        "name": "secure",
        "kafka": {
            "version": "4.4.0",
            "listeners": [{"name": "INTERNAL", "port": 9092, "protocol": "SSL", "authentication": "mtls"},
                          {"name": "CLIENT", "port": 9094, "protocol": "SASL_SSL"}],
            "controller_listener": {"name": "CONTROLLER", "port": 9093, "protocol": "SSL", "authentication": "mtls"},
        },
        "controllers": [{"id": 100 + i, "host": h} for i, h in enumerate(HOSTS, 1)],
        "brokers": [{"id": i, "host": h} for i, h in enumerate(HOSTS, 1)],
        "security": {
            "super_users": ["ops"],
            "users": [{"name": "app", "password": {"file": str(secret_dir / "app.pw")}},
                      {"name": "ops", "password": {"env": "KF_TEST_OPS_PW"}}],
            "acls": [{"principal": "app", "resource_type": "topic", "resource_name": "orders",
                      "operations": ["read", "write", "describe"]}],
        },
    }


@pytest.fixture
def secret_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "app.pw").write_text("app-Secret-Value-111\n")
    os.chmod(d / "app.pw", 0o600)
    monkeypatch.setenv("KF_TEST_OPS_PW", "ops-Secret-Value-222")
    return d


def _write(tmp_path: Path, data: dict[str, Any], name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.fixture
def secured(tmp_path: Path, secret_dir: Path):  # noqa: ANN201 - ClusterSpec with material
    s = load_spec(_write(tmp_path, _base(secret_dir)))
    material.prepare(s)
    return s


# --- bad security specs -------------------------------------------------------------------------

def _expired_ca(tmp_path: Path) -> tuple[str, str]:
    cert, key = tls.new_ca("old", days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    (tmp_path / "ca.crt").write_text(cert)
    (tmp_path / "ca.key").write_text(key)
    os.chmod(tmp_path / "ca.key", 0o600)
    return str(tmp_path / "ca.crt"), str(tmp_path / "ca.key")


def _not_a_ca(tmp_path: Path) -> tuple[str, str]:
    ca, ca_key = tls.new_ca("x")
    cert, key = tls.issue(ca, ca_key, "leaf", ["10.0.0.1"], 30)
    (tmp_path / "leaf.crt").write_text(cert)
    (tmp_path / "leaf.key").write_text(key)
    os.chmod(tmp_path / "leaf.key", 0o600)
    return str(tmp_path / "leaf.crt"), str(tmp_path / "leaf.key")


def _mismatched_key(tmp_path: Path) -> tuple[str, str]:
    ca, _ = tls.new_ca("x")
    _, other_key = tls.new_ca("y")
    (tmp_path / "mm.crt").write_text(ca)
    (tmp_path / "mm.key").write_text(other_key)
    os.chmod(tmp_path / "mm.key", 0o600)
    return str(tmp_path / "mm.crt"), str(tmp_path / "mm.key")


# The base spec's edits that make it ZooKeeper mode (Kafka 3.9.1, an ensemble on the three hosts).
ZK_MODE: dict[str, Any] = {"kafka/version": "3.9.1", "kafka/metadata_mode": "zookeeper",
                           "zookeeper": {"nodes": [{"myid": i, "host": h} for i, h in enumerate(HOSTS, 1)]},
                           "controllers": []}

# (case id, edits, expected field path, message fragment). "$TMP" in a value is the test's temp dir.
VOLUME: dict[str, Any] = {
    "security/encryption_at_rest": "required",
    "security/volumes": [{"host": HOSTS[0], "name": "data", "device": "/dev/vdb", "mount": "/var/lib/kafka/data",
                          "key": {"file": "$TMP/volume.key"}}],
}

BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing_secret_file", {"security/users/0/password": {"file": "$TMP/nope.pw"}}, "security.users[0].password",
     "no such file"),
    ("empty_env_var", {"security/users/1/password": {"env": "KF_TEST_EMPTY"}}, "security.users[1].password",
     "environment variable KF_TEST_EMPTY is empty"),
    ("unset_env_var", {"security/users/1/password": {"env": "KF_TEST_NOT_SET_ANYWHERE"}},
     "security.users[1].password", "is not set"),
    ("world_readable_secret", {"security/users/0/password": {"file": "$TMP/open.pw"}}, "security.users[0].password",
     "is readable by every user"),
    ("short_password", {"security/users/0/password": {"file": "$TMP/short.pw"}}, "security.users[0].password",
     "shorter than 8 characters"),
    ("literal_password", {"security/users/0/password": "hunter2hunter2"}, "security.users[0].password",
     "Input should be a valid dictionary"),
    ("both_file_and_env", {"security/users/0/password": {"file": "$TMP/a", "env": "X"}},
     "security.users[0].password", "exactly one of them"),
    ("scram_on_plaintext", {"kafka/listeners/1": {"name": "CLIENT", "port": 9094, "protocol": "PLAINTEXT",
                                                  "authentication": "scram-sha-512"}},
     "kafka.listeners[1].authentication", "scram-sha-512 on a PLAINTEXT listener"),
    ("mtls_on_sasl", {"kafka/listeners/1/authentication": "mtls"}, "kafka.listeners[1].authentication",
     "authenticates with SASL: scram-sha-512"),
    ("scram_on_ssl", {"kafka/listeners/0/authentication": "scram-sha-512"}, "kafka.listeners[0].authentication",
     "SCRAM on an SSL listener"),
    ("mtls_without_ca", {"security": None}, "kafka.listeners[0].protocol", "SSL needs a security section"),
    ("anonymous_listener", {"kafka/listeners": [{"name": "INTERNAL", "port": 9092, "protocol": "SSL",
                                                 "authentication": "mtls"}, {"name": "OPEN", "port": 9095}]},
     "kafka.listeners[1].authentication", "lets clients in without credentials"),
    ("unauthenticated_inter_broker", {"kafka/listeners/0": {"name": "INTERNAL", "port": 9092, "protocol": "SSL"},
                                      "security/allow_anonymous": False},
     "kafka.listeners[0].authentication", "lets clients in without credentials"),
    ("inter_broker_sasl", {"kafka/inter_broker_listener": "CLIENT"}, "kafka.inter_broker_listener",
     "inter-broker SASL is not supported"),
    ("inter_broker_unknown", {"kafka/inter_broker_listener": "NOPE"}, "kafka.inter_broker_listener",
     "NOPE is not one of the listeners"),
    ("controller_sasl", {"kafka/controller_listener/protocol": "SASL_SSL"}, "kafka.controller_listener.protocol",
     "KRaft nodes reach the controllers with their node certificates"),
    ("controller_plaintext", {"kafka/controller_listener": {"name": "CONTROLLER", "port": 9093}},
     "kafka.controller_listener.authentication", "lets clients in without credentials"),
    ("sasl_plaintext", {"kafka/listeners/1/protocol": "SASL_PLAINTEXT"}, "kafka.listeners[1].protocol",
     "SASL_PLAINTEXT sends logins and data in clear"),
    ("super_user_cannot_log_in", {"security/super_users": ["root-user"], "security/allow_anonymous": True,
                                  "kafka/listeners/0": {"name": "INTERNAL", "port": 9092},
                                  "kafka/controller_listener": {"name": "CONTROLLER", "port": 9093}},
     "security.super_users[0]", "cannot log in"),
    ("users_without_scram_listener", {"kafka/listeners": [{"name": "INTERNAL", "port": 9092, "protocol": "SSL",
                                                           "authentication": "mtls"}]},
     "security.users", "no listener authenticates with SCRAM"),
    ("duplicate_user", {"security/users/1/name": "app"}, "security.users[1].name", "duplicate user app"),
    ("user_is_kafkaforms_own", {"security/users/0/name": "kafkaform-admin"}, "security.users[0].name",
     "one of kafkaform's own principals"),
    ("acl_operation_for_other_type", {"security/acls/0/operations": ["idempotent_write"]}, "security.acls[0]",
     "idempotent_write do not apply to a topic"),
    ("acl_host_name", {"security/acls/0/host": "client.example.com"}, "security.acls[0].host",
     "is not '*' or an IPv4 address"),
    ("acl_cluster_name", {"security/acls/0": {"principal": "app", "resource_type": "cluster", "resource_name": "x",
                                              "operations": ["describe"]}},
     "security.acls[0]", "the cluster resource is named 'kafka-cluster'"),
    ("acl_resource_injection", {"security/acls/0/resource_name": "orders;User:*"}, "security.acls[0]",
     "is not a resource name"),
    ("user_name_injection", {"security/users/0/name": "app;User:admin"}, "security.users[0].name",
     "is not a user name"),
    ("managed_ssl_key", {"kafka/config": {"ssl.keystore.location": "/tmp/x.jks"}},
     "kafka.config.ssl.keystore.location", "set by the security section"),
    ("managed_super_users", {"kafka/config": {"super.users": "User:ANONYMOUS"}}, "kafka.config.super.users",
     "set by the security section"),
    ("renewal_longer_than_validity", {"security/tls": {"validity_days": 30, "renew_before_days": 30}},
     "security.tls", "must be shorter than validity_days"),
    ("expired_provided_ca", {"security/tls/ca": "EXPIRED"}, "security.tls.ca", "the CA certificate expired"),
    ("provided_ca_not_a_ca", {"security/tls/ca": "LEAF"}, "security.tls.ca", "is not a CA"),
    ("provided_ca_wrong_key", {"security/tls/ca": "MISMATCH"}, "security.tls.ca",
     "the CA key does not belong to the CA certificate"),
    ("provided_ca_missing", {"security/tls/ca": {"cert": "$TMP/none.crt", "key": {"file": "$TMP/none.key"}}},
     "security.tls.ca.cert", "no such file"),
    ("zookeeper_acls_off", {**ZK_MODE, "kafka/config": {"zookeeper.set.acl": False}},
     "kafka.config.zookeeper.set.acl", "set by the security section"),
    # security.zookeeper_tls
    ("zookeeper_tls_on_kraft", {"security/zookeeper_tls": True}, "security.zookeeper_tls",
     "TLS for ZooKeeper is for ZooKeeper mode"),
    ("zookeeper_tls_not_a_phase", {**ZK_MODE, "security/zookeeper_tls": "2181; clientPort=2181"},
     "security.zookeeper_tls", "Input should be 'serve' or 'quorum'"),
    ("zookeeper_tls_old_zookeeper", {**ZK_MODE, "security/zookeeper_tls": True, "zookeeper/version": "3.5.9"},
     "security.zookeeper_tls", "ZooKeeper 3.5.9 is older than 3.6.0"),
    ("zookeeper_tls_store_under_config", {**ZK_MODE, "security/zookeeper_tls": True,
                                          "zookeeper/config": {"ssl.quorum.keyStore.location": "/tmp/k.pem"}},
     "zookeeper.config.ssl.quorum.keyStore.location", "set by security.zookeeper_tls"),
    ("zookeeper_plaintext_port_unification", {**ZK_MODE, "security/zookeeper_tls": True,
                                              "zookeeper/config": {"client.portUnification": True}},
     "zookeeper.config.client.portUnification", "set by security.zookeeper_tls"),
    ("zookeeper_quorum_tls_under_config", {**ZK_MODE, "zookeeper/config": {"sslQuorum": False}},
     "zookeeper.config.sslQuorum", "set by security.zookeeper_tls"),
    ("zookeeper_tls_client_under_kafka_config", {**ZK_MODE, "kafka/config": {"zookeeper.ssl.client.enable": False}},
     "kafka.config.zookeeper.ssl.client.enable", "set by the security section"),
    # security.volumes (LUKS volumes kafkaform makes)
    ("volume_key_missing", {**VOLUME, "security/volumes/0/key": {"file": "$TMP/none.key"}},
     "security.volumes[0].key", "no such file"),
    ("volume_key_short", {**VOLUME, "security/volumes/0/key": {"file": "$TMP/short.pw"}},
     "security.volumes[0].key", "shorter than 16 characters"),
    ("volume_device_not_in_dev", {**VOLUME, "security/volumes/0/device": "/tmp/disk.img"},
     "security.volumes[0].device", "is not a block device path"),
    ("volume_device_option", {**VOLUME, "security/volumes/0/device": "/dev/vdb --key-file=/etc/shadow"},
     "security.volumes[0].device", "is not a block device path"),
    ("volume_on_mapper", {**VOLUME, "security/volumes/0/device": "/dev/mapper/vg-data"},
     "security.volumes[0].device", "is a device-mapper device"),
    ("volume_name_injection", {**VOLUME, "security/volumes/0/name": "data /dev/sda"},
     "security.volumes[0].name", "is not a volume name"),
    ("volume_not_a_spec_host", {**VOLUME, "security/volumes/0/host": "10.213.0.99"},
     "security.volumes[0].host", "is not a host of this spec"),
    ("volume_holds_no_data_dir", {**VOLUME, "security/volumes/0/mount": "/srv/elsewhere"},
     "security.volumes[0].mount", "no data dir of a service on 10.213.0.11"),
    ("volume_hides_install", {**VOLUME, "security/volumes/0/mount": "/srv/kafka",
                              "kafka/install_dir": "/srv/kafka/dist", "brokers/0/data_dirs": ["/srv/kafka/data"]},
     "security.volumes[0].mount", "contains the install dir /srv/kafka/dist"),
    ("volume_mount_twice", {**VOLUME, "security/volumes": [
        {"host": HOSTS[0], "name": n, "device": d, "mount": "/var/lib/kafka/data", "key": {"file": "$TMP/volume.key"}}
        for n, d in (("one", "/dev/vdb"), ("two", "/dev/vdc"))]},
     "security.volumes[1].mount", "is also security.volumes[0].mount"),
    ("volume_without_required", {**VOLUME, "security/encryption_at_rest": "none"},
     "security.encryption_at_rest", "set encryption_at_rest: required too"),
    ("volume_unknown_filesystem", {**VOLUME, "security/volumes/0/filesystem": "btrfs"},
     "security.volumes[0].filesystem", "Input should be 'ext4' or 'xfs'"),
]


def _materialise(value: Any, tmp: Path) -> Any:
    if isinstance(value, str):
        providers = {"EXPIRED": _expired_ca, "LEAF": _not_a_ca, "MISMATCH": _mismatched_key}
        if value in providers:
            cert, key = providers[value](tmp)
            return {"cert": cert, "key": {"file": key}}
        return value.replace("$TMP", str(tmp))
    if isinstance(value, dict):
        return {k: _materialise(v, tmp) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialise(v, tmp) for v in value]
    return value


def test_there_are_at_least_fifteen_bad_security_specs() -> None:
    assert len(BAD) >= 15


@pytest.mark.parametrize(("edits", "field", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_bad_security_spec_refused_before_any_connection(
        edits: dict[str, Any], field: str, fragment: str, command: str, tmp_path: Path, secret_dir: Path,
        monkeypatch: pytest.MonkeyPatch, no_connections: list[str],  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KF_TEST_EMPTY", "")
    (tmp_path / "open.pw").write_text("readable-by-all-123\n")
    os.chmod(tmp_path / "open.pw", 0o644)
    (tmp_path / "short.pw").write_text("short\n")
    os.chmod(tmp_path / "short.pw", 0o600)
    (tmp_path / "volume.key").write_text("volume-Key-Value-333-abcdef\n")
    os.chmod(tmp_path / "volume.key", 0o600)
    data = copy.deepcopy(_base(secret_dir))
    for path, value in edits.items():
        if value is None:
            data.pop(path)
        else:
            _set(data, path, _materialise(value, tmp_path))
    rc, out, err = _run([command, str(_write(tmp_path, data))], capsys)
    assert rc == 1, out + err
    assert f"  - {field}: " in err and fragment in err, err
    assert "Traceback" not in err + out
    assert no_connections == []
    for value in ("app-Secret-Value-111", "ops-Secret-Value-222", "readable-by-all-123", "volume-Key-Value-333"):
        assert value not in out + err


def test_the_base_secured_spec_is_valid(tmp_path: Path, secret_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(["validate", str(_write(tmp_path, _base(secret_dir)))], capsys)
    assert rc == 0, err


# --- rendering -----------------------------------------------------------------------------------

def test_broker_and_controller_settings(secured) -> None:  # noqa: ANN001
    b = F.parse_properties(F.server_properties(secured, secured.brokers[0]))
    assert b["listener.security.protocol.map"] == "INTERNAL:SSL,CLIENT:SASL_SSL,CONTROLLER:SSL"
    assert b["inter.broker.listener.name"] == "INTERNAL"
    assert b["listener.name.internal.ssl.client.auth"] == "required"
    assert b["listener.name.client.scram-sha-512.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    assert b["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert b["allow.everyone.if.no.acl.found"] == "false"
    assert b["super.users"] == "User:kafka-nodes;User:kafkaform-admin;User:ops"
    assert b["ssl.keystore.type"] == "PEM" and b["ssl.endpoint.identification.algorithm"] == "https"
    # the PEM values come back with their line breaks, and the key belongs to the certificate
    key, chain = b["ssl.keystore.key"], b["ssl.keystore.certificate.chain"]
    assert key.startswith("-----BEGIN PRIVATE KEY-----\n") and chain.count("BEGIN CERTIFICATE") == 2
    info = tls.inspect(chain)
    assert info.subject_cn == "kafka-nodes" and info.sans == ("10.213.0.11",)
    # Java prints the subject CN first, which is what the principal mapping rule reads (-> User:kafka-nodes)
    import re

    from cryptography import x509

    dn = x509.load_pem_x509_certificate(chain.encode()).subject.rfc4514_string()
    rule = re.fullmatch(r"RULE:\^CN=\(\[\^,\]\+\)\(,\.\*\)\?\$/\$1/,DEFAULT", b["ssl.principal.mapping.rules"])
    assert rule and dn == "CN=kafka-nodes,O=secure" and re.fullmatch(r"CN=([^,]+)(,.*)?", dn).group(1) == "kafka-nodes"
    assert tls.signed_by(chain, b["ssl.truststore.certificates"])
    c = F.parse_properties(F.controller_properties(secured, secured.controllers[1]))
    assert c["listener.security.protocol.map"] == "CONTROLLER:SSL"
    assert c["listener.name.controller.ssl.client.auth"] == "required"
    assert "sasl.enabled.mechanisms" not in c
    assert tls.inspect(c["ssl.keystore.certificate.chain"]).sans == ("10.213.0.12",)


def test_secured_properties_files_are_private_and_their_secrets_never_shown(secured) -> None:  # noqa: ANN001
    from reconciler.render.kafka import broker_desired
    from reconciler.spec import is_sensitive

    d = broker_desired(secured, secured.brokers[0], "kafka-4.4.0-0123456789ab")
    f = d.file(F.SERVER_PROPERTIES)
    assert (f.mode, f.owner) == ("0600", "kafka")
    for k in ("ssl.keystore.key", "ssl.keystore.certificate.chain", "ssl.truststore.certificates",
              "listener.name.client.scram-sha-512.sasl.jaas.config"):
        assert is_sensitive(k), k
    from reconciler.observe.facts.files import redact

    shown = redact(F.SERVER_PROPERTIES, f.content)
    assert "PRIVATE KEY" not in shown and "(sensitive)" in shown


def test_open_cluster_renders_as_before(tmp_path: Path) -> None:
    from tests.unit.conftest import KRAFT_LAB_YAML

    s = load_spec(KRAFT_LAB_YAML)
    assert material.prepare(s) is None
    b = F.parse_properties(F.server_properties(s, s.brokers[0]))
    assert b["allow.everyone.if.no.acl.found"] == "true" and b["super.users"] == "User:ANONYMOUS"
    assert not any(k.startswith(("ssl.", "sasl.")) for k in b)


# --- material: CA and certificates ---------------------------------------------------------------

def test_material_is_kept_private_and_reused(secured, kafkaform_home: Path) -> None:  # noqa: ANN001
    d = kafkaform_home / "clusters" / "secure" / "tls"
    for p in [d, *d.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
    first = material.material_of(secured)
    again = material.prepare(secured)
    assert again is not None and again.renewed == {}
    assert again.nodes["10.213.0.11"].cert_pem == first.nodes["10.213.0.11"].cert_pem


def test_certificates_near_expiry_are_renewed_and_the_ca_is_never_replaced_silently(
        secured, kafkaform_home: Path) -> None:  # noqa: ANN001
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=340)  # 365-day certificates, 30 days' notice
    m = material.prepare(secured, now=later)
    assert m is not None
    assert set(m.renewed) == {*HOSTS, "kafkaform admin"}
    assert all("expires in" in why for why in m.renewed.values())
    # a certificate signed by another CA is never silently re-issued (nodes would stop trusting each other)
    d = kafkaform_home / "clusters" / "secure" / "tls"
    ca, key = tls.new_ca("other")
    (d / "ca.crt").write_text(ca)
    (d / "ca.key").write_text(key)
    with pytest.raises(material.MaterialError) as e:
        material.prepare(secured)
    assert "issued by another CA" in str(e.value)


def test_a_host_name_change_reissues_its_certificate(tmp_path: Path, secret_dir: Path) -> None:
    s = load_spec(_write(tmp_path, _base(secret_dir)))
    material.prepare(s)
    data = _base(secret_dir)
    data["brokers"][0]["host"] = "kafka1.example.com"
    s2 = load_spec(_write(tmp_path, data, "renamed.yaml"))
    m = material.prepare(s2)
    assert m is not None and m.renewed == {"kafka1.example.com": "new"}
    assert tls.inspect(m.nodes["kafka1.example.com"].cert_pem).sans == ("kafka1.example.com",)


# --- secrets -------------------------------------------------------------------------------------

def test_a_secret_never_prints_itself(tmp_path: Path) -> None:
    s = secrets.Secret("correct-horse-battery", "env X")
    assert "correct-horse" not in f"{s} {s!r} {s:>30} {[s]}"
    assert s.reveal() == "correct-horse-battery"
    assert secrets.scrub("error: login correct-horse-battery failed") == "error: login (sensitive) failed"
    import io

    buf = io.StringIO()
    secrets.ScrubbedStream(buf).write("password=correct-horse-battery\n")
    assert buf.getvalue() == "password=(sensitive)\n"
    assert s.fingerprint(b"k1") != s.fingerprint(b"k2")  # keyed: not a plain hash anyone can compute


# --- users and ACLs ------------------------------------------------------------------------------

def _row(op: str, name: str = "orders", principal: str = "User:app") -> AclRow:
    return AclRow(principal=principal, resource_type="topic", resource_name=name, pattern="literal", operation=op,
                  permission="allow")


def test_access_plan_creates_rotates_and_deletes_only_what_kafkaform_manages() -> None:
    spec_users = {"app": "mark-2", "new": "mark-n"}
    a = plan_access(spec_users, {_row("read"), _row("write")},
                    cluster_users={"app", "gone", "handmade"},
                    cluster_acls={_row("read"), _row("describe"), _row("read", "other", "User:someone")},
                    managed_users={"app": "mark-1", "gone": "mark-g"}, managed_acls={_row("describe")})
    assert a.users_create == ("new",) and a.users_rotate == ("app",) and a.users_delete == ("gone",)
    assert a.acls_add == (_row("write"),) and a.acls_delete == (_row("describe"),)
    assert a.marks == {"new": "mark-n", "app": "mark-2"}
    assert (a.unmanaged_users, a.unmanaged_acls) == (1, 1)  # handmade user, someone's ACL: left alone
    same = plan_access({"app": "m"}, {_row("read")}, {"app"}, {_row("read")}, {"app": "m"}, {_row("read")})
    assert same.empty


def test_spec_acls_expand_to_one_row_per_operation(secured) -> None:  # noqa: ANN001
    rows = desired_rows(secured.security.acls)
    assert {r.operation for r in rows} == {"read", "write", "describe"}
    assert all(r.principal == "User:app" and r.host == "*" for r in rows)


def test_access_change_runs_after_every_broker_start(secured) -> None:  # noqa: ANN001
    from reconciler.diff import AccessChange, Action, ArtifactIds, diff
    from reconciler.plan.build import KRaftIds, build_steps
    from reconciler.plan.model import StepKind
    from reconciler.security.access import AccessPlan
    from tests.unit.builders import Observed

    obs = Observed.bare_cluster(secured).build()
    changes = diff(secured, obs, ArtifactIds(kafka="kafka-4.4.0-0123456789ab")).changes
    changes.append(AccessChange(address="access", service="kafka", key="access", host="cluster",
                                action=Action.UPDATE, reasons=("x",),
                                access=AccessPlan(users_create=("app",), marks={"app": "m"})))
    steps, edges = build_steps(changes, obs, kraft=KRaftIds(cluster_id="AAAAAAAAAAAAAAAAAAAAAA",
                                                            initial_controllers="101@h:1:x"))
    access = next(s for s in steps if s.kind is StepKind.ACCESS)
    starts = [s.id for s in steps if s.kind is StepKind.START and s.service == "kafka"]
    assert starts and all((st, access.id) in edges for st in starts)
    assert "create 1 user(s)" in access.describe()
    dumped = json.dumps([s.model_dump(mode="json") for s in steps])
    assert "app-Secret-Value-111" not in dumped


# --- client config -------------------------------------------------------------------------------

def test_client_config_for_a_scram_user_and_an_mtls_user(tmp_path: Path, secret_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(tmp_path, _base(secret_dir))
    out = tmp_path / "app.properties"
    rc, stdout, err = _run(["client-config", str(spec), "--user", "app", "--out", str(out)], capsys)
    assert rc == 0, err
    assert "app-Secret-Value-111" not in stdout + err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    p = F.parse_properties(out.read_text())
    assert p["bootstrap.servers"] == "10.213.0.11:9094,10.213.0.12:9094,10.213.0.13:9094"
    assert p["security.protocol"] == "SASL_SSL" and p["sasl.mechanism"] == "SCRAM-SHA-512"
    assert 'username="app" password="app-Secret-Value-111";' in p["sasl.jaas.config"]
    assert p["ssl.truststore.certificates"].startswith("-----BEGIN CERTIFICATE-----\n")
    # the file is not overwritten by accident
    rc, _, err = _run(["client-config", str(spec), "--user", "app", "--out", str(out)], capsys)
    assert rc == 1 and "exists (use --force" in err
    cert_file = tmp_path / "svc.properties"
    rc, _, err = _run(["client-config", str(spec), "--user", "svc", "--mtls", "--out", str(cert_file)], capsys)
    assert rc == 0, err
    q = F.parse_properties(cert_file.read_text())
    assert q["security.protocol"] == "SSL" and q["bootstrap.servers"].endswith(":9092")
    assert tls.inspect(q["ssl.keystore.certificate.chain"]).subject_cn == "svc"
    rc, _, err = _run(["client-config", str(spec), "--user", "nobody", "--out", str(tmp_path / "x")], capsys)
    assert rc == 1 and "nobody is not a SCRAM user" in err


# --- ZooKeeper mode ------------------------------------------------------------------------------

def _zookeeper_mode(tmp_path: Path, secret_dir: Path):  # noqa: ANN202 - a ClusterSpec
    """The secured base spec on Kafka 3.9.1 in ZooKeeper mode (an ensemble on the three hosts)."""
    data = _base(secret_dir)
    data["kafka"] = {**data["kafka"], "version": "3.9.1", "metadata_mode": "zookeeper"}
    del data["kafka"]["controller_listener"]
    data["controllers"] = []
    data["zookeeper"] = {"nodes": [{"myid": i, "host": h} for i, h in enumerate(HOSTS, 1)]}
    return load_spec(_write(tmp_path, data))


def test_zookeeper_mode_logs_brokers_in_and_kafkaform_in_as_the_super_user(tmp_path: Path, secret_dir: Path) -> None:
    from reconciler.render.kafka import KAFKA_ZK_JAAS, broker_desired
    from reconciler.render.zookeeper import ZK_ARGS, ZK_JAAS, zookeeper_desired
    from reconciler.security.zookeeper import super_digest, zk_auth

    s = _zookeeper_mode(tmp_path, secret_dir)
    m = material.prepare(s)
    assert m is not None and set(m.zookeeper) == {"kafka", "super"}
    zk = zookeeper_desired(s, s.zookeeper.nodes[0], "zookeeper-3.8.4-0123456789ab")
    cfg = F.parse_properties(zk.file(F.ZOO_CFG).content)
    assert cfg["authProvider.sasl"].endswith("SASLAuthenticationProvider") and "skipACL" not in cfg
    jaas, args = zk.file(ZK_JAAS), zk.file(ZK_ARGS)
    assert (jaas.mode, jaas.owner, args.mode, args.owner) == ("0600", "zookeeper", "0600", "zookeeper")
    kafka_pw, super_pw = m.zookeeper["kafka"].reveal(), m.zookeeper["super"].reveal()
    assert f'user_kafka="{kafka_pw}";' in jaas.content
    assert f"superDigest={super_digest(super_pw)}" in args.content
    unit = zk.file(F.ZK_UNIT).content
    assert f"@{ZK_ARGS}" in unit and super_pw not in unit and super_digest(super_pw) not in unit
    b = broker_desired(s, s.brokers[0], "kafka-3.9.1-0123456789ab")
    props = F.parse_properties(b.file(F.SERVER_PROPERTIES).content)
    assert props["zookeeper.set.acl"] == "true"
    client = b.file(KAFKA_ZK_JAAS)
    assert (client.mode, client.owner) == ("0600", "kafka") and f'password="{kafka_pw}"' in client.content
    assert f"-Djava.security.auth.login.config={KAFKA_ZK_JAAS}" in b.file(F.KAFKA_UNIT).content
    assert zk_auth(s) == [("digest", f"super:{super_pw}")]
    assert secrets.scrub(f"x {super_digest(super_pw)} y") == "x (sensitive) y"
    again = material.prepare(s)  # kept: the same passwords next time
    assert again is not None and again.zookeeper["kafka"].reveal() == kafka_pw


# --- ZooKeeper TLS (security.zookeeper_tls) ------------------------------------------------------

ZOO_TLS_GOLDEN = Path(__file__).resolve().parent / "golden" / "zoo_tls.cfg"


def _zookeeper_tls(tmp_path: Path, secret_dir: Path, on: bool = True):  # noqa: ANN202 - a prepared ClusterSpec
    s = _zookeeper_mode(tmp_path, secret_dir)
    assert s.security is not None
    s = s.model_copy(update={"security": s.security.model_copy(update={"zookeeper_tls": on})})
    material.prepare(s)
    return s


def test_zookeeper_tls_zoo_cfg_golden_and_key_stores(tmp_path: Path, secret_dir: Path) -> None:
    """zoo.cfg (regenerate: KAFKAFORM_UPDATE_GOLDEN=1): a TLS-only client port (no clientPort, and
    membership lines without a client port), client certificates required, quorum TLS; the PEM
    key store is the node's key and chain (0600, zookeeper's), the trust store the cluster CA."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import load_pem_x509_certificate

    from reconciler.observe.facts.files import redact
    from reconciler.render.zookeeper import ZK_KEYSTORE, ZK_TRUSTSTORE, zookeeper_desired

    s = _zookeeper_tls(tmp_path, secret_dir)
    m = material.material_of(s)
    zk = zookeeper_desired(s, s.zookeeper.nodes[1], "zookeeper-3.8.4-0123456789ab")
    text = zk.file(F.ZOO_CFG).content
    if os.environ.get("KAFKAFORM_UPDATE_GOLDEN"):
        ZOO_TLS_GOLDEN.write_text(text)
    assert text == ZOO_TLS_GOLDEN.read_text()
    cfg = F.parse_properties(text)
    assert "clientPort" not in cfg and cfg["secureClientPort"] == "2181" and cfg["sslQuorum"] == "true"
    assert F.zk_seed(s, s.zookeeper.nodes[1], None) == "".join(
        f"server.{i}={h}:2888:3888:participant\n" for i, h in enumerate(HOSTS, 1))
    key_store, trust = zk.file(ZK_KEYSTORE), zk.file(ZK_TRUSTSTORE)
    assert (key_store.mode, key_store.owner) == ("0600", "zookeeper") and trust.content == m.ca_pem
    assert key_store.content.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8: what ZooKeeper's PemReader reads
    assert key_store.content.count("BEGIN CERTIFICATE") == 2
    leaf = key_store.content[key_store.content.index("-----BEGIN CERTIFICATE"):]
    assert tls.inspect(leaf).sans == (HOSTS[1],)  # the quorum's and the clients' host name check
    assert tls.signed_by(leaf, trust.content)
    key = serialization.load_pem_private_key(key_store.content.encode(), password=None)
    assert key.public_key() == load_pem_x509_certificate(leaf.encode()).public_key()
    assert redact(ZK_KEYSTORE, key_store.content) == "(sensitive)"  # observe keeps only its hash
    assert m.nodes[HOSTS[1]].key_pem not in secrets.scrub(key_store.content)  # never printed either


def test_zookeeper_tls_brokers_connect_over_tls_with_their_node_certificate(tmp_path: Path, secret_dir: Path) -> None:
    from reconciler.render.kafka import KAFKA_ZK_JAAS, KAFKA_ZK_KEYSTORE, KAFKA_ZK_TRUSTSTORE, broker_desired

    s = _zookeeper_tls(tmp_path, secret_dir)
    b = broker_desired(s, s.brokers[2], "kafka-3.9.1-0123456789ab")
    props = F.parse_properties(b.file(F.SERVER_PROPERTIES).content)
    assert {k: v for k, v in props.items() if k.startswith("zookeeper.")} == {
        "zookeeper.connect": ",".join(f"{h}:2181" for h in HOSTS),
        "zookeeper.set.acl": "true",  # the SASL login stays on top of TLS
        "zookeeper.ssl.client.enable": "true",
        "zookeeper.clientCnxnSocket": "org.apache.zookeeper.ClientCnxnSocketNetty",
        "zookeeper.ssl.keystore.location": KAFKA_ZK_KEYSTORE,
        "zookeeper.ssl.keystore.type": "PEM",
        "zookeeper.ssl.truststore.location": KAFKA_ZK_TRUSTSTORE,
        "zookeeper.ssl.truststore.type": "PEM",
        "zookeeper.ssl.endpoint.identification.algorithm": "HTTPS",
    }
    key_store = b.file(KAFKA_ZK_KEYSTORE)
    assert (key_store.mode, key_store.owner) == ("0600", "kafka")
    assert tls.inspect(key_store.content[key_store.content.index("-----BEGIN CERTIFICATE"):]).sans == (HOSTS[2],)
    assert b.file(KAFKA_ZK_TRUSTSTORE).content == material.material_of(s).ca_pem
    assert b.file(KAFKA_ZK_JAAS).mode == "0600"
    paths = F.managed_paths(s)  # observe reads them back (drift is a hash comparison)
    assert KAFKA_ZK_KEYSTORE in paths and KAFKA_ZK_TRUSTSTORE in paths
    # off: nothing of it in the files, the membership keeps its (plaintext) client port
    off = _zookeeper_tls(tmp_path, secret_dir, on=False)
    assert not any(k.startswith("zookeeper.ssl") for k in F.parse_properties(F.server_properties(off, off.brokers[0])))
    assert F.zk_server_line(off, off.zookeeper.nodes[0])[1].endswith(";0.0.0.0:2181")
    assert "ssl" not in F.zoo_cfg(off).lower()


def test_zookeeper_tls_kazoo_sessions_use_kafkaforms_certificate(tmp_path: Path, secret_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.apply import gates
    from reconciler.observe import zookeeper as zk_observe
    from reconciler.observe.model import ClusterState
    from reconciler.security.zookeeper import ZkTls, zk_auth, zk_tls

    s = _zookeeper_tls(tmp_path, secret_dir)
    made: list[dict[str, Any]] = []

    class FakeKazoo:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        def start(self, timeout: float) -> None:
            raise TimeoutError("no ZooKeeper here")

        def stop(self) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(zk_observe, "KazooClient", FakeKazoo)
    monkeypatch.setattr(zk_observe, "ensemble_mode", lambda *a, **k: "down")
    ca, cert, key = material.material_of(s).admin_files()
    assert zk_tls(s) == ZkTls(ca, cert, key)  # kafkaform's admin certificate, as for the Admin API
    st = zk_observe.read_cluster([f"{h}:2181" for h in HOSTS], 1.0, zk_auth(s), zk_tls(s))
    assert not st.zookeeper_reachable
    want = {"use_ssl": True, "ca": ca, "certfile": cert, "keyfile": key, "verify_certs": True,
            "check_hostname": True}
    assert made and {k: made[0][k] for k in want} == want and made[0]["auth_data"] == zk_auth(s)
    # the gates' session and the dynamic reconfiguration's connect the same way
    gates.close()
    monkeypatch.setattr(gates, "cluster_state", lambda spec: ClusterState(
        zookeeper_reachable=True, zookeeper_members={1: f"{HOSTS[0]}:2888:3888:participant"}))
    import kazoo.client

    monkeypatch.setattr(kazoo.client, "KazooClient", FakeKazoo)
    with pytest.raises(TimeoutError):
        gates.reconfigure_zookeeper(s, join=(2,), leave=())
    assert {k: made[-1][k] for k in want} == want and made[-1]["hosts"] == f"{HOSTS[0]}:2181"
    reader = gates.reader_for(s)
    assert isinstance(reader, zk_observe.SessionReader) and reader.tls == zk_tls(s)
    gates.close()
    # a plaintext ensemble: no TLS arguments at all
    assert zk_tls(_zookeeper_tls(tmp_path, secret_dir, on=False)) is None
    assert zk_observe.kazoo_tls_args(None) == {}


def test_reconfiguration_sends_lines_without_a_client_port_non_incrementally(
        tmp_path: Path, secret_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZooKeeper's incremental reconfig refuses a line without a client port ("each server should
    have 3 ports specified"); a TLS-only server's line has none, so growth of a TLS ensemble and the
    last ZooKeeper TLS step send the whole new membership instead. Plaintext growth stays incremental."""
    import kazoo.client

    from reconciler.apply import gates
    from reconciler.observe.model import ClusterState

    calls: list[dict[str, Any]] = []

    class FakeKazoo:
        def __init__(self, **kwargs: Any) -> None: ...

        def start(self, timeout: float) -> None: ...

        def reconfig(self, **kwargs: Any) -> tuple[bytes, None]:
            calls.append(kwargs)
            return b"ok", None

        def stop(self) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(kazoo.client, "KazooClient", FakeKazoo)
    plain = ";0.0.0.0:2181"
    members = {i: f"{h}:2888:3888:participant{plain}" for i, h in enumerate(HOSTS[:2], 1)}
    monkeypatch.setattr(gates, "cluster_state", lambda spec: ClusterState(zookeeper_reachable=True,
                                                                          zookeeper_members=dict(members)))
    on, off = _zookeeper_tls(tmp_path, secret_dir), _zookeeper_tls(tmp_path, secret_dir, on=False)
    gates.reconfigure_zookeeper(off, join=(3,), leave=())
    assert calls[-1] == {"joining": f"server.3={HOSTS[2]}:2888:3888:participant{plain}", "leaving": None,
                         "new_members": None}
    gates.reconfigure_zookeeper(on, join=(3,), leave=(), update=(1, 2))
    assert calls[-1] == {"joining": None, "leaving": None, "new_members": ",".join(
        f"server.{i}={h}:2888:3888:participant" for i, h in enumerate(HOSTS, 1))}
    members[1] = f"{HOSTS[0]}:2888:3888:participant"  # a resumed apply: only what still differs
    gates.reconfigure_zookeeper(on, join=(), leave=(), update=(1, 2))
    assert calls[-1]["new_members"] == ",".join(f"server.{i}={h}:2888:3888:participant"
                                                for i, h in enumerate(HOSTS[:2], 1))
    gates.close()


def test_zk_security_migrator_connects_as_the_broker_does(tmp_path: Path, secret_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.apply import kafka_tools
    from reconciler.observe.ssh import CommandResult

    calls: list[list[str]] = []

    def tool(spec: Any, host: str, artifact_id: str, main_class: str, args: list[str], **kw: Any) -> CommandResult:
        calls.append(args)
        return CommandResult(rc=0, stdout="", stderr="")

    monkeypatch.setattr(kafka_tools, "run_tool", tool)
    for on in (True, False):
        kafka_tools.secure_znodes(_zookeeper_tls(tmp_path, secret_dir, on=on), "kafka-3.9.1-0123456789ab", HOSTS[0])
    with_tls, without = calls
    assert with_tls[-2:] == ["--zk-tls-config-file", F.SERVER_PROPERTIES]  # its zookeeper.ssl.* keys
    assert "--zk-tls-config-file" not in without


def test_four_letter_words_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    """`srvr` over a TLS-only port that requires a client certificate (as ZooKeeper's Netty port
    with ssl.clientAuth=need): answered with kafkaform's certificate, refused without one."""
    import socket
    import ssl
    import threading

    from reconciler.observe import zookeeper as zk_observe
    from reconciler.security.zookeeper import ZkTls

    ca, ca_key = tls.new_ca("fourlw")
    files = {}
    for name, cn, sans in (("server", "kafka-nodes", ["127.0.0.1"]), ("client", "kafkaform-admin", [])):
        cert, key = tls.issue(ca, ca_key, cn, sans, 2)
        for ext, text in (("crt", cert), ("key", key)):
            files[f"{name}.{ext}"] = tmp_path / f"{name}.{ext}"
            files[f"{name}.{ext}"].write_text(text)
    (tmp_path / "ca.crt").write_text(ca)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.crt"))
    server.load_cert_chain(files["server.crt"], files["server.key"])
    server.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as c:
                    if c.recv(4) == b"srvr":
                        c.sendall(b"Zookeeper version: 3.8.4\nMode: leader\nNode count: 5\n")
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    good = ZkTls(str(tmp_path / "ca.crt"), str(files["client.crt"]), str(files["client.key"]))
    assert zk_observe.ensemble_mode(f"127.0.0.1:{port}", 5.0, good) == "leader"
    assert zk_observe.ensemble_mode(f"127.0.0.1:{port}", 5.0, None) in ("down", "unknown")  # plaintext: no answer
    t.join(10)
    listener.close()


def test_zookeeper_tls_goes_on_for_a_running_cluster_in_three_applies(tmp_path: Path, secret_dir: Path) -> None:
    """false -> "serve" -> "quorum" -> true, each one roll: what each phase renders, which step
    each running phase allows (a skipped one is refused naming the next), that a converged phase
    plans nothing, and the last step's membership lines rewritten before any server restarts."""
    from reconciler.diff import ArtifactIds, EnsembleChange, diff
    from reconciler.plan.build import build_steps
    from reconciler.plan.model import StepKind
    from reconciler.security.zookeeper import observed_phase, zk_tls
    from tests.unit.builders import Observed

    ids = ArtifactIds(kafka="kafka-3.9.1-0123456789ab", zookeeper="zookeeper-3.8.4-0123456789ab")
    phases = {p: _zookeeper_tls(tmp_path, secret_dir, on=v)  # type: ignore[arg-type]
              for p, v in (("off", False), ("serve", "serve"), ("quorum", "quorum"), ("on", True))}
    cfg = {p: F.parse_properties(F.zoo_cfg(s)) for p, s in phases.items()}
    assert {k: cfg["serve"].get(k) for k in ("client.portUnification", "portUnification", "sslQuorum",
                                              "secureClientPort", "ssl.clientAuth")} == {
        "client.portUnification": "true", "portUnification": "true", "sslQuorum": "false",
        "secureClientPort": None, "ssl.clientAuth": "need"}
    assert (cfg["quorum"]["sslQuorum"], cfg["quorum"]["portUnification"]) == ("true", "true")
    assert "portUnification" not in cfg["on"] and cfg["on"]["secureClientPort"] == "2181"
    assert [observed_phase(c) for c in cfg.values()] == list(phases)
    # the membership keeps its plaintext client port until the last step; the brokers use TLS from "serve" on,
    # kafkaform's own sessions from "quorum" on (during serve's roll some servers have no TLS yet)
    lines = {p: F.zk_server_line(s, s.zookeeper.nodes[0])[1] for p, s in phases.items()}
    assert [v.endswith(";0.0.0.0:2181") for v in lines.values()] == [True, True, True, False]
    tls_client = [F.parse_properties(F.server_properties(s, s.brokers[0])).get("zookeeper.ssl.client.enable")
                  for s in phases.values()]
    assert tls_client == [None, "true", "true", "true"]
    assert [zk_tls(s) is not None for s in phases.values()] == [False, False, True, True]

    def running(phase: str) -> Observed:
        s = phases[phase]
        return Observed.converged_cluster(s, ids).zk_members(dict(F.zk_server_line(s, n) for n in s.zookeeper.nodes))

    def errors(now: str, want: str) -> list[str]:
        return [str(e) for e in diff(phases[want], running(now).build(), ids).errors]

    for p in phases:  # a converged phase plans nothing
        result = diff(phases[p], running(p).build(), ids)
        assert result.errors == [] and result.changes == [], p
    allowed = {("off", "serve"), ("serve", "quorum"), ("quorum", "on")}
    for now in phases:
        for want in phases:
            if now == want:
                continue
            found = errors(now, want)
            if (now, want) in allowed:
                assert found == [], (now, want, found)
            else:
                assert len(found) == 1 and found[0].startswith("security.zookeeper_tls: "), (now, want, found)
    assert 'apply "serve" first' in errors("off", "on")[0]
    assert 'apply "quorum" first' in errors("serve", "on")[0]
    assert "back (false) on a running cluster is not supported" in errors("on", "off")[0]
    # serve: the servers roll, then the brokers (onto TLS)
    changes = diff(phases["serve"], running("off").build(), ids).changes
    steps, edges = build_steps(changes, running("off").build())
    zk = [st.id for st in steps if st.kind is StepKind.RESTART and st.service == "zookeeper"]
    kafka = [st.id for st in steps if st.kind is StepKind.RESTART and st.service == "kafka"]
    assert len(zk) == 3 and len(kafka) == 3 and all((z, k) in edges for z in zk for k in kafka)
    # true: one reconfiguration drops the plaintext client ports, before any server restarts TLS-only
    changes = diff(phases["on"], running("quorum").build(), ids).changes
    [ens] = [c for c in changes if isinstance(c, EnsembleChange)]
    assert ens.zk_update == (1, 2, 3) and not ens.zk_join and not ens.zk_leave
    steps, edges = build_steps(changes, running("quorum").build())
    [reconfig] = [st for st in steps if st.kind is StepKind.ZK_RECONFIG]
    assert reconfig.zk_update == (1, 2, 3) and "drop the plaintext client port" in reconfig.describe()
    zk = [st.id for st in steps if st.kind is StepKind.RESTART and st.service == "zookeeper"]
    assert len(zk) == 3 and all((reconfig.id, z) in edges for z in zk)
    written = [st.id for st in steps if st.kind is StepKind.CONFIGURE and st.service == "zookeeper"]
    assert len(written) == 3 and all((reconfig.id, w) in edges for w in written)
    assert not any(st.kind is StepKind.RESTART and st.service == "kafka" for st in steps)  # brokers stay
    # a new cluster starts at any phase
    bare = Observed(phases["on"].name)
    for h in HOSTS:
        bare.host(h).java()
    for s in phases.values():
        created = diff(s, bare.build(), ids)
        assert created.errors == [] and created.changes


# --- CA rotation -----------------------------------------------------------------------------------

def test_ca_rotation_trusts_both_then_reissues_then_drops_the_old(secured, kafkaform_home: Path) -> None:  # noqa: ANN001
    def state():  # noqa: ANN202
        m = material.prepare(secured)
        assert m is not None
        props = F.parse_properties(F.server_properties(secured, secured.brokers[0]))
        return m, props["ssl.truststore.certificates"], props["ssl.keystore.certificate.chain"]

    m0, trust0, chain0 = state()
    old_ca = m0.ca_pem
    assert material.start_rotation(secured).startswith("1 of 3")
    with pytest.raises(material.CaChanged, match="already under way"):
        material.start_rotation(secured)
    m1, trust1, chain1 = state()  # phase 1: both trusted, certificates unchanged
    assert m1.rotation == "trust" and trust1.count("BEGIN CERTIFICATE") == 2 and trust1.startswith(old_ca)
    assert chain1 == chain0 and m1.renewed == {}
    new_ca = trust1[len(old_ca):]
    assert tls.inspect(new_ca).issuer != tls.inspect(old_ca).issuer  # two CAs, two names
    first = material.advance_rotation("secure") or ""
    assert "phase 1 of 3" in first and "client-config" in first
    m2, trust2, chain2 = state()  # phase 2: reissued by the new CA, both still trusted
    assert m2.rotation == "reissue" and trust2 == trust1
    assert tls.signed_by(chain2, new_ca) and not tls.signed_by(chain2, old_ca)
    assert set(m2.renewed) == {*HOSTS, "kafkaform admin"}
    assert all("rotated" in why for why in m2.renewed.values())
    material.advance_rotation("secure")
    m3, trust3, chain3 = state()  # phase 3: only the new CA
    assert m3.rotation == "drop" and trust3 == new_ca and chain3 == chain2 and m3.renewed == {}
    assert material.advance_rotation("secure") == "CA rotation done: the new CA is the cluster's CA"
    m4, trust4, chain4 = state()
    assert m4.rotation is None and trust4 == new_ca and chain4 == chain3 and m4.renewed == {}
    tls_dir = kafkaform_home / "clusters" / "secure" / "tls"
    assert (tls_dir / "trust.crt").read_text() == new_ca and not (tls_dir / "rotation.json").exists()


# --- securing a running cluster: one safe roll at a time ------------------------------------------

def _step(tmp_path: Path, secret_dir: Path, name: str, listeners: list[dict[str, Any]], inter_broker: str,
          controller: dict[str, Any] | None = None,
          second: dict[str, Any] | None = None):  # noqa: ANN202 - a prepared ClusterSpec
    from tests.unit.conftest import KRAFT_LAB_YAML

    data = yaml.safe_load(KRAFT_LAB_YAML.read_text())
    data["kafka"]["listeners"] = listeners
    data["kafka"]["inter_broker_listener"] = inter_broker
    if controller:
        data["kafka"]["controller_listener"] = controller
    if second:
        data["kafka"]["second_controller_listener"] = second
    data["security"] = {"allow_anonymous": True,
                        "users": [{"name": "app", "password": {"file": str(secret_dir / "app.pw")}}]}
    s = load_spec(_write(tmp_path, data, f"{name}.yaml"))
    material.prepare(s)
    return s


PLAIN = {"name": "PLAINTEXT", "port": 9092}
SASL = {"name": "CLIENT", "port": 9094, "protocol": "SASL_SSL"}
MTLS = {"name": "INTERNAL", "port": 9096, "protocol": "SSL", "authentication": "mtls"}


def test_securing_a_running_cluster_goes_one_safe_roll_at_a_time(tmp_path: Path, secret_dir: Path) -> None:
    from reconciler.diff import ArtifactIds, diff
    from tests.unit.builders import Observed

    ids = ArtifactIds(kafka="kafka-4.4.0-0123456789ab")
    add_sasl = _step(tmp_path, secret_dir, "1", [PLAIN, SASL], "PLAINTEXT")
    add_mtls = _step(tmp_path, secret_dir, "2a", [PLAIN, SASL, MTLS], "PLAINTEXT")
    switch = _step(tmp_path, secret_dir, "2b", [PLAIN, SASL, MTLS], "INTERNAL")
    drop_plain = _step(tmp_path, secret_dir, "3", [SASL, MTLS], "INTERNAL")

    def issues(running, wanted) -> list[str]:  # noqa: ANN001
        return [str(i) for i in diff(wanted, Observed.converged_cluster(running, ids).build(), ids).errors]

    from tests.unit.conftest import KRAFT_LAB_YAML

    open_cluster = load_spec(KRAFT_LAB_YAML)
    assert issues(open_cluster, add_sasl) == []  # 1: add the secure client listener
    assert issues(add_sasl, add_mtls) == []  # 2a: add the listener inter-broker traffic will use
    assert issues(add_mtls, switch) == []  # 2b: move inter-broker traffic onto it
    assert issues(switch, drop_plain) == []  # 3: drop PLAINTEXT
    # two steps in one roll are refused, each naming what to apply first
    both = issues(add_sasl, switch)
    assert len(both) == 1 and "do not serve INTERNAL yet" in both[0], both
    assert both[0].startswith("kafka.inter_broker_listener")
    early = issues(add_mtls, drop_plain)
    assert any("the brokers replicate over PLAINTEXT now" in i for i in early), early
    # a controller listener keeps its port and protocol: the quorum moves to another one instead
    moved = _step(tmp_path, secret_dir, "c", [PLAIN, SASL], "PLAINTEXT",
                  {"name": "CONTROLLER", "port": 9093, "protocol": "SSL", "authentication": "mtls"})
    refused = issues(add_sasl, moved)
    assert len(refused) == 1 and "kafka.controller_listener" in refused[0] and "(PLAINTEXT)" in refused[0], refused
    assert "not changed in place" in refused[0]


OLD_CTRL = {"name": "CONTROLLER", "port": 9093}
NEW_CTRL = {"name": "CONTROLLER_TLS", "port": 9095, "protocol": "SSL", "authentication": "mtls"}


def test_the_quorum_moves_to_a_secure_controller_listener_in_three_rolls(tmp_path: Path, secret_dir: Path) -> None:
    """Add the new controller listener beside the old, swap them once every voter announces it,
    drop the old once no node reaches the quorum over it; skipping a step is refused."""
    from reconciler.diff import ArtifactIds, diff
    from reconciler.render.formats import parse_properties
    from tests.unit.builders import Observed

    ids = ArtifactIds(kafka="kafka-4.4.0-0123456789ab")
    start = _step(tmp_path, secret_dir, "k0", [PLAIN, SASL], "PLAINTEXT")
    add = _step(tmp_path, secret_dir, "k1", [PLAIN, SASL], "PLAINTEXT", OLD_CTRL, second=NEW_CTRL)
    swap = _step(tmp_path, secret_dir, "k2", [PLAIN, SASL], "PLAINTEXT", NEW_CTRL, second=OLD_CTRL)
    drop = _step(tmp_path, secret_dir, "k3", [PLAIN, SASL], "PLAINTEXT", NEW_CTRL)

    def issues(running, wanted, announced: dict[int, tuple[str, ...]] | None = None) -> list[str]:  # noqa: ANN001
        obs = Observed.converged_cluster(running, ids)
        for voter, names in (announced or {}).items():
            obs.announced(voter, *names)
        return [str(i) for i in diff(wanted, obs.build(), ids).errors]

    assert issues(start, add) == []
    assert issues(add, swap) == []
    assert issues(swap, drop) == []
    # what the nodes run in the middle: controllers serve both, every node reaches the new one
    ctrl = parse_properties(F.controller_properties(swap, swap.controllers[0]))
    broker = parse_properties(F.server_properties(swap, swap.brokers[0]))
    assert ctrl["controller.listener.names"] == "CONTROLLER_TLS,CONTROLLER"
    assert "CONTROLLER_TLS://" in ctrl["listeners"] and "CONTROLLER://" in ctrl["listeners"]
    assert ctrl["listener.name.controller_tls.ssl.client.auth"] == "required"
    assert broker["controller.listener.names"] == "CONTROLLER_TLS" and "CONTROLLER" not in broker["listeners"]
    assert broker["controller.quorum.bootstrap.servers"].endswith(":9095")
    # skipping a step
    jump = issues(start, swap)
    assert any("do not all serve CONTROLLER_TLS yet" in i for i in jump), jump
    early = issues(add, drop)
    assert any("reach the controllers over CONTROLLER now" in i for i in early), early
    # a voter that has not announced the new listener yet holds the swap back
    late = issues(add, swap, announced={add.controllers[1].id: ("CONTROLLER",)})
    assert late and f"voter(s) {add.controllers[1].id} have not announced CONTROLLER_TLS" in late[0], late
    # the second listener is validated like the first
    with pytest.raises(SpecError, match="kafka.second_controller_listener.protocol"):
        _step(tmp_path, secret_dir, "bad", [PLAIN, SASL], "PLAINTEXT", OLD_CTRL,
              second={"name": "CONTROLLER_TLS", "port": 9095, "protocol": "SASL_SSL"})


# --- encryption at rest ------------------------------------------------------------------------------

def test_encryption_at_rest_required_refuses_each_data_dir_not_on_dm_crypt(tmp_path: Path, secret_dir: Path) -> None:
    from reconciler.diff import ArtifactIds, diff
    from reconciler.observe.model import DirDevice
    from reconciler.security.at_rest import data_dirs
    from tests.unit.builders import Observed

    ids = ArtifactIds(kafka="kafka-4.4.0-0123456789ab")
    s = _step(tmp_path, secret_dir, "rest", [PLAIN, SASL], "PLAINTEXT")
    required = s.model_copy(update={"security": s.security.model_copy(update={"encryption_at_rest": "required"})})
    observed = Observed.converged_cluster(s, ids).build()
    dirs = data_dirs(s)
    assert len(dirs) == len(s.brokers) + len(s.controllers)

    def on(devices: dict[tuple[str, str], DirDevice]) -> list[str]:
        hosts = {h: f.model_copy(update={"dir_devices": {d: dev for (hh, d), dev in devices.items() if hh == h}})
                 for h, f in observed.hosts.items()}
        return [str(i) for i in diff(required, observed.model_copy(update={"hosts": hosts}), ids).errors]

    luks = DirDevice(fstype="xfs", stack=("lvm", "crypt", "part", "disk"))
    plain = DirDevice(fstype="ext4", stack=("part", "disk"))
    assert on({(h, d): luks for h, _, d in dirs}) == []
    host, what, d = dirs[0]
    refused = on({(h, dd): plain if (h, dd) == (host, d) else luks for h, _, dd in dirs})
    assert refused == [f"security.encryption_at_rest: data dir {d} of {what} on {host} is on ext4 on part over "
                       "disk, not on a dm-crypt (LUKS) device: mount an encrypted volume there (see the README), "
                       "or drop encryption_at_rest: required"]
    unknown = on({})  # no device facts at all: every dir refused, none silently passed
    assert len(unknown) == len(dirs) and all("could not be checked" in i for i in unknown)
    assert [str(i) for i in diff(s, observed, ids).errors] == []  # not required: not judged


def test_znodes_made_before_zookeeper_was_secured_get_acls_after_every_broker_restart(
        tmp_path: Path, secret_dir: Path) -> None:
    from reconciler.diff import ArtifactIds, ZnodeAclChange, diff
    from reconciler.modes import mode_of
    from reconciler.plan.build import build_steps
    from reconciler.plan.model import StepKind
    from tests.unit.builders import Observed
    from tests.unit.conftest import LAB_YAML

    s = _zookeeper_mode(tmp_path, secret_dir)
    material.prepare(s)
    ids = ArtifactIds(kafka="kafka-3.9.1-0123456789ab", zookeeper="zookeeper-3.8.4-0123456789ab")
    open_cluster = Observed.converged_cluster(load_spec(LAB_YAML), ids).build()
    made_open = open_cluster.model_copy(update={"cluster": open_cluster.cluster.model_copy(
        update={"open_znodes": ("/brokers", "/brokers/ids", "/config")})})
    mode = mode_of(s)
    [change] = mode.metadata_security_changes(s, made_open)
    assert isinstance(change, ZnodeAclChange) and change.znodes == ("/brokers", "/brokers/ids", "/config")
    assert change.host == s.brokers[0].host
    steps, edges = build_steps([*diff(s, made_open, ids).changes, change], made_open)
    secure = next(st for st in steps if st.kind is StepKind.SECURE_ZNODES)
    restarts = [st.id for st in steps if st.kind is StepKind.RESTART and st.service == "kafka"]
    assert len(restarts) == 3 and all((r, secure.id) in edges for r in restarts)  # every broker logs in first
    assert "3 znode(s) made before ZooKeeper was secured" in secure.describe()
    assert mode.metadata_security_changes(s, open_cluster) == []  # nothing open (secured from the start)
    assert mode_of(load_spec(LAB_YAML)).metadata_security_changes(load_spec(LAB_YAML), made_open) == []  # not secured
