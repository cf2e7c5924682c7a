"""The Kafka settings a node's security turns into (server.properties / controller.properties).
Pure, given the material `security.material.prepare` attached to the spec.

- TLS: the node's key and certificate chain and the trusted CA inline as PEM
  (`ssl.keystore.type=PEM`, KIP-651), in the 0600 properties file itself: no keystore file and no
  keystore password to manage. Host names are verified (`ssl.endpoint.identification.algorithm`).
- mTLS listeners require a client certificate (`listener.name.<l>.ssl.client.auth=required`); a
  certificate's CN is its principal (`ssl.principal.mapping.rules`), as a SCRAM login's name is.
- SCRAM listeners enable SCRAM-SHA-512 with the server-side login module (no password on the
  broker: credentials live in the cluster's metadata, created through the Admin API).
"""

from __future__ import annotations

from reconciler.render.formats import Multiline
from reconciler.security.material import material_of
from reconciler.security.principals import PRINCIPAL_MAPPING_RULES
from reconciler.security.spec import MANAGED_SECURITY_KEYS  # noqa: F401  (the keys set here)
from reconciler.spec import ClusterSpec, Listener

SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule required;"



def _served(spec: ClusterSpec, broker: bool, controller: bool) -> list[Listener]:
    out: list[Listener] = list(spec.kafka.listeners) if broker else []
    if controller:
        out += spec.kafka.controller_listeners
    return out


def node_security(spec: ClusterSpec, host: str, broker: bool, controller: bool) -> list[tuple[str, object]]:
    """Security settings of the node on `host` (a broker, a controller or both); [] for an open
    cluster."""
    if spec.security is None:
        return []
    served = _served(spec, broker, controller)
    # A broker is also a client of the controllers (KRaft) and of the other brokers.
    reached = served + ([spec.kafka.controller_listener] if spec.kraft and broker and not controller else [])
    out: list[tuple[str, object]] = []
    if any(lst.tls for lst in reached):
        m = material_of(spec)
        out += [
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.key", Multiline(m.nodes[host].key_pem)),
            ("ssl.keystore.certificate.chain", Multiline(m.node_chain(host))),
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.certificates", Multiline(m.ca_pem)),
            ("ssl.endpoint.identification.algorithm", "https"),
        ]
    # Read only by Kafka's tools that kafkaform runs on the host with this file as --command-config
    # (the node's certificate then logs them in); the server itself has no such setting.
    tool = spec.kafka.controller_listener if controller and not broker else spec.kafka.inter_broker
    if tool.tls:
        out.append(("security.protocol", "SSL"))
    out.append(("ssl.principal.mapping.rules", PRINCIPAL_MAPPING_RULES))
    scram = [lst for lst in served if lst.auth == "scram-sha-512"]
    if scram:
        out.append(("sasl.enabled.mechanisms", "SCRAM-SHA-512"))
    for lst in served:
        prefix = f"listener.name.{lst.name.lower()}"
        if lst.auth == "mtls":
            out.append((f"{prefix}.ssl.client.auth", "required"))
        elif lst.auth == "scram-sha-512":
            out.append((f"{prefix}.scram-sha-512.sasl.jaas.config", SCRAM_MODULE))
    return out
