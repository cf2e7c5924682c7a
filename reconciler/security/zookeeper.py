"""ZooKeeper mode's security: the brokers log in to ZooKeeper (SASL DIGEST-MD5, a JAAS `Client`
section) and create their znodes with ACLs (`zookeeper.set.acl=true`: writable by the brokers'
login only, and the sensitive ones, such as SCRAM credentials and broker configs, readable by it
only); kafkaform's own session logs in as ZooKeeper's super user (a digest login checked against
`superDigest`), which replaces `skipACL=yes` for dynamic reconfiguration. Pure, given the material.

With `security.zookeeper_tls`, ZooKeeper's client port speaks TLS only (Netty, `secureClientPort`;
no plaintext `clientPort`) and requires a certificate from the cluster CA (`ssl.clientAuth=need`):
the brokers show their node's, kafkaform its admin certificate. The servers talk to each other
over TLS too (`sslQuorum`), verifying each other's address against the certificate's SAN. Keys and
chains are PEM files (ZooKeeper's X509Util reads `type=PEM`: one file with the key and its chain;
no keystore password), written 0600 for the service user; the SASL logins stay on top.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.diff import Change
    from reconciler.observe.model import ObservedCluster
    from reconciler.spec import ClusterSpec

BROKER_LOGIN = "kafka"
SUPER = "super"
# The oldest ZooKeeper kafkaform accepts with TLS. Netty's secure client port, sslQuorum and PEM
# key stores are in ZooKeeper's source from 3.5.5 on, and everything used here was read in
# release-3.8.4's (the version Kafka 3.8/3.9 bring and the lab runs); the end-of-life 3.5 line is
# left out rather than trusted unread.
TLS_MIN_ZOOKEEPER = (3, 6, 0)
NETTY_SERVER = "org.apache.zookeeper.server.NettyServerCnxnFactory"
NETTY_CLIENT = "org.apache.zookeeper.ClientCnxnSocketNetty"
X509_PROVIDER = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"


def enabled(spec: ClusterSpec) -> bool:
    return spec.security is not None and not spec.kraft and spec.zookeeper is not None


# security.zookeeper_tls on a running cluster goes false -> "serve" -> "quorum" -> true, one apply
# each (security.migration); a new cluster starts at any of them.
TLS_PHASES = ("off", "serve", "quorum", "on")


def tls_phase(spec: ClusterSpec) -> str:
    """off; serve: the servers serve TLS beside plaintext on the client and quorum ports (port
    unification) and the brokers connect with TLS; quorum: the servers also talk TLS to each other;
    on: TLS only (plaintext closed; a new cluster starts here)."""
    if not enabled(spec) or spec.security is None or spec.security.zookeeper_tls is False:
        return "off"
    return "on" if spec.security.zookeeper_tls is True else spec.security.zookeeper_tls


def tls_enabled(spec: ClusterSpec) -> bool:
    """ZooKeeper's client and quorum ports speak TLS only (security.zookeeper_tls: true)."""
    return tls_phase(spec) == "on"


def serves_tls(spec: ClusterSpec) -> bool:
    """The servers have their TLS stores and serve TLS, and the brokers connect with TLS (every
    phase but off)."""
    return tls_phase(spec) != "off"


@dataclass(frozen=True)
class ZkTls:
    """kafkaform's own TLS client for ZooKeeper: files on the control machine (the trusted CAs, its
    admin certificate and key, see `Material.admin_files`). Server names are verified."""

    ca: str
    certfile: str
    keyfile: str


def zk_tls(spec: ClusterSpec) -> ZkTls | None:
    """What kafkaform's sessions and 4lw reads use on a TLS ensemble (None when it is plaintext).
    Plaintext still in phase serve: while that phase's roll runs, servers not restarted yet have no
    TLS, and every server keeps its plaintext port until the last phase."""
    if tls_phase(spec) not in ("quorum", "on"):
        return None
    from reconciler.security.material import material_of

    return ZkTls(*material_of(spec).admin_files())


def keystore_pem(spec: ClusterSpec, host: str) -> str:
    """The node's private key and certificate chain in one PEM file (ZooKeeper's PEM key store)."""
    from reconciler.security.material import material_of

    m = material_of(spec)
    return m.nodes[host].key_pem + m.node_chain(host)


def truststore_pem(spec: ClusterSpec) -> str:
    """The CAs a node trusts (two while a CA rotation trusts both)."""
    from reconciler.security.material import material_of

    return material_of(spec).ca_pem


