"""The declarative cluster spec (YAML -> frozen pydantic models) and its validation.

Validation happens in two layers, both pure: pydantic checks shapes and types (unknown fields are
errors, so typos never pass silently); `semantic_issues()` checks what only the whole spec can
tell (duplicate ids, ensemble size, replication factors against broker count, config keys the
chosen Kafka version does not know). Every problem names its field path.
"""

from __future__ import annotations

import ipaddress
import math
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from reconciler import fields, versions
from reconciler.security import principals
from reconciler.security.spec import MANAGED_SECURITY_KEYS, SecuritySpec
from reconciler.security.validate import security_issues

SENSITIVE_KEY_RE = re.compile(r"password|secret|jaas|credential|keystore\.key|master\.key", re.I)

ConfigValue = str | int | float | bool


def _check_config_value(v: Any) -> Any:
    # Checked before the union so a list or null gets one clear issue at the key's path, instead of
    # one issue per union member at paths like `kafka.config.<key>.str`.
    if v is None or not isinstance(v, str | int | float | bool):
        got = "null" if v is None else type(v).__name__
        raise ValueError(f"config values must be a string, number or boolean, got {got}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{v} is not a finite number")
    if isinstance(v, str):
        fields.check_text(v, "a config value")
    return v


def _check_config_keys(v: dict[str, Any]) -> dict[str, Any]:
    for key in v:
        if not isinstance(key, str) or not fields.CONFIG_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a config key (letters, digits, '.', '_', '-'; "
                             "starting with a letter or digit)")
    return v


ConfigEntry = Annotated[ConfigValue, BeforeValidator(_check_config_value)]
ConfigMap = Annotated[dict[str, ConfigEntry], BeforeValidator(_check_config_keys)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Artifact(_Model):
    """Where a Kafka or ZooKeeper build comes from: exactly one of url, path, libs, maven.

    `url`/`path` name an Apache release tarball and need `sha512`; `libs` is a prepared libs/ tree
    (what a tarball unpacks to); `maven: true` resolves the version from Maven Central into the
    local cache (what the lab and CI use).
    """

    url: str | None = None
    path: str | None = None
    sha512: str | None = None
    libs: str | None = None
    maven: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Artifact:
        sources = [k for k in ("url", "path", "libs") if getattr(self, k)] + (["maven"] if self.maven else [])
        if len(sources) != 1:
            raise ValueError(
                f"give exactly one of url, path, libs or maven: true (got {', '.join(sources) or 'none'})"
            )
        if (self.url or self.path) and not self.sha512:
            raise ValueError("a release tarball (url or path) needs sha512 so the download can be verified")
        if self.sha512 and not re.fullmatch(r"[0-9a-fA-F]{128}", self.sha512):
            raise ValueError("sha512 must be 128 hex characters")
        if self.url is not None:
            _check_url(self.url)
        for what in ("path", "libs"):
            value = getattr(self, what)
            if value is not None:
                fields.check_text(value, f"the {what}", max_len=4096)
        return self


def _check_url(url: str) -> None:
    if url.startswith("file:"):
        raise ValueError("file:// URLs are not supported; give a local tarball as path: instead")
    if not url.startswith(("https://", "http://")):
        raise ValueError("url must start with https:// or http://")
    if not fields.URL.fullmatch(url):
        raise ValueError(f"{url[:80]!r} is not a URL kafkaform can download (host, then a path of "
                         "URL characters; no spaces or quotes)")
    name = url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1]
    if not name.endswith((".tgz", ".tar.gz")):
        raise ValueError(f"url must end in the tarball's file name (….tgz or ….tar.gz), got {name or 'none'!r}")


def _check_heap(v: str | None) -> str | None:
    if v is not None:
        fields.fullmatch(fields.HEAP, v, "a JVM heap size like 512m or 2g")
    return v


def _check_host(v: str) -> str:
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        addr = None
    if addr is not None:
        if addr.version == 6:
            raise ValueError(f"{v!r}: IPv6 addresses are not supported yet; use an IPv4 address or a host name")
        return v
    fields.fullmatch(fields.HOST, v, "an IP address or host name")
    if v.rsplit(".", 1)[-1].isdigit():
        # A host name never ends in an all-numeric label (RFC 1123 2.1); the resolver would read
        # "10.213.0.311" or "300" as some other IPv4 address instead of failing.
        raise ValueError(f"{v!r} is not a valid IP address (and a host name cannot end in a number)")
    return v


def _check_rack(v: str) -> str:
    return fields.fullmatch(fields.RACK, v, "a rack name (letters, digits, '.', '_', '-'; at most 64)")


def _check_jvm_opt(v: str) -> str:
    fields.check_text(v, "a JVM option", max_len=4096)
    if not v.startswith("-"):
        raise ValueError(f"{v[:80]!r} is not a JVM option (they start with '-')")
    for opt, why in _JVM_OPTS_REFUSED:
        # "-cp" and "-jar" are whole arguments; the others take their value in the same argument
        if v == opt or (opt not in ("-cp", "-jar") and v.startswith(opt)):
            raise ValueError(f"{v[:80]!r}: {why}")
    return v


