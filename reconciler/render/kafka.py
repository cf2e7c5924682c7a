"""Kafka's files: server.properties, the log config and the systemd unit of a broker (ZooKeeper
mode or KRaft), a dedicated KRaft controller (`kafka-controller`, its own JVM, unit and dirs),
or a combined KRaft node (`process.roles=broker,controller` in the broker's service). Pure.

KRaft nodes run a dynamic quorum (KIP-853): every node finds the voters through
`controller.quorum.bootstrap.servers`, and `controller.quorum.voters` is never set; the voters
themselves are set once, when the storage is formatted (`StorageFormat`).
"""

from __future__ import annotations

from reconciler import versions
from reconciler.render import formats
from reconciler.render.common import (
    CONTROLLER_ETC,
    CONTROLLER_LOGS,
    CONTROLLER_PROPERTIES,
    CONTROLLER_UNIT,
    HEADER,
    KAFKA_ETC,
    KAFKA_LOGS,
    KAFKA_UNIT,
    SERVER_PROPERTIES,
    DesiredDir,
    DesiredFile,
    ServiceDesired,
    StorageFormat,
    _marker_file,
    _properties,
)
from reconciler.render.security import node_security
from reconciler.security import zookeeper as zookeeper_security
from reconciler.spec import BrokerSpec, ClusterSpec, ControllerSpec, broker_config

CONTROLLER_SERVICE = "kafka-controller"
KAFKA_ZK_JAAS = f"{KAFKA_ETC}/zookeeper-jaas.conf"  # ZooKeeper mode, secured: the brokers' ZooKeeper login
# security.zookeeper_tls: the broker's ZooKeeper client key store (the node's key and chain) and
# trusted CAs, as PEM files (ZooKeeper's client reads no inline PEM)
KAFKA_ZK_KEYSTORE = f"{KAFKA_ETC}/zookeeper-client.key.pem"
KAFKA_ZK_TRUSTSTORE = f"{KAFKA_ETC}/zookeeper-ca.pem"


def _listeners(spec: ClusterSpec, host: str, controller: bool, broker: bool) -> list[tuple[str, str, str]]:
    """(name, protocol, host:port) of the listeners a node serves."""
    out: list[tuple[str, str, str]] = (
        [(lst.name, lst.protocol, f"{host}:{lst.port}") for lst in spec.kafka.listeners] if broker else [])
    if controller:
        out += [(c.name, c.protocol, f"{host}:{c.port}") for c in spec.kafka.controller_listeners]
    return out


def _kraft_managed(spec: ClusterSpec, node_id: int, host: str, roles: str, log_dirs: tuple[str, ...]
                   ) -> list[tuple[str, object]]:
    broker, controller = "broker" in roles, "controller" in roles
    ctrl = spec.kafka.controller_listener
    listeners = _listeners(spec, host, controller, broker)
    joined = ",".join(f"{n}://{a}" for n, _, a in listeners)
    managed: list[tuple[str, object]] = [
        ("process.roles", roles),
        ("node.id", node_id),
        ("listeners", joined),
        ("advertised.listeners", joined),
        ("listener.security.protocol.map", ",".join(
            [f"{n}:{p}" for n, p, _ in listeners] + ([] if controller else [f"{ctrl.name}:{ctrl.protocol}"]))),
    ]
    if broker:
        managed.append(("inter.broker.listener.name", spec.kafka.inter_broker.name))
    managed += [
        # (the first is the one this node reaches the controllers over; a controller serves them all)
        ("controller.listener.names", ",".join(c.name for c in spec.kafka.controller_listeners) if controller
         else ctrl.name),
        ("controller.quorum.bootstrap.servers", spec.quorum_bootstrap()),
        ("log.dirs", ",".join(log_dirs)),
    ]
    return managed + node_security(spec, host, broker=broker, controller=controller)


