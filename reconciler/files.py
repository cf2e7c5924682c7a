"""Desired state of each host, computed from the spec: every managed file's exact content.

Pure functions. Playbooks write these contents verbatim, and observe reads the same paths back,
so drift detection is an exact hash comparison and the plan can show which keys differ. Spec
values reach the text only through the escaping rules of `reconciler.render.formats`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from reconciler.render import formats
from reconciler.render.formats import parse_properties  # noqa: F401  (the reader for these files)
from reconciler.spec import BrokerSpec, ClusterSpec, ZooKeeperNode, broker_config, is_sensitive

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
# Directories kafkaform itself owns on every host (not from the spec).
FIXED_DIRS = (KAFKA_ETC, ZK_ETC, KAFKA_LOGS, ZK_LOGS)
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
class ServiceDesired:
    """What one service (kafka or zookeeper) on one host should look like."""

    service: str  # "kafka" | "zookeeper"
    host: str
    key: str  # resource key shown to people: broker id or zookeeper myid
    version: str
    files: tuple[DesiredFile, ...]
    dirs: tuple[DesiredDir, ...]
    port: int
    attributes: dict[str, str] = field(default_factory=dict)  # what the plan shows on create

    def file(self, path: str) -> DesiredFile:
        return next(f for f in self.files if f.path == path)


def format_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
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


# --- Kafka -------------------------------------------------------------------------------------


def server_properties(spec: ClusterSpec, broker: BrokerSpec, ibp_pin: str | None = None) -> str:
    """The broker's server.properties. `ibp_pin` holds inter.broker.protocol.version at the old
    release during the first roll of an upgrade (brokers on old and new binaries must keep
    talking the old protocol until all run the new one)."""
    listeners = ",".join(f"{lst.name}://{broker.host}:{lst.port}" for lst in spec.kafka.listeners)
    managed: list[tuple[str, object]] = [
        ("broker.id", broker.id),
        ("listeners", listeners),
        ("advertised.listeners", listeners),
        ("listener.security.protocol.map", ",".join(f"{lst.name}:{lst.protocol}" for lst in spec.kafka.listeners)),
        ("inter.broker.listener.name", spec.kafka.listeners[0].name),
        ("log.dirs", ",".join(broker.data_dirs)),
        ("zookeeper.connect", spec.zookeeper_connect()),
    ]
    if broker.rack is not None:
        managed.append(("broker.rack", broker.rack))
    merged = broker_config(spec)
    if ibp_pin is not None:
        merged.setdefault("inter.broker.protocol.version", ibp_pin)
    return _properties(spec.name, managed + sorted(merged.items()))


KAFKA_LOG4J = """\
log4j.rootLogger=INFO, kafkaAppender
log4j.appender.kafkaAppender=org.apache.log4j.RollingFileAppender
log4j.appender.kafkaAppender.File=${kafka.logs.dir}/server.log
log4j.appender.kafkaAppender.MaxFileSize=50MB
log4j.appender.kafkaAppender.MaxBackupIndex=5
log4j.appender.kafkaAppender.layout=org.apache.log4j.PatternLayout
log4j.appender.kafkaAppender.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.controllerAppender=org.apache.log4j.RollingFileAppender
log4j.appender.controllerAppender.File=${kafka.logs.dir}/controller.log
log4j.appender.controllerAppender.MaxFileSize=20MB
log4j.appender.controllerAppender.MaxBackupIndex=3
log4j.appender.controllerAppender.layout=org.apache.log4j.PatternLayout
log4j.appender.controllerAppender.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.controller=INFO, controllerAppender
log4j.additivity.kafka.controller=false
log4j.logger.org.apache.zookeeper=WARN
log4j.logger.kafka.request.logger=WARN
"""


def kafka_unit(spec: ClusterSpec, broker: BrokerSpec, home: str) -> str:
    heap = spec.broker_heap(broker)
    exec_start = formats.systemd_command(
        ["/usr/bin/java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
         "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
         "-Djava.awt.headless=true", f"-Dkafka.logs.dir={KAFKA_LOGS}",
         f"-Dlog4j.configuration=file:{KAFKA_ETC}/log4j.properties", *spec.kafka.jvm_opts,
         "-cp", f"{home}/libs/*", "kafka.Kafka", SERVER_PROPERTIES])
    return f"""{HEADER.format(name=spec.name)}[Unit]
