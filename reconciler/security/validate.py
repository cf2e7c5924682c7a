"""Checks of listeners and the security section that need the whole spec. Pure: each problem is
reported with its field path, as `spec.semantic_issues` does for the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reconciler.security.principals import internal_unauthenticated

if TYPE_CHECKING:
    from reconciler.spec import ClusterSpec, Listener

Add = Callable[[str, str], None]


def _listener_issues(path: str, lst: Listener, spec: ClusterSpec, add: Add) -> None:
    sec = spec.security
    auth = lst.auth
    if lst.protocol == "PLAINTEXT" and auth != "none":
        add(f"{path}.authentication", f"{auth} on a PLAINTEXT listener: SCRAM needs SASL_SSL, a client "
            "certificate needs SSL")
    elif lst.protocol == "SSL" and auth == "scram-sha-512":
        add(f"{path}.authentication", "SCRAM on an SSL listener: use protocol SASL_SSL")
    elif lst.protocol.startswith("SASL_") and auth != "scram-sha-512":
        add(f"{path}.authentication", f"a {lst.protocol} listener authenticates with SASL: scram-sha-512 "
            "(a client certificate needs protocol SSL)")
    if lst.protocol != "PLAINTEXT" and sec is None:
        add(f"{path}.protocol", f"{lst.protocol} needs a security section (the cluster CA, users)")
    if lst.protocol == "SASL_PLAINTEXT" and sec is not None and not sec.allow_sasl_plaintext:
        add(f"{path}.protocol", "SASL_PLAINTEXT sends logins and data in clear; use SASL_SSL, or set "
            "security.allow_sasl_plaintext: true for a lab")
    if sec is not None and auth == "none" and not sec.allow_anonymous:
        add(f"{path}.authentication", f"listener {lst.name} lets clients in without credentials (as "
            "User:ANONYMOUS): set its authentication, or security.allow_anonymous: true")


def _zookeeper_tls_issues(spec: ClusterSpec, add: Add) -> None:
    """security.zookeeper_tls needs a ZooKeeper ensemble, one whose release reads PEM key stores
    for TLS, and brokers whose ZooKeeper client has the TLS settings."""
    from reconciler import versions
    from reconciler.security.zookeeper import TLS_MIN_ZOOKEEPER

    path = "security.zookeeper_tls"
    if spec.kraft or spec.zookeeper is None:
        add(path, "TLS for ZooKeeper is for ZooKeeper mode (a zookeeper section, Kafka 3.x): a KRaft cluster has "
            "no ZooKeeper, its controllers' traffic is TLS through kafka.controller_listener")
        return
    floor = ".".join(map(str, TLS_MIN_ZOOKEEPER))
    try:
        old = versions.parse_version(spec.zookeeper.version) < TLS_MIN_ZOOKEEPER
    except ValueError:
        old = False  # (reported on zookeeper.version)
    if old:
        add(path, f"ZooKeeper {spec.zookeeper.version} is older than {floor}, the first release kafkaform runs "
            "with TLS (PEM key stores, a TLS client port, sslQuorum): raise zookeeper.version")
    table = versions.config_table(spec.kafka.version)
    if table is not None and "zookeeper.ssl.client.enable" not in table.broker_configs:
        add(path, f"Kafka {spec.kafka.version}'s brokers cannot reach ZooKeeper over TLS (no "
            "zookeeper.ssl.client.enable, KIP-515): raise kafka.version")


def _volume_issues(spec: ClusterSpec, add: Add) -> None:
    """Each LUKS volume is on a spec host, holds a data dir of a service there and nothing of
    kafkaform's installs, and no name, device or mount point repeats on a host."""
    from reconciler.security.at_rest import data_dirs, within

    sec = spec.security
    assert sec is not None
    if sec.volumes and sec.encryption_at_rest != "required":
        add("security.encryption_at_rest", "security.volumes makes encrypted volumes: set encryption_at_rest: "
            "required too, so every data dir is checked to be on one")
    hosts = set(spec.hosts())
    installs = [spec.kafka.install_dir] + ([spec.zookeeper.install_dir] if spec.zookeeper else [])
    seen: dict[tuple[str, str, str], int] = {}
    for i, v in enumerate(sec.volumes):
        path = f"security.volumes[{i}]"
        if v.host not in hosts:
            add(f"{path}.host", f"{v.host} is not a host of this spec")
            continue
        for what in ("name", "device", "mount"):
            key = (v.host, what, getattr(v, what))
            if key in seen:
                add(f"{path}.{what}", f"{key[2]} on {v.host} is also security.volumes[{seen[key]}].{what}")
            seen.setdefault(key, i)
        held = [d for h, _, d in data_dirs(spec) if h == v.host and within(d, v.mount)]
        if not held:
            add(f"{path}.mount", f"no data dir of a service on {v.host} is {v.mount} or beneath it, so the volume "
                "would hold nothing kafkaform runs")
        hidden = [d for d in installs if within(d, v.mount)]
        if hidden:
            add(f"{path}.mount", f"{v.mount} contains the install dir {hidden[0]}: mounting a volume there would hide "
                "the installed builds; mount it on the data dir")