def server_properties(spec: ClusterSpec, broker: BrokerSpec, ibp_pin: str | None = None) -> str:
    """The broker's server.properties. `ibp_pin` (ZooKeeper mode) holds
    inter.broker.protocol.version at the old release during the first roll of an upgrade (brokers
    on old and new binaries must keep talking the old protocol until all run the new one)."""
    if spec.kraft:
        roles = "broker,controller" if broker.controller else "broker"
        managed = _kraft_managed(spec, broker.id, broker.host, roles, broker.data_dirs)
    else:
        listeners = ",".join(f"{lst.name}://{broker.host}:{lst.port}" for lst in spec.kafka.listeners)
        managed = [
            ("broker.id", broker.id),
            ("listeners", listeners),
            ("advertised.listeners", listeners),
            ("listener.security.protocol.map", ",".join(f"{lst.name}:{lst.protocol}" for lst in spec.kafka.listeners)),
            ("inter.broker.listener.name", spec.kafka.inter_broker.name),
            ("log.dirs", ",".join(broker.data_dirs)),
            ("zookeeper.connect", spec.zookeeper_connect()),
            *node_security(spec, broker.host, broker=True, controller=False),
        ]
        if zookeeper_security.enabled(spec):
            # the brokers log in to ZooKeeper (KAFKA_ZK_JAAS) and their znodes get ACLs
            managed.append(("zookeeper.set.acl", True))
        if zookeeper_security.serves_tls(spec):
            managed += zookeeper_security.client_tls_config(KAFKA_ZK_KEYSTORE, KAFKA_ZK_TRUSTSTORE)
    if broker.rack is not None:
        managed.append(("broker.rack", broker.rack))
    merged = broker_config(spec)
    if ibp_pin is not None:
        merged.setdefault("inter.broker.protocol.version", ibp_pin)
    return _properties(spec.name, managed + sorted(merged.items()))


# Cluster-wide settings a KRaft controller itself acts on: it creates topics (partition count and
# replication defaults), elects leaders (unclean election, the preferred-leader balancer), fences
# brokers (heartbeats, sessions) and authorizes requests. Everything else in kafka.config is the
# brokers' alone, so changing it does not roll the controllers.
CONTROLLER_KEYS = frozenset({
    "num.partitions", "default.replication.factor", "min.insync.replicas", "unclean.leader.election.enable",
    "auto.leader.rebalance.enable", "leader.imbalance.check.interval.seconds",
    "leader.imbalance.per.broker.percentage", "create.topic.policy.class.name", "alter.config.policy.class.name",
    "broker.heartbeat.interval.ms", "broker.session.timeout.ms", "allow.everyone.if.no.acl.found", "super.users",
    "num.network.threads", "num.io.threads", "queued.max.requests", "request.timeout.ms",
    "eligible.leader.replicas.enable",
})
CONTROLLER_KEY_PREFIXES = ("controller.", "metadata.", "authorizer.", "sasl.", "ssl.", "security.", "principal.",
                           "listener.name.", "connections.max.", "socket.", "quota.", "delegation.token.")


def controller_config(spec: ClusterSpec) -> dict[str, object]:
    """What a dedicated controller gets: the controller's share of the cluster-wide settings, then
    kafka.controller_config on top."""
    merged: dict[str, object] = {k: v for k, v in broker_config(spec).items()
              if k in CONTROLLER_KEYS or k.startswith(CONTROLLER_KEY_PREFIXES)}
    merged.update(spec.kafka.controller_config)
    return merged


def controller_properties(spec: ClusterSpec, controller: ControllerSpec) -> str:
    """A dedicated controller's config (see `controller_config`)."""
    managed = _kraft_managed(spec, controller.id, controller.host, "controller", (controller.metadata_dir,))
    return _properties(spec.name, managed + sorted(controller_config(spec).items()))


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

# Kafka 4 logs through log4j2; without a configuration file it logs nothing at all.
KAFKA_LOG4J2 = """\
status = warn
name = kafkaform
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 5
rootLogger.level = info
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


def log_config(spec: ClusterSpec, etc: str) -> tuple[DesiredFile, str]:
    """The log config file for the version and the JVM flag that points at it."""
    if versions.has(spec.kafka.version, "log4j2"):
        path = f"{etc}/log4j2.properties"
        return DesiredFile(path, KAFKA_LOG4J2), f"-Dlog4j2.configurationFile={path}"
    path = f"{etc}/log4j.properties"
    return DesiredFile(path, KAFKA_LOG4J), f"-Dlog4j.configuration=file:{path}"


def _unit(spec: ClusterSpec, *, description: str, heap: str, home: str, logs: str, log_flag: str,
          config: str, after: str, extra: tuple[str, ...] = ()) -> str:
    exec_start = formats.systemd_command(
        ["/usr/bin/java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
         "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
         "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs}", log_flag, *extra, *spec.kafka.jvm_opts,
         "-cp", f"{home}/libs/*", "kafka.Kafka", config])
    return f"""{HEADER.format(name=spec.name)}[Unit]
