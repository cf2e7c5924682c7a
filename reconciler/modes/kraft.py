"""KRaft mode (Kafka 3.9+ with a dynamic quorum, the only mode of 4.x): controllers hold the
metadata in a Raft quorum; dedicated controllers run as the kafka-controller service, combined
nodes inside the broker's service. Everything is read through the Admin API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.render.common import ServiceDesired
from reconciler.render.kafka import CONTROLLER_SERVICE, broker_desired, controller_desired

if TYPE_CHECKING:
    from reconciler.diff import ArtifactIds, Change
    from reconciler.observe.model import ClusterState, ObservedCluster
    from reconciler.spec import ClusterSpec


def quorum_endpoints(spec: ClusterSpec) -> list[str]:
    """Where DescribeQuorum can be asked: the spec's voters, then the hosts of the last applied
    revision (a controller that is leaving the spec may still lead the quorum)."""
    from reconciler.apply.state import known_hosts_of

    port = spec.kafka.controller_listener.port
    out = [f"{h}:{port}" for _, h in spec.voters()]
    return out + [f"{h}:{port}" for h in known_hosts_of(spec.name) if f"{h}:{port}" not in out]


class KRaftMode:
    name = "kraft"
    quorum_service = CONTROLLER_SERVICE

    def services(self, spec: ClusterSpec, ids: ArtifactIds, ibp_pin: str | None = None) -> list[ServiceDesired]:
        out = [controller_desired(spec, c, ids.kafka) for c in spec.controllers]
        return out + [broker_desired(spec, b, ids.kafka) for b in spec.brokers]

    def artifact_id(self, service: str, ids: ArtifactIds) -> str:
        return ids.kafka

    def read_cluster(self, spec: ClusterSpec, timeout: float) -> ClusterState:
        from reconciler.observe import kraft
        from reconciler.observe.connect import admin_endpoint, controller_endpoint

        return kraft.read_cluster(admin_endpoint(spec), controller_endpoint(spec, quorum_endpoints(spec)), timeout)

    def quorum_leader(self, cluster: ClusterState) -> str | None:
        leader = cluster.quorum.leader_id if cluster.quorum else None
        return None if leader is None else str(leader)

    def metadata_security_changes(self, spec: ClusterSpec, observed: ObservedCluster) -> list[Change]:
        return []  # the metadata log is reached only through the controller listener
