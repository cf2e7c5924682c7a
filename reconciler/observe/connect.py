"""How kafkaform itself reaches the cluster: one place that turns the spec into connection
settings for kafka-python (Admin API) and for the raw DescribeQuorum socket.

kafkaform connects on the inter-broker listener (brokers) and the controller listener
(controllers), which on a secured cluster take client certificates: it presents its own admin
certificate (principal `security.admin_principal`, a super user), issued by the cluster CA and
kept 0600 on this machine. On an open cluster it connects in clear, as User:ANONYMOUS.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

    from reconciler.spec import ClusterSpec, Listener


@dataclass(frozen=True)
class ClientTls:
    """TLS settings of one connection (None fields: not used)."""

    cafile: str
    certfile: str | None = None
    keyfile: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cafile)  # verifies the broker's name against its SAN
        if self.certfile and self.keyfile:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: addresses and the TLS to speak there (None: plaintext)."""

    addresses: tuple[str, ...]
    tls: ClientTls | None = None

    def kafka_kwargs(self) -> dict[str, Any]:
        """kafka-python client arguments for this endpoint."""
        if self.tls is None:
            return {"bootstrap_servers": list(self.addresses)}
        return {"bootstrap_servers": list(self.addresses), "security_protocol": "SSL",
                "ssl_context": self.tls.context(), "ssl_check_hostname": True}


def _admin_tls(spec: ClusterSpec, listener: Listener) -> ClientTls | None:
    if not listener.tls:
        return None
    from reconciler.security.material import material_of

    ca, cert, key = material_of(spec).admin_files()
    return ClientTls(cafile=ca, certfile=cert, keyfile=key) if listener.auth == "mtls" else ClientTls(cafile=ca)


def admin_endpoint(spec: ClusterSpec, hosts: list[str] | None = None) -> Endpoint:
    """kafkaform's Admin API connection: the brokers' inter-broker listener."""
    lst = spec.kafka.inter_broker
    hosts = hosts if hosts is not None else [b.host for b in spec.brokers]
    return Endpoint(tuple(f"{h}:{lst.port}" for h in hosts), _admin_tls(spec, lst))


def controller_endpoint(spec: ClusterSpec, addresses: list[str]) -> Endpoint:
    """DescribeQuorum straight to the controllers (host:port on the controller listener)."""
    return Endpoint(tuple(addresses), _admin_tls(spec, spec.kafka.controller_listener))


def admin_client(spec: ClusterSpec, client_id: str = "kafkaform-apply", hosts: list[str] | None = None,
                 **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client on kafkaform's own connection (close it when done)."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**admin_endpoint(spec, hosts).kafka_kwargs(), client_id=client_id, **options)
