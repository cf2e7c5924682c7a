"""`kafkaform client-config`: what a client needs to connect as one user, as a Java client
properties file (Kafka's console tools take it with --command-config, --producer.config, ...).
Pure, given the prepared material; the CLI writes it to a 0600 file, never to the terminal.

A SCRAM user gets the first SASL listener (SCRAM-SHA-512 and its password); `mtls` gets a
certificate for the user from the cluster CA on the first mTLS listener (key inline, PEM). The
cluster CA is inline as the truststore, and host names are verified.
"""

from __future__ import annotations

from reconciler.render.common import _properties
from reconciler.render.formats import Multiline
from reconciler.security.material import Material
from reconciler.spec import ClusterSpec, Listener


class ClientConfigError(Exception):
    pass


def pick_listener(spec: ClusterSpec, auth: str, name: str | None) -> Listener:
    candidates = [lst for lst in spec.kafka.listeners if (name is None or lst.name == name)]
    if name is not None and not candidates:
        raise ClientConfigError(f"no listener named {name} (listeners: "
                                f"{', '.join(lst.name for lst in spec.kafka.listeners)})")
    fit = [lst for lst in candidates if lst.auth == auth]
    if not fit:
        what = {"scram-sha-512": "SCRAM (a SASL listener)", "mtls": "client certificates (authentication: mtls)"}
        raise ClientConfigError(f"no listener{' ' + name if name else ''} takes {what[auth]}")
    return fit[0]


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scram_config(spec: ClusterSpec, m: Material, user: str, listener: Listener) -> str:
    if user not in m.users:
        raise ClientConfigError(f"{user} is not a SCRAM user of the spec (security.users: "
                                f"{', '.join(sorted(m.users)) or 'none'})")
    jaas = (f"org.apache.kafka.common.security.scram.ScramLoginModule required username={_jaas_quote(user)} "
            f"password={_jaas_quote(m.users[user].reveal())};")
    items: list[tuple[str, object]] = [
        ("bootstrap.servers", ",".join(f"{b.host}:{listener.port}" for b in spec.brokers)),
        ("security.protocol", listener.protocol),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.jaas.config", jaas),
    ]
    if listener.tls:
        items += _trust(m)
    return _properties(spec.name, items)


def mtls_config(spec: ClusterSpec, m: Material, user: str, listener: Listener, cert_pem: str, key_pem: str) -> str:
    items: list[tuple[str, object]] = [
        ("bootstrap.servers", ",".join(f"{b.host}:{listener.port}" for b in spec.brokers)),
        ("security.protocol", "SSL"),
        ("ssl.keystore.type", "PEM"),
        ("ssl.keystore.key", Multiline(key_pem)),
        ("ssl.keystore.certificate.chain", Multiline(cert_pem + m.ca_pem)),
        *_trust(m),
    ]
    return _properties(spec.name, items)


def _trust(m: Material) -> list[tuple[str, object]]:
    return [("ssl.truststore.type", "PEM"), ("ssl.truststore.certificates", Multiline(m.ca_pem)),
            ("ssl.endpoint.identification.algorithm", "https")]
