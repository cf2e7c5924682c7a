"""ZooKeeper's files: the static zoo.cfg, the first-membership seed, the runtime-config script the
unit runs before ZooKeeper starts, logback and the unit. Pure."""

from __future__ import annotations

from reconciler.render import formats
from reconciler.render.common import (
    HEADER,
    ZK_ETC,
    ZK_LOGS,
    ZK_RUNTIME_SCRIPT,
    ZK_SEED,
    ZK_UNIT,
    ZOO_CFG,
    DesiredDir,
    DesiredFile,
    ServiceDesired,
    _marker_file,
    _properties,
)
from reconciler.security import zookeeper as zookeeper_security
from reconciler.spec import ClusterSpec, ZooKeeperNode, ZooKeeperSpec, is_sensitive

ZK_JAAS = f"{ZK_ETC}/jaas.conf"
ZK_ARGS = f"{ZK_ETC}/security.args"
# security.zookeeper_tls: the node's key and chain (observe keeps only the hash of a *.key.pem) and
# the trusted CAs, for the client port and the quorum both
ZK_KEYSTORE = f"{ZK_ETC}/node.key.pem"
ZK_TRUSTSTORE = f"{ZK_ETC}/ca.pem"


def _zk(spec: ClusterSpec) -> ZooKeeperSpec:
    if spec.zookeeper is None:
        raise ValueError(f"cluster {spec.name} has no zookeeper section")
    return spec.zookeeper


def zoo_cfg(spec: ClusterSpec) -> str:
    """Static settings. No server lines or clientPort: membership and client ports live in the
    dynamic config ZooKeeper maintains (see ZK_SEED and `zk_server_line`); with ZooKeeper TLS the
    only client port is the static `secureClientPort`."""
    zk = _zk(spec)
    items: list[tuple[str, object]] = [
        ("tickTime", 2000), ("initLimit", 10), ("syncLimit", 5),
        ("dataDir", zk.data_dir),
        ("admin.enableServer", False),
        ("4lw.commands.whitelist", "srvr,mntr,ruok,conf,isro"),
        ("autopurge.snapRetainCount", 3), ("autopurge.purgeInterval", 24),
        ("reconfigEnabled", True),
    ]
    if zookeeper_security.enabled(spec):
        # brokers log in (SASL DIGEST-MD5, their JAAS Client section); kafkaform's session logs in
        # as the super user (superDigest, see zk_args), which may reconfigure
        items.append(("authProvider.sasl", "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"))
        if zookeeper_security.serves_tls(spec):
            items += zookeeper_security.server_tls_config(spec, ZK_KEYSTORE, ZK_TRUSTSTORE)
    else:
        # reconfig needs the super user or skipACL. Without ZooKeeper authentication every znode
        # Kafka writes is world-writable already, so skipACL opens nothing new.
        items.append(("skipACL", "yes"))
    overrides = dict(zk.config)
    items = [(k, overrides.pop(k, v)) for k, v in items] + sorted(overrides.items())
    return _properties(spec.name, items)


def zk_server_line(spec: ClusterSpec, node: ZooKeeperNode) -> tuple[int, str]:
    """(myid, value) of a dynamic-config `server.<myid>=` line, as ZooKeeper writes it back. With
    ZooKeeper TLS the line has no client port: a client port there is a plaintext one, and the TLS
    port (`secureClientPort`) is static config."""
    zk = _zk(spec)
    line = f"{node.host}:{zk.peer_port}:{zk.election_port}:participant"
    if zookeeper_security.tls_enabled(spec):
        return node.myid, line
    return node.myid, f"{line};0.0.0.0:{zk.client_port}"


def zk_seed(spec: ClusterSpec, node: ZooKeeperNode, members: dict[int, str] | None) -> str:
    """First membership of a new server: the running ensemble's members plus itself (how a server
    joins an ensemble before `reconfig -add`), or every spec node for a brand-new ensemble."""
    lines = dict(members) if members else dict(zk_server_line(spec, n) for n in _zk(spec).nodes)
    myid, own = zk_server_line(spec, node)
    lines.setdefault(myid, own)
    return "".join(f"server.{i}={v}\n" for i, v in sorted(lines.items()))


def zk_runtime_dir(spec: ClusterSpec) -> str:
    return f"{_zk(spec).data_dir}/conf"


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
    heap = _zk(spec).heap
    secure = [f"@{ZK_ARGS}"] if zookeeper_security.enabled(spec) else []
    exec_start = formats.systemd_command(
        ["/usr/bin/java", *secure, f"-Xms{heap}", f"-Xmx{heap}", "-Djava.awt.headless=true",
         f"-Dlogback.configurationFile={ZK_ETC}/logback.xml", f"-Dzookeeper.log.dir={ZK_LOGS}",
         "-cp", f"{home}/libs/*", "org.apache.zookeeper.server.quorum.QuorumPeerMain",
         f"{zk_runtime_dir(spec)}/zoo.cfg"])
    pre = formats.systemd_command(["/bin/sh", ZK_RUNTIME_SCRIPT])
    return f"""{HEADER.format(name=spec.name)}[Unit]
Description=Apache ZooKeeper {_zk(spec).version}
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
    return f"{_zk(spec).install_dir}/{artifact_id}"


def zookeeper_desired(spec: ClusterSpec, node: ZooKeeperNode, artifact_id: str) -> ServiceDesired:
    zk = _zk(spec)
    # zoo.cfg is read by the unit's ExecStartPre as the zookeeper user; with a secret in it, only
    # that user may read it
    secret = any(is_sensitive(k) for k in zk.config)
    files: tuple[DesiredFile, ...] = (
        DesiredFile(ZOO_CFG, zoo_cfg(spec), *(("0600", "zookeeper") if secret else ("0644", "root"))),
        DesiredFile(f"{ZK_ETC}/logback.xml", ZK_LOGBACK),
        DesiredFile(f"{zk.data_dir}/myid", f"{node.myid}\n", "0644", "zookeeper"),
        DesiredFile(ZK_RUNTIME_SCRIPT, zk_runtime_script(spec), "0755"),
        DesiredFile(ZK_UNIT, zookeeper_unit(spec, zookeeper_home(spec, artifact_id))),
    )
    if zookeeper_security.enabled(spec):
        files += (DesiredFile(ZK_JAAS, zookeeper_security.server_jaas(spec), "0600", "zookeeper"),
                  DesiredFile(ZK_ARGS, zookeeper_security.server_args(spec, ZK_JAAS), "0600", "zookeeper"))
    if zookeeper_security.serves_tls(spec):
        files += (DesiredFile(ZK_KEYSTORE, zookeeper_security.keystore_pem(spec, node.host), "0600", "zookeeper"),
                  DesiredFile(ZK_TRUSTSTORE, zookeeper_security.truststore_pem(spec)))
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
    return ServiceDesired("zookeeper", node.host, str(node.myid), zk.version, files, dirs, zk.client_port, attrs,
                          role="zookeeper", user="zookeeper")


