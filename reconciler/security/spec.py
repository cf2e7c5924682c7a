"""The spec's `security` section: the cluster CA, who may log in, super users, SCRAM users and
their ACLs. Shapes only; what needs the whole spec is checked in `security.validate`.

Secrets are never literal values in a spec: a `SecretRef` names a file or an environment
variable, read by `security.secrets` when the spec is used (never stored in plans or state).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from reconciler import fields

# A user name is a principal (`User:<name>`) in super.users (';'-separated), ACLs and SCRAM
# credentials, and a certificate's CN for mTLS clients: letters, digits and . _ - only.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# What kafkaform's own certificates are called (principals after the mapping rule).
NODE_PRINCIPAL = "kafka-nodes"

# Keys `render.security` sets: a spec with a security section may not set them under config.
MANAGED_SECURITY_KEYS = {
    "ssl.keystore.type", "ssl.keystore.key", "ssl.keystore.certificate.chain", "ssl.keystore.location",
    "ssl.keystore.password", "ssl.key.password", "ssl.truststore.type", "ssl.truststore.certificates",
    "ssl.truststore.location", "ssl.truststore.password", "ssl.client.auth", "ssl.principal.mapping.rules",
    "ssl.endpoint.identification.algorithm", "sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol",
    "sasl.mechanism.controller.protocol", "super.users", "allow.everyone.if.no.acl.found", "zookeeper.set.acl",
    # the brokers' ZooKeeper client over TLS (security.zookeeper_tls)
    "zookeeper.ssl.client.enable", "zookeeper.clientCnxnSocket", "zookeeper.ssl.keystore.location",
    "zookeeper.ssl.keystore.type", "zookeeper.ssl.keystore.password", "zookeeper.ssl.truststore.location",
    "zookeeper.ssl.truststore.type", "zookeeper.ssl.truststore.password",
    "zookeeper.ssl.endpoint.identification.algorithm",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_user(v: str) -> str:
    return fields.fullmatch(USER_NAME, v, "a user name (letters, digits, '.', '_', '-'; at most 64)")


def _check_env(v: str) -> str:
    return fields.fullmatch(ENV_NAME, v, "an environment variable name (letters, digits, '_')")


UserName = Annotated[str, AfterValidator(_check_user)]
LocalPath = Annotated[str, AfterValidator(fields.check_local_option_path)]


class SecretRef(_Model):
    """Where a secret is read from: exactly one of a file (its whole content, one trailing newline
    dropped) or an environment variable of the process that runs kafkaform."""

    file: LocalPath | None = None
    env: Annotated[str, AfterValidator(_check_env)] | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("a secret is {file: PATH} or {env: NAME}, exactly one of them "
                             "(secrets are never written into the spec itself)")
        return self

    def describe(self) -> str:
        return f"file {self.file}" if self.file is not None else f"environment variable {self.env}"


class ProvidedCa(_Model):
    """A CA of the user's own, which kafkaform issues node and client certificates with."""

    cert: LocalPath  # PEM certificate
    key: SecretRef  # its PEM private key (unencrypted PKCS#8 or traditional)


class TlsSpec(_Model):
    ca: Literal["generated"] | ProvidedCa = "generated"
    validity_days: Annotated[int, Field(ge=2, le=3650)] = 365  # node and client certificates
    renew_before_days: Annotated[int, Field(ge=1, le=3649)] = 30  # a plan renews certificates this close to expiry

    @model_validator(mode="after")
    def _renewal(self) -> TlsSpec:
        if self.renew_before_days >= self.validity_days:
            raise ValueError(f"renew_before_days ({self.renew_before_days}) must be shorter than validity_days "
                             f"({self.validity_days}), or every plan would renew every certificate")
        return self


class UserSpec(_Model):
    """A SCRAM-SHA-512 user kafkaform creates (and rotates) through the Admin API."""

    name: UserName
    password: SecretRef


Operation = Literal["all", "read", "write", "create", "delete", "alter", "describe", "cluster_action",
                    "describe_configs", "alter_configs", "idempotent_write"]
ResourceType = Literal["topic", "group", "cluster", "transactional_id"]
# The operations Kafka's authorizer checks per resource type (an ACL with another one never matches).
OPERATIONS_OF: dict[str, frozenset[str]] = {
    "topic": frozenset({"all", "read", "write", "create", "delete", "alter", "describe", "describe_configs",
                        "alter_configs"}),
    "group": frozenset({"all", "read", "describe", "delete"}),
    "cluster": frozenset({"all", "create", "alter", "describe", "cluster_action", "describe_configs",
                          "alter_configs", "idempotent_write"}),
    "transactional_id": frozenset({"all", "describe", "write"}),
}
CLUSTER_RESOURCE = "kafka-cluster"


def _check_acl_host(v: str) -> str:
    if v == "*":
        return v
    try:
        if ipaddress.ip_address(v).version == 4:
            return v
    except ValueError:
        pass
    raise ValueError(f"{v[:80]!r} is not '*' or an IPv4 address (Kafka matches ACL hosts by client address)")