# JVM options a spec may not pass: they run commands or load code, or fight fields kafkaform sets.
_JVM_OPTS_REFUSED: tuple[tuple[str, str], ...] = (
    ("-XX:OnError", "runs a shell command; not allowed in jvm_opts"),
    ("-XX:OnOutOfMemoryError", "runs a shell command; not allowed in jvm_opts"),
    ("-javaagent", "loads code into the JVM; not allowed in jvm_opts"),
    ("-agentlib", "loads native code into the JVM; not allowed in jvm_opts"),
    ("-agentpath", "loads native code into the JVM; not allowed in jvm_opts"),
    ("-Xbootclasspath", "changes the JVM's boot class path; not allowed in jvm_opts"),
    ("-cp", "kafkaform sets the class path"),
    ("-classpath", "kafkaform sets the class path"),
    ("--class-path", "kafkaform sets the class path"),
    ("-jar", "kafkaform starts the service's main class"),
    ("-Xmx", "set the heap with the heap field"),
    ("-Xms", "set the heap with the heap field"),
)


def _check_version(v: str) -> str:
    return fields.fullmatch(fields.VERSION, v, "a version like 3.9.1")


Port = Annotated[int, Field(ge=1, le=65535)]
Heap = Annotated[str, AfterValidator(_check_heap)]
Host = Annotated[str, AfterValidator(_check_host)]
Rack = Annotated[str, AfterValidator(_check_rack)]
ServicePath = Annotated[str, AfterValidator(fields.check_service_path)]
LocalOptionPath = Annotated[str, AfterValidator(fields.check_local_option_path)]
JvmOpt = Annotated[str, AfterValidator(_check_jvm_opt)]


class Listener(_Model):
    name: str = "PLAINTEXT"
    port: Port = 9092
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # How clients prove who they are: SCRAM-SHA-512 (SASL_* listeners, the default there), a
    # client certificate from the cluster CA (SSL), or not at all (PLAINTEXT, SSL: clients are
    # then User:ANONYMOUS, which needs security.allow_anonymous).
    authentication: Literal["none", "scram-sha-512", "mtls"] | None = None

    @property
    def auth(self) -> str:
        """The authentication in effect (the protocol's default when not given)."""
        if self.authentication is not None:
            return self.authentication
        return "scram-sha-512" if self.protocol.startswith("SASL_") else "none"

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", v):
            raise ValueError("listener names are upper case letters, digits and _")
        return v


class ControllerListener(Listener):
    """The listener KRaft controllers serve the quorum on (brokers and controllers reach them here)."""

    name: str = "CONTROLLER"
    port: Port = 9093


class ReassignmentSpec(_Model):
    """How partition data moves when brokers are added or removed (and for `rebalance`)."""

    throttle_mib_per_s: Annotated[float, Field(gt=0, le=10_000)] = 50.0  # replication throttle per broker
    max_partitions_per_broker: Annotated[int, Field(ge=1, le=1000)] = 4  # receiving at once, per broker
    timeout_s: Annotated[float, Field(gt=0)] = 6 * 3600.0


DEFAULT_KRAFT_VERSION = "4.4.0"
DEFAULT_ZOOKEEPER_MODE_VERSION = "3.9.1"