def server_tls_config(spec: ClusterSpec, keystore: str, truststore: str) -> list[tuple[str, object]]:
    """zoo.cfg for the TLS phase of the spec (see `tls_phase`). On: the client port TLS-only
    (Netty), client certificates required, quorum TLS; `secureClientPort` is static config and the
    dynamic membership lines carry no client port. Serve and quorum: the plaintext client port of
    the membership line also takes TLS (`client.portUnification`), and so does the quorum port
    (`portUnification`); quorum: the servers connect to each other with TLS (`sslQuorum`)."""
    assert spec.zookeeper is not None
    phase = tls_phase(spec)
    stores: list[tuple[str, object]] = []
    for prefix in ("ssl.", "ssl.quorum."):
        stores += [(f"{prefix}keyStore.location", keystore), (f"{prefix}keyStore.type", "PEM"),
                   (f"{prefix}trustStore.location", truststore), (f"{prefix}trustStore.type", "PEM")]
    # (ZooKeeper registers its x509 auth provider itself only for a secureClientPort; a unified port
    # without it closes every TLS client: "X509 Auth provider not found")
    client: list[tuple[str, object]] = ([("secureClientPort", spec.zookeeper.client_port)] if phase == "on" else
                                        [("client.portUnification", True), ("authProvider.x509", X509_PROVIDER)])
    quorum: list[tuple[str, object]] = [] if phase == "on" else [("portUnification", True)]
    return [
        *client,
        ("serverCnxnFactory", NETTY_SERVER),
        *stores[:4],
        ("ssl.clientAuth", "need"),
        ("sslQuorum", phase != "serve"),
        *quorum,
        *stores[4:],
        ("ssl.quorum.hostnameVerification", True),
    ]


def is_true(props: dict[str, str], key: str) -> bool:
    """A running node's boolean property, as Java reads it."""
    return props.get(key, "").strip().lower() == "true"


def observed_phase(zoo_cfg: dict[str, str]) -> str:
    """The TLS phase a running server's zoo.cfg is in (see `tls_phase`)."""
    quorum_tls = is_true(zoo_cfg, "sslQuorum")
    if "secureClientPort" in zoo_cfg:
        return "on"
    if is_true(zoo_cfg, "portUnification") or is_true(zoo_cfg, "client.portUnification"):
        return "quorum" if quorum_tls else "serve"
    return "on" if quorum_tls else "off"


def client_tls_config(keystore: str, truststore: str) -> list[tuple[str, object]]:
    """server.properties: the broker's ZooKeeper client over TLS with the node's certificate; the
    server's name is verified (Kafka's default, HTTPS). Also what `--zk-tls-config-file` reads."""
    return [
        ("zookeeper.ssl.client.enable", True),
        ("zookeeper.clientCnxnSocket", NETTY_CLIENT),
        ("zookeeper.ssl.keystore.location", keystore),
        ("zookeeper.ssl.keystore.type", "PEM"),
        ("zookeeper.ssl.truststore.location", truststore),
        ("zookeeper.ssl.truststore.type", "PEM"),
        ("zookeeper.ssl.endpoint.identification.algorithm", "HTTPS"),
    ]


def super_digest(password: str) -> str:
    """ZooKeeper's DigestAuthenticationProvider form of super:<password>: super:base64(sha1)."""
    raw = hashlib.sha1(f"{SUPER}:{password}".encode()).digest()  # noqa: S324 - ZooKeeper's own scheme
    return f"{SUPER}:{base64.b64encode(raw).decode()}"


def zk_auth(spec: ClusterSpec) -> list[tuple[str, str]]:
    """kazoo auth_data for kafkaform's sessions: the super user's digest login (none when off)."""
    if not enabled(spec):
        return []
    from reconciler.security.material import material_of

    return [("digest", f"{SUPER}:{material_of(spec).zookeeper[SUPER].reveal()}")]


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def server_jaas(spec: ClusterSpec) -> str:
    from reconciler.security.material import material_of

    pw = material_of(spec).zookeeper[BROKER_LOGIN].reveal()
    return ("Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
            f"  user_{BROKER_LOGIN}={_jaas_quote(pw)};\n}};\n")


def client_jaas(spec: ClusterSpec) -> str:
    from reconciler.security.material import material_of

    pw = material_of(spec).zookeeper[BROKER_LOGIN].reveal()
    return ("Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
            f"  username={_jaas_quote(BROKER_LOGIN)}\n  password={_jaas_quote(pw)};\n}};\n")


def server_args(spec: ClusterSpec, jaas_path: str) -> str:
    """A java @argfile (0600, the zookeeper user's) with the superDigest flag: the digest is then in
    neither the unit file nor the process's command line (`ps` shows `@<file>`); JAVA_TOOL_OPTIONS
    would do the same, but the JVM prints its value at start (into the journal)."""
    from reconciler.security.material import material_of

    digest = super_digest(material_of(spec).zookeeper[SUPER].reveal())
    return (f"-Djava.security.auth.login.config={jaas_path}\n"
            f"-Dzookeeper.DigestAuthenticationProvider.superDigest={digest}\n")


def znode_acl_change(spec: ClusterSpec, observed: ObservedCluster) -> Change | None:
    """Kafka's znodes that anyone may still change on a secured cluster (made before
    zookeeper.set.acl was turned on): set their ACLs once every broker logs in (see ZnodeAclChange).
    A cluster secured from its first start has none; one being secured has them all."""
    from reconciler.diff import Action, AttrDiff, ZnodeAclChange

    open_znodes = observed.cluster.open_znodes
    if not enabled(spec) or not spec.brokers or not open_znodes:
        return None
    return ZnodeAclChange(
        address="zookeeper.acls", service="kafka", key="znode-acls", host=spec.brokers[0].host, action=Action.UPDATE,
        reasons=(f"{len(open_znodes)} of Kafka's znodes are writable by anyone (made before zookeeper.set.acl)",),
        attrs=tuple(AttrDiff(name=f"acl {z}", before="anyone may change it", after="brokers' login: all; world: read")
                    for z in open_znodes),
        znodes=open_znodes)