Description={description}
Wants=network-online.target
After={" ".join(["network-online.target", *([after] if after else [])])}

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


def kafka_unit(spec: ClusterSpec, broker: BrokerSpec, home: str) -> str:
    what = "combined broker and controller" if broker.controller else "broker"
    return _unit(spec, description=f"Apache Kafka {spec.kafka.version} {what} {broker.id}",
                 heap=spec.broker_heap(broker), home=home, logs=KAFKA_LOGS,
                 log_flag=log_config(spec, KAFKA_ETC)[1], config=SERVER_PROPERTIES,
                 after=f"{CONTROLLER_SERVICE}.service" if spec.kraft else "zookeeper.service",
                 extra=(f"-Djava.security.auth.login.config={KAFKA_ZK_JAAS}",)
                 if zookeeper_security.enabled(spec) else ())


def controller_unit(spec: ClusterSpec, controller: ControllerSpec, home: str) -> str:
    return _unit(spec, description=f"Apache Kafka {spec.kafka.version} KRaft controller {controller.id}",
                 heap=spec.controller_heap(controller), home=home, logs=CONTROLLER_LOGS,
                 log_flag=log_config(spec, CONTROLLER_ETC)[1], config=CONTROLLER_PROPERTIES, after="")


def kafka_home(spec: ClusterSpec, artifact_id: str) -> str:
    return f"{spec.kafka.install_dir}/{artifact_id}"


def broker_desired(spec: ClusterSpec, broker: BrokerSpec, artifact_id: str,
                   ibp_pin: str | None = None) -> ServiceDesired:
    home = kafka_home(spec, artifact_id)
    files: tuple[DesiredFile, ...] = (
        DesiredFile(SERVER_PROPERTIES, server_properties(spec, broker, ibp_pin), "0600", "kafka"),
        log_config(spec, KAFKA_ETC)[0],
        DesiredFile(KAFKA_UNIT, kafka_unit(spec, broker, home)),
    )
    if zookeeper_security.enabled(spec):
        files += (DesiredFile(KAFKA_ZK_JAAS, zookeeper_security.client_jaas(spec), "0600", "kafka"),)
    if zookeeper_security.serves_tls(spec):
        files += (DesiredFile(KAFKA_ZK_KEYSTORE, zookeeper_security.keystore_pem(spec, broker.host), "0600", "kafka"),
                  DesiredFile(KAFKA_ZK_TRUSTSTORE, zookeeper_security.truststore_pem(spec)))
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
    role = "broker"
    storage = None
    if spec.kraft:
        role = "combined" if broker.controller else "broker"
        attrs["process.roles"] = "broker,controller" if broker.controller else "broker"
        storage = StorageFormat(SERVER_PROPERTIES, broker.data_dirs, voter=broker.controller)
    return ServiceDesired("kafka", broker.host, str(broker.id), spec.kafka.version, files, dirs,
                          spec.kafka.listeners[0].port, attrs, role=role, user="kafka", storage=storage)


def controller_desired(spec: ClusterSpec, controller: ControllerSpec, artifact_id: str) -> ServiceDesired:
    home = kafka_home(spec, artifact_id)
    files: tuple[DesiredFile, ...] = (
        DesiredFile(CONTROLLER_PROPERTIES, controller_properties(spec, controller), "0600", "kafka"),
        log_config(spec, CONTROLLER_ETC)[0],
        DesiredFile(CONTROLLER_UNIT, controller_unit(spec, controller, home)),
    )
    dirs = (DesiredDir(controller.metadata_dir, "kafka", "0750"), DesiredDir(CONTROLLER_LOGS, "kafka"),
            DesiredDir(CONTROLLER_ETC, "root"))
    files += tuple(_marker_file(spec, CONTROLLER_SERVICE, d.path) for d in dirs)
    attrs = {
        "host": controller.host,
        "version": spec.kafka.version,
        "heap": spec.controller_heap(controller),
        "listener": f"{spec.kafka.controller_listener.name}:{spec.kafka.controller_listener.port}",
        "metadata_dir": controller.metadata_dir,
    }
    return ServiceDesired(CONTROLLER_SERVICE, controller.host, str(controller.id), spec.kafka.version, files, dirs,
                          spec.kafka.controller_listener.port, attrs, role="controller", user="kafka",
                          storage=StorageFormat(CONTROLLER_PROPERTIES, (controller.metadata_dir,), voter=True))