class AclSpec(_Model):
    """Allow (or deny) a user operations on a resource. `principal` is a user name (`User:<name>`),
    or `*` for every authenticated user."""

    principal: Annotated[str, AfterValidator(lambda v: v if v == "*" else _check_user(v))]
    resource_type: ResourceType
    resource_name: Annotated[str, Field(min_length=1, max_length=249)] = CLUSTER_RESOURCE
    pattern: Literal["literal", "prefixed"] = "literal"
    operations: tuple[Operation, ...]
    permission: Literal["allow", "deny"] = "allow"
    host: Annotated[str, AfterValidator(_check_acl_host)] = "*"

    @model_validator(mode="after")
    def _shape(self) -> AclSpec:
        if self.resource_name != "*":
            fields.fullmatch(re.compile(r"[A-Za-z0-9._-]{1,249}"), self.resource_name,
                             "a resource name (letters, digits, '.', '_', '-'), or '*'")
        if not self.operations:
            raise ValueError("operations: list at least one")
        wrong = sorted(set(self.operations) - OPERATIONS_OF[self.resource_type])
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do not apply to a {self.resource_type} (it takes "
                             f"{', '.join(sorted(OPERATIONS_OF[self.resource_type]))})")
        if self.resource_type == "cluster" and self.resource_name != CLUSTER_RESOURCE:
            raise ValueError(f"the cluster resource is named {CLUSTER_RESOURCE!r}")
        return self

    def key(self) -> tuple[str, ...]:
        """One row per operation, as Kafka stores ACLs (see `security.acls`)."""
        return (self.principal, self.resource_type, self.resource_name, self.pattern, self.permission, self.host)


# A block device on a managed host: /dev/<name>[/<name>...], plain characters only.
DEVICE = re.compile(r"/dev/[A-Za-z0-9][A-Za-z0-9._+-]*(?:/[A-Za-z0-9][A-Za-z0-9._+:-]*)*")
VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")


def _check_device(v: str) -> str:
    fields.fullmatch(DEVICE, v, "a block device path such as /dev/vdb or /dev/disk/by-id/NAME")
    if v.startswith("/dev/mapper/"):
        raise ValueError(f"{v} is a device-mapper device: name the raw device the LUKS volume is made on")
    return v


class VolumeSpec(_Model):
    """An encrypted (LUKS2) volume kafkaform makes on a raw device and mounts where a service keeps
    its data. Formatting destroys what is on the device: plan refuses it unless the operator passes
    --format-devices, and only a device with no filesystem, partition table or other signature is
    formatted. The key comes from a secret reference and is written to a 0400 key file on the host
    (/etc/crypttab opens the volume at boot)."""

    host: Annotated[str, AfterValidator(lambda v: fields.fullmatch(fields.HOST, v, "a host name"))]
    name: Annotated[str, AfterValidator(lambda v: fields.fullmatch(
        VOLUME_NAME, v, "a volume name (lower-case letters, digits, '-'; at most 31)"))]
    device: Annotated[str, AfterValidator(_check_device)]
    mount: Annotated[str, AfterValidator(fields.check_service_path)]
    filesystem: Literal["ext4", "xfs"] = "ext4"
    key: SecretRef

    @property
    def mapper(self) -> str:
        """The device-mapper name the opened volume gets (/dev/mapper/<mapper>)."""
        return f"kafkaform-{self.name}"


class SecuritySpec(_Model):
    """Authentication, authorization and TLS for the whole cluster."""

    tls: TlsSpec = TlsSpec()
    # Clients without credentials (a PLAINTEXT or a plain SSL listener) are let in as
    # User:ANONYMOUS, and resources without ACLs stay open to everyone. Off by default.
    allow_anonymous: bool = False
    allow_sasl_plaintext: bool = False  # SASL_PLAINTEXT sends SCRAM exchanges in clear: labs only
    admin_principal: UserName = "kafkaform-admin"  # kafkaform's own client certificate (a super user)
    super_users: tuple[UserName, ...] = ()
    users: tuple[UserSpec, ...] = ()
    acls: tuple[AclSpec, ...] = ()
    # required: plan refuses unless every data dir (brokers', controllers', ZooKeeper's) is on a
    # dm-crypt (LUKS) device, found by observe, or on one of `volumes` below (made by this plan).
    encryption_at_rest: Literal["none", "required"] = "none"
    volumes: tuple[VolumeSpec, ...] = ()  # LUKS volumes kafkaform makes and mounts (see VolumeSpec)
    # ZooKeeper mode: TLS on ZooKeeper's client port (zookeeper.client_port becomes TLS-only; every
    # client shows a certificate from the cluster CA: the brokers their node's, kafkaform its own)
    # and between the ensemble's servers (sslQuorum). A running cluster moves there in three
    # applies, each one roll: "serve", "quorum", then true (see security.migration).
    zookeeper_tls: Literal["serve", "quorum"] | bool = False
