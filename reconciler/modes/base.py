"""What a metadata mode provides (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reconciler.diff import ArtifactIds, Change
    from reconciler.observe.model import ClusterState, ObservedCluster
    from reconciler.render.common import ServiceDesired
    from reconciler.spec import ClusterSpec


class Mode(Protocol):
    name: str
    # the service whose nodes form the metadata quorum ("zookeeper" | "kafka-controller"); in a
    # KRaft cluster of combined nodes the quorum runs inside "kafka" (ServiceDesired.role combined)
    quorum_service: str

    def services(self, spec: ClusterSpec, ids: ArtifactIds, ibp_pin: str | None = None) -> list[ServiceDesired]:
        """Every service the spec implies, quorum nodes first."""
        ...

    def artifact_id(self, service: str, ids: ArtifactIds) -> str:
        """The build a service runs."""
        ...

    def read_cluster(self, spec: ClusterSpec, timeout: float) -> ClusterState:
        """The cluster's state now (one read; never raises)."""
        ...

    def quorum_leader(self, cluster: ClusterState) -> str | None:
        """The host:node of the quorum leader as restart ordering needs it: a ZooKeeper host, or a
        KRaft node id as a string."""
        ...

    def metadata_security_changes(self, spec: ClusterSpec, observed: ObservedCluster) -> list[Change]:
        """What securing the metadata store itself needs beyond config files (ZooKeeper mode: the
        ACLs of znodes made before it was secured; KRaft keeps its metadata in its own log)."""
        ...
