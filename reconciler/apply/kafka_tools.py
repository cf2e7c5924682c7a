"""Kafka's own tool classes, run on a cluster host over SSH, for the calls no Python client has
(kafka-python 3.0 lacks UnregisterBroker and Add/RemoveRaftVoter): `ClusterTool unregister`, and
`MetadataQuorumCommand` for voters. The tool comes from the same jars the cluster runs; every
argument is shell-quoted; the output is parsed by the caller."""

from __future__ import annotations

from reconciler.observe.ssh import CommandResult, default_factory
from reconciler.observe.targets import ssh_settings
from reconciler.render import formats
from reconciler.render.kafka import kafka_home
from reconciler.spec import ClusterSpec


class ToolFailed(Exception):
    pass


def run_tool(spec: ClusterSpec, host: str, artifact_id: str, main_class: str, args: list[str],
             timeout: float = 120, jvm: tuple[str, ...] = ()) -> CommandResult:
    """`java -cp <home>/libs/* <main_class> <args>` on `host` (through sudo for other logins)."""
    argv = ["java", "-Dlog4j2.configurationFile=/etc/kafka/log4j2.properties", "-Dkafka.logs.dir=/tmp", *jvm,
            "-cp", f"{kafka_home(spec, artifact_id)}/libs/*", main_class, *args]
    cmd = " ".join(formats.sh(a) for a in argv)
    if spec.ssh.user != "root":
        cmd = "sudo -n " + cmd
    transport = default_factory()(host, ssh_settings(spec))
    try:
        res = transport.run(cmd, timeout)
    finally:
        transport.close()
    if res.rc != 0:
        raise ToolFailed(f"{main_class} on {host} exited {res.rc}: {(res.stderr or res.stdout).strip()[-800:]}")
    return res


def add_voter(spec: ClusterSpec, artifact_id: str, host: str) -> str:
    """`MetadataQuorumCommand add-controller` on the joining controller's host: it reads the node
    id, directory id and endpoints from that controller's own config and storage."""
    from reconciler.render.common import CONTROLLER_PROPERTIES

    port = spec.kafka.controller_listener.port
    res = run_tool(spec, host, artifact_id, "org.apache.kafka.tools.MetadataQuorumCommand",
                   ["--bootstrap-controller", f"{host}:{port}", "--command-config", CONTROLLER_PROPERTIES,
                    "add-controller"])
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else f"added the controller on {host}"


def _node_config(spec: ClusterSpec, host: str) -> list[str]:
    """--command-config for a tool run on `host` of a secured cluster: the node's own properties
    (its certificate is a super user's; they say security.protocol for the tools)."""
    from reconciler.render.common import CONTROLLER_PROPERTIES, SERVER_PROPERTIES

    if spec.security is None:
        return []
    dedicated = any(c.host == host for c in spec.controllers)
    return ["--command-config", CONTROLLER_PROPERTIES if dedicated else SERVER_PROPERTIES]


def remove_voter(spec: ClusterSpec, artifact_id: str, host: str, node: int, directory_id: str) -> str:
    """`MetadataQuorumCommand remove-controller` through a controller that stays."""
    port = spec.kafka.controller_listener.port
    res = run_tool(spec, host, artifact_id, "org.apache.kafka.tools.MetadataQuorumCommand",
                   ["--bootstrap-controller", f"{host}:{port}", *_node_config(spec, host), "remove-controller",
                    "--controller-id", str(node), "--controller-directory-id", directory_id])
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else f"removed controller {node}"


def unregister_brokers(spec: ClusterSpec, artifact_id: str, brokers: tuple[int, ...]) -> str:
    """`ClusterTool unregister --id N` for each broker, from a broker host that stays."""
    from reconciler.render.common import SERVER_PROPERTIES

    leaving = set(brokers)
    host = next(b.host for b in spec.brokers if b.id not in leaving)
    bootstrap = f"{host}:{spec.kafka.inter_broker.port}"
    config = ["--command-config", SERVER_PROPERTIES] if spec.security is not None else []
    for b in brokers:
        run_tool(spec, host, artifact_id, "org.apache.kafka.tools.ClusterTool",
                 ["unregister", "--bootstrap-server", bootstrap, *config, "--id", str(b)])
    return f"unregistered broker(s) {', '.join(map(str, brokers))} through {host}"


def secure_znodes(spec: ClusterSpec, artifact_id: str, host: str) -> str:
    """Kafka's `ZkSecurityMigrator --zookeeper.acl secure` on a broker host, logged in to ZooKeeper
    with the brokers' own JAAS file: every znode beneath Kafka's roots gets the ACLs a broker with
    zookeeper.set.acl gives the znodes it makes (its login: all; anyone: read, sensitive ones none).
    On a TLS ensemble it connects as the broker does: `--zk-tls-config-file` reads the zookeeper.ssl.*
    and zookeeper.clientCnxnSocket keys of the broker's own server.properties (and ignores the rest)."""
    from reconciler.render.common import SERVER_PROPERTIES
    from reconciler.render.kafka import KAFKA_ZK_JAAS
    from reconciler.security.zookeeper import serves_tls

    tls = ["--zk-tls-config-file", SERVER_PROPERTIES] if serves_tls(spec) else []
    res = run_tool(spec, host, artifact_id, "kafka.admin.ZkSecurityMigrator",
                   ["--zookeeper.acl", "secure", "--zookeeper.connect", spec.zookeeper_connect(), *tls],
                   timeout=300, jvm=(f"-Djava.security.auth.login.config={KAFKA_ZK_JAAS}",))
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else f"znode ACLs set from {host}"
