"""Who the cluster's principals are: the nodes' own certificate, kafkaform's admin certificate,
the spec's super users, and ANONYMOUS where an internal channel does not authenticate. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.security.spec import NODE_PRINCIPAL

if TYPE_CHECKING:
    from reconciler.spec import ClusterSpec

# A certificate's subject "CN=app,O=…" is the principal User:app (the same name a SCRAM login
# gives), so one ACL serves both ways of logging in; other subjects keep Kafka's default form.
PRINCIPAL_MAPPING_RULES = "RULE:^CN=([^,]+)(,.*)?$/$1/,DEFAULT"


def internal_unauthenticated(spec: ClusterSpec) -> list[tuple[str, str]]:
    """The internal channels whose peers are User:ANONYMOUS (brokers replicating, or KRaft nodes
    reaching the controllers, without a client certificate): (spec field, what it is)."""
    out = []
    if spec.kafka.listeners and spec.kafka.inter_broker.auth == "none":
        out.append(("kafka.inter_broker_listener", f"inter-broker listener {spec.kafka.inter_broker.name}"))
    if spec.kraft:
        for field, what, c in (("kafka.controller_listener", "controller listener", spec.kafka.controller_listener),
                               ("kafka.second_controller_listener", "second controller listener",
                                spec.kafka.second_controller_listener)):
            if c is not None and c.auth == "none":
                out.append((field, f"{what} {c.name}"))
    return out


def super_users(spec: ClusterSpec) -> list[str]:
    """super.users: the principals the authorizer never checks.

    KRaft's StandardAuthorizer keeps ACLs in the metadata log, so until it has loaded them it
    refuses every request but a super user's, the controllers' own Vote and Fetch included: the
    nodes' principal must be one, or the quorum never forms. Without authentication every peer is
    User:ANONYMOUS (ZooKeeper mode's AclAuthorizer reads ACLs from ZooKeeper and needs none then).
    """
    if spec.security is None:
        return ["User:ANONYMOUS"] if spec.kraft else []
    out = [f"User:{NODE_PRINCIPAL}", f"User:{spec.security.admin_principal}"]
    out += [f"User:{u}" for u in spec.security.super_users if f"User:{u}" not in out]
    if internal_unauthenticated(spec):
        out.append("User:ANONYMOUS")
    return out