Description=Apache Kafka {spec.kafka.version} broker {broker.id}
Wants=network-online.target
After=network-online.target zookeeper.service

[Service]
Type=simple
User=kafka
Group=kafka
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
LimitNOFILE=100000
TimeoutStopSec=180
SuccessExitStatus=143

[Install]
WantedBy=multi-user.target
"""


def kafka_home(spec: ClusterSpec, artifact_id: str) -> str:
    return f"{spec.kafka.install_dir}/{artifact_id}"


def broker_desired(spec: ClusterSpec, broker: BrokerSpec, artifact_id: str,
                   ibp_pin: str | None = None) -> ServiceDesired:
    home = kafka_home(spec, artifact_id)
    files = (
        DesiredFile(SERVER_PROPERTIES, server_properties(spec, broker, ibp_pin), "0600", "kafka"),
        DesiredFile(f"{KAFKA_ETC}/log4j.properties", KAFKA_LOG4J),
        DesiredFile(KAFKA_UNIT, kafka_unit(spec, broker, home)),
    )
    dirs = tuple(DesiredDir(d, "kafka", "0750") for d in broker.data_dirs) + (
        DesiredDir(KAFKA_LOGS, "kafka"), DesiredDir(KAFKA_ETC, "root"))
    files += tuple(_marker_file(spec, "kafka", d.path) for d in dirs)
    attrs = {
        "host": broker.host,
        "version": spec.kafka.version,
        "rack": broker.rack or "(none)",
        "heap": spec.broker_heap(broker),
        "listeners": ",".join(f"{lst.name}:{lst.port}" for lst in spec.kafka.listeners),
        "data_dirs": ",".join(broker.data_dirs),
    }
    return ServiceDesired("kafka", broker.host, str(broker.id), spec.kafka.version, files, dirs,
                          spec.kafka.listeners[0].port, attrs)


# --- ZooKeeper ---------------------------------------------------------------------------------


def zoo_cfg(spec: ClusterSpec) -> str:
    """Static settings. No server lines or clientPort: membership and client ports live in the
    dynamic config ZooKeeper maintains (see ZK_SEED and `zk_server_line`)."""
    zk = spec.zookeeper
    items: list[tuple[str, object]] = [
        ("tickTime", 2000), ("initLimit", 10), ("syncLimit", 5),
        ("dataDir", zk.data_dir),
        ("admin.enableServer", False),
        ("4lw.commands.whitelist", "srvr,mntr,ruok,conf,isro"),
        ("autopurge.snapRetainCount", 3), ("autopurge.purgeInterval", 24),
        ("reconfigEnabled", True),
        # reconfig needs the super user or skipACL. Without ZooKeeper authentication (no SASL in
        # the spec yet) every znode Kafka writes is world-writable already, so skipACL opens
        # nothing new; with authentication this becomes a superDigest login instead.
        ("skipACL", "yes"),
    ]
    overrides = dict(zk.config)
    items = [(k, overrides.pop(k, v)) for k, v in items] + sorted(overrides.items())
    return _properties(spec.name, items)


def zk_server_line(spec: ClusterSpec, node: ZooKeeperNode) -> tuple[int, str]:
    """(myid, value) of a dynamic-config `server.<myid>=` line, as ZooKeeper writes it back."""
    zk = spec.zookeeper
    return node.myid, f"{node.host}:{zk.peer_port}:{zk.election_port}:participant;0.0.0.0:{zk.client_port}"


def zk_seed(spec: ClusterSpec, node: ZooKeeperNode, members: dict[int, str] | None) -> str:
    """First membership of a new server: the running ensemble's members plus itself (how a server
    joins an ensemble before `reconfig -add`), or every spec node for a brand-new ensemble."""
    lines = dict(members) if members else dict(zk_server_line(spec, n) for n in spec.zookeeper.nodes)
    myid, own = zk_server_line(spec, node)
    lines.setdefault(myid, own)
    return "".join(f"server.{i}={v}\n" for i, v in sorted(lines.items()))


def zk_runtime_dir(spec: ClusterSpec) -> str:
    return f"{spec.zookeeper.data_dir}/conf"


def zk_runtime_script(spec: ClusterSpec) -> str:
    run = zk_runtime_dir(spec)
    q = formats.sh
    pointer = formats.properties_line("dynamicConfigFile", ZK_SEED).rstrip("\n")
    return f"""#!/bin/sh
