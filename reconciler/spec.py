"""The declarative cluster spec (YAML -> frozen pydantic models) and its validation.

Validation happens in two layers, both pure: pydantic checks shapes and types (unknown fields are
errors, so typos never pass silently); `semantic_issues()` checks what only the whole spec can
tell (duplicate ids, ensemble size, replication factors against broker count, config keys the
chosen Kafka version does not know). Every problem names its field path.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from reconciler import versions

HEAP_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]$")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
SENSITIVE_KEY_RE = re.compile(r"password|secret|jaas|sasl\.jaas|keystore\.key|credential", re.I)

ConfigValue = str | int | float | bool


def _check_config_value(v: Any) -> Any:
    # Checked before the union so a list or null gets one clear issue at the key's path, instead of
    # one issue per union member at paths like `kafka.config.<key>.str`.
    if v is None or not isinstance(v, str | int | float | bool):
        got = "null" if v is None else type(v).__name__
        raise ValueError(f"config values must be a string, number or boolean, got {got}")
    return v


ConfigEntry = Annotated[ConfigValue, BeforeValidator(_check_config_value)]


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
        if self.url and not self.url.startswith(("https://", "http://", "file://")):
            raise ValueError("url must start with https://, http:// or file://")
        return self


def _check_heap(v: str | None) -> str | None:
    if v is not None and not HEAP_RE.match(v):
        raise ValueError(f"{v!r} is not a JVM heap size like 512m or 2g")
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
    if not HOST_RE.match(v):
        raise ValueError(f"{v!r} is not an IP address or host name")
    if v.rsplit(".", 1)[-1].isdigit():
        # A host name never ends in an all-numeric label (RFC 1123 2.1); the resolver would read
        # "10.213.0.311" or "300" as some other IPv4 address instead of failing.
        raise ValueError(f"{v!r} is not a valid IP address (and a host name cannot end in a number)")
    return v


Port = Annotated[int, Field(ge=1, le=65535)]
Heap = Annotated[str, AfterValidator(_check_heap)]
Host = Annotated[str, AfterValidator(_check_host)]


class Listener(_Model):
    name: str = "PLAINTEXT"
    port: Port = 9092
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", v):
            raise ValueError("listener names are upper case letters, digits and _")
        return v


class ReassignmentSpec(_Model):
    """How partition data moves when brokers are added or removed (and for `rebalance`)."""

    throttle_mib_per_s: Annotated[float, Field(gt=0, le=10_000)] = 50.0  # replication throttle per broker
    max_partitions_per_broker: Annotated[int, Field(ge=1, le=1000)] = 4  # receiving at once, per broker
    timeout_s: Annotated[float, Field(gt=0)] = 6 * 3600.0


class KafkaSpec(_Model):
    version: str = "3.9.1"
    artifact: Artifact = Artifact(maven=True)
    heap: Heap = "512m"
    jvm_opts: tuple[str, ...] = ()
    listeners: tuple[Listener, ...] = (Listener(),)
    config: dict[str, ConfigEntry] = Field(default_factory=dict)
    metadata_mode: Literal["zookeeper", "kraft"] = "zookeeper"
    install_dir: str = "/opt/kafka"
    reassignment: ReassignmentSpec = ReassignmentSpec()

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        versions.parse_version(v)
        return v


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
    data_dir: str = "/var/lib/zookeeper"
    config: dict[str, ConfigEntry] = Field(default_factory=dict)
    nodes: tuple[ZooKeeperNode, ...]
    install_dir: str = "/opt/zookeeper"

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        try:
            versions.parse_version(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a ZooKeeper version like 3.8.4") from None
        return v


class BrokerSpec(_Model):
    id: Annotated[int, Field(ge=0, le=2**31 - 1)]
    host: Host
    rack: str | None = None
    data_dirs: tuple[str, ...] = ("/var/lib/kafka/data",)
    heap: Heap | None = None  # overrides kafka.heap for this broker


class SshSpec(_Model):
    user: str = "root"
    port: Port = 22
    key_file: str | None = None
    known_hosts: Literal["strict", "accept-new", "ignore"] = "strict"
    known_hosts_file: str | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = 5.0


class ClusterSpec(_Model):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    kafka: KafkaSpec = KafkaSpec()
    zookeeper: ZooKeeperSpec
    brokers: tuple[BrokerSpec, ...]
    ssh: SshSpec = SshSpec()
    allow_uneven_racks: bool = False
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("cluster names start with a letter and hold only letters, digits and '-'")
        return v

    # -- derived views used by later stages -------------------------------------------------
    def hosts(self) -> list[str]:
        """Every distinct host address the spec manages, in first-mention order."""
        seen: dict[str, None] = {}
        for n in self.zookeeper.nodes:
            seen.setdefault(n.host, None)
        for b in self.brokers:
            seen.setdefault(b.host, None)
        return list(seen)

    def zookeeper_connect(self) -> str:
        return ",".join(f"{n.host}:{self.zookeeper.client_port}" for n in self.zookeeper.nodes)

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
    "clientPort": "zookeeper.client_port",
    "myid": "zookeeper.nodes[].myid",
}


def broker_config(spec: ClusterSpec) -> dict[str, ConfigValue]:
    """MSK defaults for the version, the ACL authorizer, then the spec's overrides on top."""
    caps = versions.capabilities(spec.kafka.version)
    merged: dict[str, ConfigValue] = {k: v for k, v, cap in MSK_DEFAULTS if cap is None or cap in caps}
    merged["authorizer.class.name"] = versions.acl_authorizer_class(spec.kafka.version)
    # Without authentication every client is ANONYMOUS: keep resources without ACLs open, as MSK
    # does for unauthenticated clusters, so turning the authorizer on does not lock everyone out.
    merged["allow.everyone.if.no.acl.found"] = True
    merged.update(spec.kafka.config)
    return merged