class KafkaSpec(_Model):
    version: str = DEFAULT_KRAFT_VERSION  # (default by mode: see ClusterSpec._defaults)
    artifact: Artifact = Artifact(maven=True)
    heap: Heap = "512m"
    jvm_opts: tuple[JvmOpt, ...] = ()
    listeners: tuple[Listener, ...] = (Listener(),)
    config: ConfigMap = Field(default_factory=dict)
    metadata_mode: Literal["zookeeper", "kraft"] = "kraft"  # (default: zookeeper when the spec has a zookeeper section)
    controller_listener: ControllerListener = ControllerListener()
    # KRaft: one more listener the controllers serve, for moving the quorum onto another listener
    # of a running cluster (see security/migration.py); nodes reach the controllers over
    # controller_listener either way.
    second_controller_listener: ControllerListener | None = None
    controller_heap: Heap = "512m"  # dedicated KRaft controllers (controllers[].heap overrides)
    # KRaft: settings for the dedicated controllers only (they also get the controller's share of
    # `config`: partition and replication defaults, leader election, authorization)
    controller_config: ConfigMap = Field(default_factory=dict)
    install_dir: ServicePath = "/opt/kafka"
    reassignment: ReassignmentSpec = ReassignmentSpec()
    # The listener brokers replicate over (and kafkaform's own admin connections use): the first
    # listener unless named here.
    inter_broker_listener: str | None = None

    @property
    def controller_listeners(self) -> tuple[ControllerListener, ...]:
        """What the controllers serve: the controller listener first (the one nodes connect over)."""
        second = self.second_controller_listener
        return (self.controller_listener, *([second] if second is not None else []))

    @property
    def inter_broker(self) -> Listener:
        name = self.inter_broker_listener
        return next((lst for lst in self.listeners if lst.name == name), self.listeners[0]) if self.listeners \
            else Listener()

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        try:
            return _check_version(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a Kafka version like 3.9.1") from None


class ZooKeeperNode(_Model):
    myid: Annotated[int, Field(ge=1, le=255)]
    host: Host



class ZooKeeperSpec(_Model):
    version: str = "3.8.4"
    artifact: Artifact = Artifact(maven=True)
    heap: Heap = "256m"
    client_port: Port = 2181
    peer_port: Port = 2888
    election_port: Port = 3888
    data_dir: ServicePath = "/var/lib/zookeeper"
    config: ConfigMap = Field(default_factory=dict)
    nodes: tuple[ZooKeeperNode, ...]
    install_dir: ServicePath = "/opt/zookeeper"

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        try:
            return _check_version(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a ZooKeeper version like 3.8.4") from None


NodeId = Annotated[int, Field(ge=0, le=2**31 - 1)]


class BrokerSpec(_Model):
    id: NodeId
    host: Host
    rack: Rack | None = None
    data_dirs: tuple[ServicePath, ...] = ("/var/lib/kafka/data",)
    heap: Heap | None = None  # overrides kafka.heap for this broker
    # KRaft combined node: this broker's JVM is also a controller (process.roles=broker,controller);
    # for small labs, as Kafka's docs advise against it in production
    controller: bool = False


class ControllerSpec(_Model):
    """A dedicated KRaft controller: a service of its own (kafka-controller: its own JVM, unit and
    metadata dir), on a host of its own or beside a broker. Its id shares the node.id namespace
    with the brokers."""

    id: NodeId
    host: Host
    metadata_dir: ServicePath = "/var/lib/kafka-controller/metadata"
    heap: Heap | None = None  # overrides kafka.controller_heap


class SshSpec(_Model):
    user: str = "root"
    port: Port = 22
    key_file: LocalOptionPath | None = None
    known_hosts: Literal["strict", "accept-new", "ignore"] = "strict"
    known_hosts_file: LocalOptionPath | None = None

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        return fields.fullmatch(fields.USER, v, "a login name (lower case letters, digits, '_', '-')")
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = 5.0


class ClusterSpec(_Model):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    kafka: KafkaSpec = KafkaSpec()
    zookeeper: ZooKeeperSpec | None = None  # ZooKeeper mode only
    controllers: tuple[ControllerSpec, ...] = ()  # KRaft only (or combined brokers)
    brokers: tuple[BrokerSpec, ...]
    ssh: SshSpec = SshSpec()
    allow_uneven_racks: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    security: SecuritySpec | None = None  # none: an open cluster (PLAINTEXT, everyone allowed)
    # Resolved from the control machine by `reconciler.security.prepare`: the CA, each host's
    # certificate and key, the secrets the spec refers to. Renderers read it; it is never shown.
    _material: Any = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not fields.NAME.fullmatch(v):
            raise ValueError("cluster names start with a letter and hold only letters, digits and '-'")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 50:
            raise ValueError(f"at most 50 tags, got {len(v)}")
        for key, value in v.items():
            fields.fullmatch(fields.TAG_KEY, key, "a tag key (1-128 letters, digits, spaces and _ . : / = + @ -)")
            fields.fullmatch(fields.TAG_VALUE, value,
                             f"a value for tag {key!r} (0-256 letters, digits, spaces and _ . : / = + @ -)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """The metadata mode and version a spec means when it does not say: KRaft on current
        Kafka, unless it has a zookeeper section (then ZooKeeper mode on the last 3.x line)."""
        if not isinstance(data, dict):
            return data
        kafka = data.get("kafka", {})
        if not isinstance(kafka, dict):
            return data
        kafka = dict(kafka)
        mode = kafka.setdefault("metadata_mode", "zookeeper" if data.get("zookeeper") is not None else "kraft")
        kafka.setdefault("version", DEFAULT_ZOOKEEPER_MODE_VERSION if mode == "zookeeper" else DEFAULT_KRAFT_VERSION)
        return {**data, "kafka": kafka}

    # -- derived views used by later stages -------------------------------------------------
    @property
    def kraft(self) -> bool:
        return self.kafka.metadata_mode == "kraft"

    def zk_nodes(self) -> tuple[ZooKeeperNode, ...]:
        return self.zookeeper.nodes if self.zookeeper is not None else ()

    def hosts(self) -> list[str]:
        """Every distinct host address the spec manages, in first-mention order."""
        seen: dict[str, None] = {}
        for n in self.zk_nodes():
            seen.setdefault(n.host, None)
        for c in self.controllers:
            seen.setdefault(c.host, None)
        for b in self.brokers:
            seen.setdefault(b.host, None)
        return list(seen)

    def zookeeper_connect(self) -> str:
        if self.zookeeper is None:
            return ""
        return ",".join(f"{n.host}:{self.zookeeper.client_port}" for n in self.zookeeper.nodes)

    def voters(self) -> list[tuple[int, str]]:
        """KRaft voters (node id, host): the dedicated controllers and the combined brokers."""
        return [(c.id, c.host) for c in self.controllers] + [(b.id, b.host) for b in self.brokers if b.controller]

    def quorum_bootstrap(self) -> str:
        """controller.quorum.bootstrap.servers: every voter's controller listener."""
        port = self.kafka.controller_listener.port
        return ",".join(f"{host}:{port}" for _, host in self.voters())

    def controller_heap(self, controller: ControllerSpec) -> str:
        return controller.heap or self.kafka.controller_heap

    def bootstrap_brokers(self) -> str:
        port = self.kafka.listeners[0].port
        return ",".join(f"{b.host}:{port}" for b in self.brokers)

    def broker_heap(self, broker: BrokerSpec) -> str:
        return broker.heap or self.kafka.heap


# ----------------------------------------------------------------------------------------------
# MSK's default broker configuration (../shared/mission.md), filtered by what a version supports.

MSK_DEFAULTS: tuple[tuple[str, ConfigValue, str | None], ...] = (
    # key, value, capability needed (None = every version)
    ("offsets.topic.replication.factor", 3, None),
    ("transaction.state.log.replication.factor", 3, "transactions"),
    ("transaction.state.log.min.isr", 2, "transactions"),
    ("auto.create.topics.enable", False, None),
    ("default.replication.factor", 3, None),
    ("min.insync.replicas", 2, None),
    ("unclean.leader.election.enable", True, None),
    ("auto.leader.rebalance.enable", True, None),
    ("group.initial.rebalance.delay.ms", 3000, "transactions"),
    ("log.retention.hours", 168, None),
)

# Keys kafkaform sets from other spec fields; setting them under config would fight the spec.
MANAGED_BROKER_KEYS = {
    "broker.id": "brokers[].id",
    "node.id": "brokers[].id / controllers[].id",
    "process.roles": "brokers[] / controllers[] (and brokers[].controller)",
    "controller.quorum.voters": "controllers (kafkaform runs a dynamic quorum)",
    "controller.quorum.bootstrap.servers": "controllers",
    "controller.listener.names": "kafka.controller_listener",
    "metadata.log.dir": "controllers[].metadata_dir / brokers[].data_dirs",
    "zookeeper.metadata.migration.enable": "the ZooKeeper to KRaft migration (not supported yet)",
    "listeners": "kafka.listeners",
    "advertised.listeners": "kafka.listeners",
    "listener.security.protocol.map": "kafka.listeners",
    "log.dirs": "brokers[].data_dirs",
    "log.dir": "brokers[].data_dirs",
    "zookeeper.connect": "zookeeper.nodes",
    "broker.rack": "brokers[].rack",
}
MANAGED_ZK_KEYS = {
    "dataDir": "zookeeper.data_dir",
    "dataLogDir": "zookeeper.data_dir (a separate transaction log dir is not supported yet)",
    "clientPort": "zookeeper.client_port",
    "secureClientPort": "zookeeper.client_port (TLS-only with security.zookeeper_tls)",
    "secureClientPortAddress": "kafkaform (the client port listens on every address)",
    "serverCnxnFactory": "security.zookeeper_tls (Netty, for the TLS client port)",
    "client.portUnification": "security.zookeeper_tls (the client port is TLS-only; both only while it goes on)",
    "portUnification": "security.zookeeper_tls (the quorum port is TLS-only; both only while it goes on)",
    "authProvider.x509": "security.zookeeper_tls (clients' certificates checked against the cluster CA)",
    "sslQuorum": "security.zookeeper_tls",
    "ssl.clientAuth": "security.zookeeper_tls (clients show a certificate from the cluster CA)",
    "ssl.hostnameVerification": "security.zookeeper_tls",
    "ssl.quorum.hostnameVerification": "security.zookeeper_tls",
    "myid": "zookeeper.nodes[].myid",
    "dynamicConfigFile": "kafkaform (ZooKeeper's membership file)",
    "reconfigEnabled": "kafkaform (membership changes use dynamic reconfiguration)",
    "standaloneEnabled": "kafkaform",
    "skipACL": "kafkaform (ZooKeeper's reconfiguration needs it on a cluster without a security section)",
    "authProvider.sasl": "the security section (brokers log in to ZooKeeper)",
}
ZK_MEMBERSHIP_KEY_RE = re.compile(r"(server|group|weight)\.[0-9]+")
# The key and trust stores security.zookeeper_tls sets (client port and quorum).
ZK_TLS_STORE_KEY_RE = re.compile(r"ssl\.(quorum\.)?(keyStore|trustStore)\..+")


def broker_config(spec: ClusterSpec) -> dict[str, ConfigValue]:
    """MSK defaults for the version, the ACL authorizer, then the spec's overrides on top."""
    caps = versions.capabilities(spec.kafka.version)
    merged: dict[str, ConfigValue] = {k: v for k, v, cap in MSK_DEFAULTS if cap is None or cap in caps}
    merged["authorizer.class.name"] = versions.acl_authorizer_class(spec.kafka.version, spec.kafka.metadata_mode)
    # Without authentication every client is ANONYMOUS: keep resources without ACLs open, as MSK
    # does for unauthenticated clusters, so turning the authorizer on does not lock everyone out.
    # Once clients authenticate (security, without allow_anonymous) only ACLs let anyone in.
    merged["allow.everyone.if.no.acl.found"] = spec.security is None or spec.security.allow_anonymous
    supers = principals.super_users(spec)
    if supers:
        merged["super.users"] = ";".join(supers)
    merged.update(spec.kafka.config)
    return merged


def is_sensitive(key: str) -> bool:
    """A config whose value is never shown: Kafka's PASSWORD-typed configs (also under a listener
    prefix, `listener.name.<l>.<key>`), and anything whose name says secret (ZooKeeper's too)."""
    if SENSITIVE_KEY_RE.search(key):
        return True
    passwords = versions.password_configs()
    return key in passwords or any(key.endswith("." + p) for p in passwords)


# ----------------------------------------------------------------------------------------------
# Errors


class SpecIssue(BaseModel):
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(Exception):
    """A spec that cannot be used; carries every issue found, each naming its field path."""

    def __init__(self, issues: list[SpecIssue], source: str = "spec") -> None:
        self.issues = issues
        self.source = source
        super().__init__("\n".join(str(i) for i in issues))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _from_validation_error(err: ValidationError) -> list[SpecIssue]:
    issues = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        issues.append(SpecIssue(path=_loc(loc), message=msg))
    return issues


def _as_int(v: ConfigValue) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return None


def _unique(add: Any, items: tuple[Any, ...], path: str, attr: str, message: str) -> dict[Any, int]:
    """Report items whose `attr` repeats an earlier one; return value -> first index."""
    first: dict[Any, int] = {}
    for i, item in enumerate(items):
        v = getattr(item, attr)
        if v in first:
            add(f"{path}[{i}].{attr}", message.format(v=v, other=f"{path}[{first[v]}]"))
        first.setdefault(v, i)
    return first


def semantic_issues(spec: ClusterSpec) -> list[SpecIssue]:
    """Checks that need the whole spec. Pure; returns every problem rather than the first."""
    issues: list[SpecIssue] = []
    add = lambda path, msg: issues.append(SpecIssue(path=path, message=msg))  # noqa: E731
    version = spec.kafka.version
    caps = versions.capabilities(version)

    # Version and metadata mode.
    table = versions.config_table(version)
    if table is None:
        add("kafka.version", f"{version} is not in kafkaform's version table "
            f"(known: {', '.join(versions.known_versions()) or 'none'})")
    if spec.kafka.metadata_mode == "zookeeper" and "zookeeper_mode" not in caps:
        add("kafka.metadata_mode", f"Kafka {version} has no ZooKeeper mode (removed in 4.0); use kraft")
    if spec.kraft:
        _kraft_issues(spec, add, caps)
    else:
        if spec.zookeeper is None:
            add("zookeeper", "ZooKeeper mode needs a zookeeper section (nodes); or use metadata_mode: kraft")
        if spec.controllers:
            add("controllers", "controllers are KRaft's; in ZooKeeper mode the ZooKeeper ensemble is the quorum")
        for i, b in enumerate(spec.brokers):
            if b.controller:
                add(f"brokers[{i}].controller", "combined nodes are KRaft's (kafka.metadata_mode: kraft)")
        if spec.kafka.second_controller_listener is not None:
            add("kafka.second_controller_listener", "controller listeners are KRaft's (kafka.metadata_mode: kraft)")

    # Brokers.
    if not spec.brokers:
        add("brokers", "at least one broker is required")
    _unique(add, spec.brokers, "brokers", "id", "duplicate broker id {v} (also {other})")
    seen_hosts = _unique(add, spec.brokers, "brokers", "host", "host {v} already runs {other}")
    for i, b in enumerate(spec.brokers):
        if not b.data_dirs:
            add(f"brokers[{i}].data_dirs", "at least one data dir is required")
        if len(set(b.data_dirs)) != len(b.data_dirs):
            add(f"brokers[{i}].data_dirs", "lists the same directory twice")
        if b.rack is not None and "rack_awareness" not in caps:
            add(f"brokers[{i}].rack", f"Kafka {version} has no rack awareness")

    # Racks: MSK spreads brokers evenly over zones; an uneven count needs an explicit override.
    racks = [b.rack for b in spec.brokers]
    if any(r is not None for r in racks):
        if any(r is None for r in racks):
            add("brokers", "either every broker has a rack or none has")
        else:
            counts: dict[str, int] = {}
            for r in racks:
                if r is not None:  # always, in this branch
                    counts[r] = counts.get(r, 0) + 1
            if len(set(counts.values())) > 1 and not spec.allow_uneven_racks:
                spread = ", ".join(f"{r}={n}" for r, n in sorted(counts.items()))
                add("brokers", f"brokers are not spread evenly across racks ({spread}); "
                    "even out the racks or set allow_uneven_racks: true")

    # Listeners.
    ports: dict[int, str] = {}
    names: set[str] = set()
    for i, lst in enumerate(spec.kafka.listeners):
        if lst.port in ports:
            add(f"kafka.listeners[{i}].port", f"port {lst.port} is already used by listener {ports[lst.port]}")
        ports[lst.port] = lst.name
        if lst.name in names:
            add(f"kafka.listeners[{i}].name", f"duplicate listener name {lst.name}")
        names.add(lst.name)
    if not spec.kafka.listeners:
        add("kafka.listeners", "at least one listener is required")
    security_issues(spec, add)

    _dir_issues(spec, add)
    if spec.zookeeper is not None and not spec.kraft:
        _zookeeper_issues(spec, add, seen_hosts)
    _config_issues(spec, add, table, version)
    return issues


def _zookeeper_issues(spec: ClusterSpec, add: Any, seen_hosts: dict[Any, int]) -> None:
    zk = spec.zookeeper
    assert zk is not None
    n = len(zk.nodes)
    if n == 0:
        add("zookeeper.nodes", "at least one ZooKeeper node is required")
    elif n % 2 == 0:
        add("zookeeper.nodes", f"an ensemble of {n} nodes tolerates no more failures than {n - 1}; use an odd size")
    _unique(add, zk.nodes, "zookeeper.nodes", "myid", "duplicate myid {v} (also {other})")
    zk_hosts = _unique(add, zk.nodes, "zookeeper.nodes", "host", "host {v} already runs {other}")
    zk_ports = {zk.client_port: "client_port", zk.peer_port: "peer_port", zk.election_port: "election_port"}
    if len(zk_ports) != 3:
        add("zookeeper", "client_port, peer_port and election_port must differ")
    shared = set(zk_hosts) & set(seen_hosts)
    if shared:
        for i, lst in enumerate(spec.kafka.listeners):
            if lst.port in zk_ports:
                on = ", ".join(sorted(shared))
                add(f"kafka.listeners[{i}].port",
                    f"port {lst.port} is ZooKeeper's {zk_ports[lst.port]} on shared host(s) {on}")
    for key in zk.config:
        if key in MANAGED_ZK_KEYS:
            add(f"zookeeper.config.{key}", f"set by {MANAGED_ZK_KEYS[key]}, not under config")
        elif ZK_TLS_STORE_KEY_RE.fullmatch(key):
            add(f"zookeeper.config.{key}", "set by security.zookeeper_tls (PEM files from the cluster CA), "
                "not under config")
        elif ZK_MEMBERSHIP_KEY_RE.fullmatch(key):
            add(f"zookeeper.config.{key}", "ensemble membership is set by zookeeper.nodes, not under config")


def _kraft_issues(spec: ClusterSpec, add: Any, caps: frozenset[str]) -> None:
    """KRaft: controllers (dedicated or combined), one node.id namespace, a dynamic quorum."""
    version = spec.kafka.version
    if "kraft_dynamic_quorum" not in caps:
        add("kafka.version", f"kafkaform builds KRaft clusters with a dynamic quorum (KIP-853), which needs Kafka "
            f"3.9 or later; {version} is older")
    if spec.zookeeper is not None:
        add("zookeeper", "a KRaft cluster has no ZooKeeper; remove the zookeeper section "
            "(or set kafka.metadata_mode: zookeeper on Kafka 3.x)")
    combined = [i for i, b in enumerate(spec.brokers) if b.controller]
    voters = len(spec.controllers) + len(combined)
    if voters == 0:
        add("controllers", "a KRaft cluster needs controllers: list them under controllers, or mark brokers "
            "controller: true (combined nodes)")
    elif voters % 2 == 0:
        add("controllers", f"a quorum of {voters} controllers tolerates no more failures than {voters - 1}; "
            "use an odd number")
    if spec.controllers and combined:
        add(f"brokers[{combined[0]}].controller", "use either dedicated controllers or combined brokers, not both")
    _unique(add, spec.controllers, "controllers", "host", "host {v} already runs {other}")
    ctrl_ids = _unique(add, spec.controllers, "controllers", "id", "duplicate controller id {v} (also {other})")
    for i, b in enumerate(spec.brokers):
        if b.id in ctrl_ids:
            add(f"brokers[{i}].id", f"node id {b.id} is also controllers[{ctrl_ids[b.id]}]; brokers and "
                "controllers share one node.id space")
    ctrl, second = spec.kafka.controller_listener, spec.kafka.second_controller_listener
    broker_names = {lst.name for lst in spec.kafka.listeners}
    if ctrl.name in broker_names:
        add("kafka.controller_listener.name", f"{ctrl.name} is also a broker listener's name")
    if second is not None:
        if second.name in broker_names or second.name == ctrl.name:
            add("kafka.second_controller_listener.name", f"{second.name} is also the name of another listener")
        if second.port == ctrl.port:
            add("kafka.second_controller_listener.port", f"port {second.port} is the controller listener's")
    broker_hosts = {b.host for b in spec.brokers}
    shared = combined or any(c.host in broker_hosts for c in spec.controllers)
    for i, lst in enumerate(spec.kafka.listeners):
        for c in spec.kafka.controller_listeners:
            if lst.port == c.port and shared:
                add(f"kafka.listeners[{i}].port", f"port {lst.port} is controller listener {c.name}'s on the "
                    "same host(s)")


def _config_issues(spec: ClusterSpec, add: Any, table: Any, version: str) -> None:
    # Broker (and controller) config keys and values.
    for section, keys in (("config", spec.kafka.config), ("controller_config", spec.kafka.controller_config)):
        for key in keys:
            path = f"kafka.{section}.{key}"
            if key in MANAGED_BROKER_KEYS:
                add(path, f"set by {MANAGED_BROKER_KEYS[key]}, not under {section}")
            elif spec.security is not None and (key in MANAGED_SECURITY_KEYS or _listener_security_key(key)):
                add(path, f"set by the security section and the listeners' authentication, not under {section}")
            elif table is not None and key not in table.broker_configs:
                add(path, f"Kafka {version} has no config named {key!r}")
    if spec.kafka.controller_config and not spec.controllers:
        add("kafka.controller_config", "only dedicated KRaft controllers (controllers) take controller_config")

    merged = broker_config(spec)
    nbrokers = len(spec.brokers)
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor"):
        if key not in merged:
            continue
        rf = _as_int(merged[key])
        where = f"kafka.config.{key}" if key in spec.kafka.config else f"kafka.config.{key} (MSK default)"
        if rf is None or rf < 1:
            add(where, f"must be a positive integer, got {merged[key]!r}")
        elif nbrokers and rf > nbrokers:
            add(where, f"replication factor {rf} needs at least {rf} brokers, the spec has {nbrokers}")
    min_isr = _as_int(merged.get("min.insync.replicas", 1))
    drf = _as_int(merged.get("default.replication.factor", 1))
    if min_isr is None or min_isr < 1:
        add("kafka.config.min.insync.replicas", f"must be a positive integer, got {merged['min.insync.replicas']!r}")
    elif drf is not None and min_isr >= drf and not (drf == 1 and min_isr == 1 and nbrokers == 1):
        add("kafka.config.min.insync.replicas",
            f"min.insync.replicas {min_isr} >= default.replication.factor {drf}: "
            "one broker down would stop acks=all writes")
    txn_rf = _as_int(merged.get("transaction.state.log.replication.factor", 0)) or 0
    txn_isr = _as_int(merged.get("transaction.state.log.min.isr", 0)) or 0
    if txn_rf and txn_isr > txn_rf:
        add("kafka.config.transaction.state.log.min.isr",
            f"{txn_isr} is larger than transaction.state.log.replication.factor {txn_rf}")


def _listener_security_key(key: str) -> bool:
    """listener.name.<l>.ssl.client.auth / .<mechanism>.sasl.jaas.config: set per listener by kafkaform."""
    return key.startswith("listener.name.") and (key.endswith(".ssl.client.auth") or key.endswith(".sasl.jaas.config")
                                                  or ".ssl.keystore." in key or ".ssl.truststore." in key)


def _dir_issues(spec: ClusterSpec, add: Any) -> None:
    """No directory shared between services, nested in another, or inside kafkaform's own dirs:
    each is chowned to its service and deleted with it."""
    from reconciler.files import FIXED_DIRS  # the dirs kafkaform itself owns on every host

    common: list[tuple[str, str]] = [("kafka.install_dir", spec.kafka.install_dir)]
    if spec.zookeeper is not None:
        common += [("zookeeper.install_dir", spec.zookeeper.install_dir),
                   ("zookeeper.data_dir", spec.zookeeper.data_dir)]
    fixed = [(f"kafkaform's {d}", d) for d in FIXED_DIRS]
    zk_hosts = {n.host for n in spec.zk_nodes()}
    reported: set[tuple[str, str]] = set()

    def check(dirs: list[tuple[str, str]]) -> None:
        for i, (field_a, a) in enumerate(dirs):
            for field_b, b in dirs[:i] + fixed:
                if field_a.startswith("kafkaform's") or (field_a, field_b) in reported:
                    continue
                if fields.nested(a, b):
                    reported.add((field_a, field_b))
                    how = "is the same directory as" if a == b else (
                        "is inside" if a.startswith(b.rstrip("/") + "/") else "contains")
                    add(field_a, f"{a} {how} {field_b} ({b}); every service needs directories of its own")

    check(common)
    by_host = {b.host: i for i, b in enumerate(spec.brokers)}
    for i, c in enumerate(spec.controllers):
        own = [(f"controllers[{i}].metadata_dir", c.metadata_dir)]
        j = by_host.get(c.host)
        if j is not None:  # beside a broker: its data dirs are on the same host
            own += [(f"brokers[{j}].data_dirs[{k}]", d) for k, d in enumerate(spec.brokers[j].data_dirs)]
        check(common[:2] + own)
    for i, b in enumerate(spec.brokers):
        first = {d: j for j, d in reversed(list(enumerate(b.data_dirs)))}  # a repeat is reported already
        own = [(f"brokers[{i}].data_dirs[{j}]", d) for d, j in sorted(first.items(), key=lambda x: x[1])]
        shared = common if b.host in zk_hosts else common[:2]
        check(shared + own)  # (a controller beside it was checked against its dirs above)


def parse_spec(data: Any, source: str = "spec") -> ClusterSpec:
    """Validate already-loaded YAML data. Raises SpecError listing every issue."""
    if not isinstance(data, dict):
        raise SpecError([SpecIssue(path="", message="the spec must be a YAML mapping")], source)
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_from_validation_error(e), source) from None
    issues = semantic_issues(spec)
    if issues:
        raise SpecError(issues, source)
    return spec


MAX_SPEC_BYTES = 1 * 2**20
MAX_SPEC_NODES = 200_000  # YAML nodes after aliases are expanded ("billion laughs" stops here)


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # (libyaml when built)
    """SafeLoader that refuses duplicate keys (YAML keeps the last one silently) and alias bombs."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark) from None
            if key in seen:
                raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(f"key {key!r} appears twice (lines {first} and {again}); YAML would silently keep "
                         "the second")


def _count_nodes(node: yaml.Node, limit: int) -> int:
    """Nodes with aliases expanded, stopping as soon as `limit` is passed."""
    total, stack = 0, [node]
    while stack:
        n = stack.pop()
        total += 1
        if total > limit:
            return total
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
    return total


def _read_spec_text(p: Path) -> str:
    def fail(message: str) -> SpecError:
        return SpecError([SpecIssue(path="", message=message)], str(p))

    try:
        st = p.stat()
    except OSError as e:
        raise fail(f"cannot read {p}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise fail(f"cannot read {p}: Is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"{p} is not a regular file")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise fail(f"cannot read {p}: {e.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise fail(f"{p} is larger than {MAX_SPEC_BYTES // 2**20} MiB; a cluster spec is a small YAML file")
    if b"\x00" in raw:
        raise fail(f"{p} is a binary file (it contains NUL bytes), not a YAML spec")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"{p} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def load_spec(path: str | Path) -> ClusterSpec:
    p = Path(path)
    text = _read_spec_text(p)
    try:
        loader = _SpecLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None and _count_nodes(node, MAX_SPEC_NODES) > MAX_SPEC_NODES:
                raise SpecError([SpecIssue(path="", message=(
                    f"the spec expands to more than {MAX_SPEC_NODES} YAML nodes (through aliases?); refused"))],
                    str(p))
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except _DuplicateKey as e:
        raise SpecError([SpecIssue(path="", message=str(e))], str(p)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([SpecIssue(path="", message=f"not valid YAML{where}: {getattr(e, 'problem', None) or e}")],
                        str(p)) from None
    except RecursionError:
        raise SpecError([SpecIssue(path="", message="the spec is nested too deeply")], str(p)) from None
    return parse_spec(data, str(p))


def check_against_facts(spec: ClusterSpec, mem_by_host: dict[str, int | None]) -> list[SpecIssue]:
    """Checks that need observed facts: JVM heaps a host cannot hold (a broker plus the ZooKeeper
    server or KRaft controller beside it)."""
    issues: list[SpecIssue] = []
    zk_hosts = {n.host for n in spec.zk_nodes()}
    controllers = {c.host: c for c in spec.controllers}
    for i, b in enumerate(spec.brokers):
        mem = mem_by_host.get(b.host)
        need = heap_bytes(spec.broker_heap(b))
        beside = ""
        if b.host in zk_hosts and spec.zookeeper is not None:
            need += heap_bytes(spec.zookeeper.heap)
            beside = f" (+ ZooKeeper {spec.zookeeper.heap})"
        elif b.host in controllers:
            heap = spec.controller_heap(controllers[b.host])
            need += heap_bytes(heap)
            beside = f" (+ controller {heap})"
        if mem and need > mem:
            field = f"brokers[{i}].heap" if b.heap else "kafka.heap"
            issues.append(SpecIssue(path=field, message=(
                f"heap {spec.broker_heap(b)}{beside} does not fit in {b.host}'s {mem // 2**20} MiB of memory")))
    return issues


def heap_bytes(heap: str) -> int:
    unit = heap[-1].lower()
    return int(heap[:-1]) * {"k": 2**10, "m": 2**20, "g": 2**30}[unit]