# Managed by kafkaform (cluster {spec.name}). Run by zookeeper.service before ZooKeeper starts:
# the config ZooKeeper runs with is kafkaform's {ZOO_CFG} plus ZooKeeper's own pointer to its
# current membership (rewritten by ZooKeeper after every reconfig); the seed on first start.
set -eu
mkdir -p {q(run)}
pointer=$(grep -s '^dynamicConfigFile=' {q(run + "/zoo.cfg")} || echo {q(pointer)})
{{ grep -v '^#' {q(ZOO_CFG)}; echo "$pointer"; }} > {q(run + "/zoo.cfg.new")}
mv {q(run + "/zoo.cfg.new")} {q(run + "/zoo.cfg")}
"""


ZK_LOGBACK = """\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>/var/log/zookeeper/zookeeper.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>/var/log/zookeeper/zookeeper.log.%i</fileNamePattern>
      <maxIndex>5</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""


def zookeeper_unit(spec: ClusterSpec, home: str) -> str:
    heap = spec.zookeeper.heap
    exec_start = formats.systemd_command(
        ["/usr/bin/java", f"-Xms{heap}", f"-Xmx{heap}", "-Djava.awt.headless=true",
         f"-Dlogback.configurationFile={ZK_ETC}/logback.xml", f"-Dzookeeper.log.dir={ZK_LOGS}",
         "-cp", f"{home}/libs/*", "org.apache.zookeeper.server.quorum.QuorumPeerMain",
         f"{zk_runtime_dir(spec)}/zoo.cfg"])
    pre = formats.systemd_command(["/bin/sh", ZK_RUNTIME_SCRIPT])
    return f"""{HEADER.format(name=spec.name)}[Unit]
Description=Apache ZooKeeper {spec.zookeeper.version}
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=zookeeper
Group=zookeeper
ExecStartPre={pre}
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
TimeoutStopSec=60
SuccessExitStatus=143

[Install]
WantedBy=multi-user.target
"""


def zookeeper_home(spec: ClusterSpec, artifact_id: str) -> str:
    return f"{spec.zookeeper.install_dir}/{artifact_id}"


def zookeeper_desired(spec: ClusterSpec, node: ZooKeeperNode, artifact_id: str) -> ServiceDesired:
    zk = spec.zookeeper
    # zoo.cfg is read by the unit's ExecStartPre as the zookeeper user; with a secret in it, only
    # that user may read it
    secret = any(is_sensitive(k) for k in zk.config)
    files = (
        DesiredFile(ZOO_CFG, zoo_cfg(spec), *(("0600", "zookeeper") if secret else ("0644", "root"))),
        DesiredFile(f"{ZK_ETC}/logback.xml", ZK_LOGBACK),
        DesiredFile(f"{zk.data_dir}/myid", f"{node.myid}\n", "0644", "zookeeper"),
        DesiredFile(ZK_RUNTIME_SCRIPT, zk_runtime_script(spec), "0755"),
        DesiredFile(ZK_UNIT, zookeeper_unit(spec, zookeeper_home(spec, artifact_id))),
    )
    dirs = (DesiredDir(zk.data_dir, "zookeeper", "0750"), DesiredDir(ZK_LOGS, "zookeeper"),
            DesiredDir(ZK_ETC, "root"))
    files += tuple(_marker_file(spec, "zookeeper", d.path) for d in dirs)
    attrs = {
        "host": node.host,
        "version": zk.version,
        "heap": zk.heap,
        "client_port": str(zk.client_port),
        "ensemble": spec.zookeeper_connect(),
    }
    return ServiceDesired("zookeeper", node.host, str(node.myid), zk.version, files, dirs, zk.client_port, attrs)


def managed_paths(spec: ClusterSpec) -> tuple[str, ...]:
    """Every file path observe should read on a host of this cluster."""
    dirs = sorted({d for b in spec.brokers for d in b.data_dirs} | {spec.zookeeper.data_dir} | set(FIXED_DIRS))
    return (SERVER_PROPERTIES, f"{KAFKA_ETC}/log4j.properties", KAFKA_UNIT, ZOO_CFG,
            f"{ZK_ETC}/logback.xml", f"{spec.zookeeper.data_dir}/myid", ZK_RUNTIME_SCRIPT, ZK_UNIT,
            *(owner_marker(d) for d in dirs))
