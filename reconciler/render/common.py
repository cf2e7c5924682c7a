"""What every rendered service is made of: files with their content and hash, dirs, owner
markers, and the fixed paths kafkaform owns on a host. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from reconciler.render import formats
from reconciler.spec import ClusterSpec, is_sensitive

HEADER = "# Managed by kafkaform (cluster {name}). Edits here show up as drift and are overwritten by apply.\n"

KAFKA_ETC = "/etc/kafka"
ZK_ETC = "/etc/zookeeper"
KAFKA_LOGS = "/var/log/kafka"
ZK_LOGS = "/var/log/zookeeper"
KAFKA_UNIT = "/etc/systemd/system/kafka.service"
ZK_UNIT = "/etc/systemd/system/zookeeper.service"
SERVER_PROPERTIES = f"{KAFKA_ETC}/server.properties"
ZOO_CFG = f"{ZK_ETC}/zoo.cfg"
# ZooKeeper 3.5+ owns its membership (dynamic reconfiguration): it rewrites the config file it was
# started with and writes zoo.cfg.dynamic.<version> files next to it. So kafkaform's zoo.cfg holds
# the static settings only and is never handed to ZooKeeper itself: ExecStartPre composes a runtime
# copy in the data dir from it plus ZooKeeper's current membership pointer. ZK_SEED is the first
# membership of a new server, written once and never compared (ZooKeeper's state after that).
ZK_SEED = f"{ZK_ETC}/zoo.cfg.dynamic"
ZK_RUNTIME_SCRIPT = f"{ZK_ETC}/runtime-config.sh"
# A dedicated KRaft controller is a service of its own beside (or instead of) a broker.
CONTROLLER_ETC = "/etc/kafka-controller"
CONTROLLER_LOGS = "/var/log/kafka-controller"
CONTROLLER_UNIT = "/etc/systemd/system/kafka-controller.service"
CONTROLLER_PROPERTIES = f"{CONTROLLER_ETC}/controller.properties"
# Written by Kafka's storage tool into every KRaft log/metadata dir it formats (observed, never rendered).
META_PROPERTIES = "meta.properties"
# Directories kafkaform itself owns on every host (not from the spec).
FIXED_DIRS = (KAFKA_ETC, ZK_ETC, KAFKA_LOGS, ZK_LOGS, CONTROLLER_ETC, CONTROLLER_LOGS)

# Every service kafkaform manages on a host, in start order, and what it is called in plans.
SERVICES = ("zookeeper", "kafka-controller", "kafka")
ADDRESS_PREFIX = {"zookeeper": "zookeeper", "kafka-controller": "controller", "kafka": "broker"}


@dataclass(frozen=True)
class ServicePaths:
    unit: str
    etc: str
    logs: str
    config: str  # the file holding the node's identity (broker.id / node.id / dataDir)


SERVICE_PATHS = {
    "kafka": ServicePaths(KAFKA_UNIT, KAFKA_ETC, KAFKA_LOGS, SERVER_PROPERTIES),
    "kafka-controller": ServicePaths(CONTROLLER_UNIT, CONTROLLER_ETC, CONTROLLER_LOGS, CONTROLLER_PROPERTIES),
    "zookeeper": ServicePaths(ZK_UNIT, ZK_ETC, ZK_LOGS, ZOO_CFG),
}


def artifact_name(service: str) -> str:
    """The build a service runs: a KRaft controller runs Kafka's."""
    return "zookeeper" if service == "zookeeper" else "kafka"


def address(service: str, key: str) -> str:
    """How plans name a service's resource: broker.1, controller.101, zookeeper.2."""
    return f"{ADDRESS_PREFIX[service]}.{key}"
# Written into every data dir kafkaform creates: a removal deletes a data dir only where this
# proves kafkaform made it (never a directory a spec or a hand-edited config merely names).
OWNER_MARKER = ".kafkaform-owner"


def owner_marker(dir_path: str) -> str:
    return f"{dir_path}/{OWNER_MARKER}"


@dataclass(frozen=True)
class DesiredFile:
    path: str
    content: str
    mode: str = "0644"
    owner: str = "root"
    restart_on_change: bool = True  # a change needs the service restarted to take effect

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(frozen=True)
class DesiredDir:
    path: str
    owner: str
    mode: str = "0755"


@dataclass(frozen=True)
class StorageFormat:
    """A KRaft node's dirs that Kafka's storage tool formats once, before the node first starts
    (by the same build that runs it: a newer tool's format is not readable by an older broker)."""

    config_path: str
    dirs: tuple[str, ...]
    voter: bool  # one of the initial controllers (formatted with --initial-controllers)


@dataclass(frozen=True)
class ServiceDesired:
    """What one service (kafka, kafka-controller or zookeeper) on one host should look like."""

    service: str  # "kafka" | "kafka-controller" | "zookeeper"
    host: str
    key: str  # resource key shown to people: node id (broker / controller) or zookeeper myid
    version: str
    files: tuple[DesiredFile, ...]
    dirs: tuple[DesiredDir, ...]
    port: int
    attributes: dict[str, str] = field(default_factory=dict)  # what the plan shows on create
    role: str = ""  # broker | controller | combined | zookeeper
    user: str = ""  # the service account (default: the service name)
    storage: StorageFormat | None = None  # KRaft: formatted before first start

    def file(self, path: str) -> DesiredFile:
        return next(f for f in self.files if f.path == path)

    @property
    def address(self) -> str:
        return address(self.service, self.key)

    @property
    def account(self) -> str:
        return self.user or self.service

    @property
    def config_path(self) -> str:
        return SERVICE_PATHS[self.service].config


def format_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, formats.Multiline):
        return v
    return str(v)


def _properties(name: str, items: list[tuple[str, object]]) -> str:
    lines = [HEADER.format(name=name)]
    lines += [formats.properties_line(k, format_value(v)) for k, v in items]
    return "".join(lines)


def _marker_file(spec: ClusterSpec, service: str, dir_path: str) -> DesiredFile:
    return DesiredFile(owner_marker(dir_path), f"kafkaform cluster {spec.name}: a {service} directory\n",
                       "0644", "root", restart_on_change=False)


def redact_properties(props: dict[str, str]) -> dict[str, str]:
    return {k: ("(sensitive)" if is_sensitive(k) else v) for k, v in props.items()}