def security_issues(spec: ClusterSpec, add: Add) -> None:
    """Listener protocols and authentication, the inter-broker and controller channels, super
    users, SCRAM users and ACLs."""
    listeners = spec.kafka.listeners
    for i, lst in enumerate(listeners):
        _listener_issues(f"kafka.listeners[{i}]", lst, spec, add)
    names = [lst.name for lst in listeners]
    ib = spec.kafka.inter_broker_listener
    if ib is not None and ib not in names:
        add("kafka.inter_broker_listener", f"{ib} is not one of the listeners ({', '.join(names) or 'none'})")
    elif listeners and spec.kafka.inter_broker.protocol.startswith("SASL_"):
        add("kafka.inter_broker_listener", "brokers authenticate to each other with their node certificates: "
            "make the inter-broker listener SSL with authentication: mtls (inter-broker SASL is not supported)")
    if spec.kraft:
        for field, ctrl in (("kafka.controller_listener", spec.kafka.controller_listener),
                            ("kafka.second_controller_listener", spec.kafka.second_controller_listener)):
            if ctrl is None:
                continue
            if ctrl.protocol.startswith("SASL_"):
                add(f"{field}.protocol", "KRaft nodes reach the controllers with their node "
                    "certificates: use SSL with authentication: mtls (or PLAINTEXT on an open cluster)")
            else:
                _listener_issues(field, ctrl, spec, add)
    sec = spec.security
    if sec is None:
        return
    if sec.zookeeper_tls:
        _zookeeper_tls_issues(spec, add)
    _volume_issues(spec, add)
    if not sec.allow_anonymous:
        for field, what in internal_unauthenticated(spec):
            add(field, f"the {what} does not authenticate, so every anonymous client would be a super user: use "
                "SSL with authentication: mtls (or set security.allow_anonymous: true)")
    scram = [lst.name for lst in listeners if lst.auth == "scram-sha-512"]
    mtls = [lst.name for lst in listeners if lst.auth == "mtls"]
    users = {u.name for u in sec.users}
    if sec.users and not scram:
        add("security.users", "no listener authenticates with SCRAM (a SASL_SSL listener), so these users "
            "could never log in")
    seen: set[str] = set()
    for i, u in enumerate(sec.users):
        if u.name in seen:
            add(f"security.users[{i}].name", f"duplicate user {u.name}")
        seen.add(u.name)
        if u.name in (sec.admin_principal, "kafka-nodes", "ANONYMOUS"):
            add(f"security.users[{i}].name", f"{u.name} is one of kafkaform's own principals")
    for i, name in enumerate(sec.super_users):
        if name not in users and not mtls:
            add(f"security.super_users[{i}]", f"{name} cannot log in: it is not a SCRAM user (security.users) and "
                "no listener takes client certificates (authentication: mtls)")
    if not spec.kafka.listeners or (not scram and not mtls and not sec.allow_anonymous):
        add("kafka.listeners", "no listener lets clients authenticate: give one SASL_SSL "
            "(scram-sha-512) or SSL with authentication: mtls")
    for i, acl in enumerate(sec.acls):
        if acl.principal != "*" and acl.principal not in users and not mtls:
            add(f"security.acls[{i}].principal", f"{acl.principal} is not a user (security.users) and no listener "
                "takes client certificates, so the ACL could never apply")
