"""ZooKeeper mode's security: the brokers log in to ZooKeeper (SASL DIGEST-MD5, a JAAS `Client`
section) and create their znodes with ACLs (`zookeeper.set.acl=true`: writable by the brokers'
login only, and the sensitive ones, such as SCRAM credentials and broker configs, readable by it
only); kafkaform's own session logs in as ZooKeeper's super user (a digest login checked against
`superDigest`), which replaces `skipACL=yes` for dynamic reconfiguration. Pure, given the material.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.diff import Change
    from reconciler.observe.model import ObservedCluster
    from reconciler.spec import ClusterSpec

BROKER_LOGIN = "kafka"
SUPER = "super"


def enabled(spec: ClusterSpec) -> bool:
    return spec.security is not None and not spec.kraft and spec.zookeeper is not None


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