def is_sensitive(key: str) -> bool:
    return bool(SENSITIVE_KEY_RE.search(key))


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
    if spec.kafka.metadata_mode == "kraft":
        add("kafka.metadata_mode", "kraft is not supported by kafkaform yet; use zookeeper with Kafka 3.x")

    # Brokers.
    if not spec.brokers:
        add("brokers", "at least one broker is required")
    _unique(add, spec.brokers, "brokers", "id", "duplicate broker id {v} (also {other})")
    seen_hosts = _unique(add, spec.brokers, "brokers", "host", "host {v} already runs {other}")
    for i, b in enumerate(spec.brokers):
        if not b.data_dirs:
            add(f"brokers[{i}].data_dirs", "at least one data dir is required")
        for j, d in enumerate(b.data_dirs):
            if not d.startswith("/"):
                add(f"brokers[{i}].data_dirs[{j}]", f"{d!r} is not an absolute path")
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
                counts[r] = counts.get(r, 0) + 1  # type: ignore[index]
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
        if lst.protocol != "PLAINTEXT":
            add(f"kafka.listeners[{i}].protocol", f"{lst.protocol} needs TLS/SASL material, not supported yet")
    if not spec.kafka.listeners:
        add("kafka.listeners", "at least one listener is required")

    # ZooKeeper ensemble.
    zk = spec.zookeeper
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
    if not zk.data_dir.startswith("/"):
        add("zookeeper.data_dir", f"{zk.data_dir!r} is not an absolute path")
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

    # Broker config keys and values.
    for key, value in spec.kafka.config.items():
        path = f"kafka.config.{key}"
        if key in MANAGED_BROKER_KEYS:
            add(path, f"set by {MANAGED_BROKER_KEYS[key]}, not under config")
        elif table is not None and key not in table.broker_configs:
            add(path, f"Kafka {version} has no broker config named {key!r}")
        if isinstance(value, str) and "\n" in value:
            add(path, "values cannot contain line breaks")

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
    return issues


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


def load_spec(path: str | Path) -> ClusterSpec:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError([SpecIssue(path="", message=f"cannot read {p}: {e.strerror}")], str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([SpecIssue(path="", message=f"not valid YAML{where}: {getattr(e, 'problem', e)}")],
                        str(p)) from None
    return parse_spec(data, str(p))


def check_against_facts(spec: ClusterSpec, mem_by_host: dict[str, int | None]) -> list[SpecIssue]:
    """Checks that need observed facts: a JVM heap the host cannot hold."""
    issues: list[SpecIssue] = []
    for i, b in enumerate(spec.brokers):
        mem = mem_by_host.get(b.host)
        need = heap_bytes(spec.broker_heap(b))
        zk_need = heap_bytes(spec.zookeeper.heap) if b.host in {n.host for n in spec.zookeeper.nodes} else 0
        if mem and need + zk_need > mem:
            field = f"brokers[{i}].heap" if b.heap else "kafka.heap"
            issues.append(SpecIssue(path=field, message=(
                f"heap {spec.broker_heap(b)} (+ ZooKeeper {spec.zookeeper.heap}) does not fit in "
                f"{b.host}'s {mem // 2**20} MiB of memory" if zk_need else
                f"heap {spec.broker_heap(b)} does not fit in {b.host}'s {mem // 2**20} MiB of memory")))
    return issues


def heap_bytes(heap: str) -> int:
    unit = heap[-1].lower()
    return int(heap[:-1]) * {"k": 2**10, "m": 2**20, "g": 2**30}[unit]
