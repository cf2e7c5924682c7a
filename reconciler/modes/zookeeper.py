"""ZooKeeper mode (Kafka 3.x): a ZooKeeper ensemble holds the metadata; brokers register in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.render.common import ServiceDesired
from reconciler.render.kafka import broker_desired
from reconciler.render.zookeeper import zookeeper_desired

if TYPE_CHECKING:
    from reconciler.diff import ArtifactIds, Change
    from reconciler.observe.model import ClusterState, ObservedCluster
    from reconciler.spec import ClusterSpec


class ZooKeeperMode:
    name = "zookeeper"
    quorum_service = "zookeeper"

    def services(self, spec: ClusterSpec, ids: ArtifactIds, ibp_pin: str | None = None) -> list[ServiceDesired]:
        out = [zookeeper_desired(spec, n, ids.zookeeper or "") for n in spec.zk_nodes()]
        return out + [broker_desired(spec, b, ids.kafka, ibp_pin) for b in spec.brokers]

    def artifact_id(self, service: str, ids: ArtifactIds) -> str:
        return (ids.zookeeper or "") if service == "zookeeper" else ids.kafka

    def read_cluster(self, spec: ClusterSpec, timeout: float) -> ClusterState:
        from reconciler.observe.collect import observe_cluster
        from reconciler.security.zookeeper import zk_auth, zk_tls

        zk = spec.zookeeper
        return observe_cluster([f"{n.host}:{zk.client_port}" for n in zk.nodes] if zk else [], timeout,
                               zk_auth(spec), zk_tls(spec))

    def quorum_leader(self, cluster: ClusterState) -> str | None:
        return next((h for h, m in cluster.zookeeper_modes.items() if m == "leader"), None)

    def metadata_security_changes(self, spec: ClusterSpec, observed: ObservedCluster) -> list[Change]:
        from reconciler.security.zookeeper import znode_acl_change

        c = znode_acl_change(spec, observed)
        return [c] if c is not None else []
