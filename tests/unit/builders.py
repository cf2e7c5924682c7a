"""A small fluent builder for ObservedCluster, so diff/plan tests read like the situation they test.

    Observed("lab").host("10.213.0.11").bare()                    # nothing installed, no Java
    Observed.converged_cluster(spec, arts)                          # exactly what the spec wants
        .on("10.213.0.12").file(SERVER_PROPERTIES, "hand edit")     # drift on one host
        .service("kafka", "inactive")                               # a stopped service
        .unreachable("10.213.0.13", "connection refused")
        .controller(1).partition("orders", 0, replicas=(1, 2, 3))
        .build()

`converged` fills HostFacts the way observe would see a host after a clean apply: every desired
file's sha256 and content (from reconciler.files), the ARTIFACT markers, active+enabled services.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Self

from reconciler import files as F
from reconciler.diff import ArtifactIds
from reconciler.observe.model import (
    ClusterState,
    HostFacts,
    InstalledArtifact,
    ManagedFile,
    ObservedCluster,
    PartitionState,
    Quorum,
    QuorumMember,
    ServiceState,
)
from reconciler.spec import ClusterSpec

JAVA = "17.0.15"
CLUSTER_ID = "kfTestClusterId0000000"
MEM = 8 * 2**30


def managed_file(path: str, content: str) -> ManagedFile:
    return ManagedFile(path=path, sha256=hashlib.sha256(content.encode()).hexdigest(), content=content)


def marker(name: str, artifact_id: str, install_dir: str | None = None) -> InstalledArtifact:
    """The ARTIFACT marker of an installed build; version is parsed from `<name>-<version>-<sha12>`."""
    version = artifact_id.split("-")[1]
    return InstalledArtifact(name=name, artifact_id=artifact_id, version=version,
                             sha256=hashlib.sha256(artifact_id.encode()).hexdigest(),
                             path=f"{install_dir or '/opt/' + name}/{artifact_id}")


@dataclass
class _Host:
    host: str
    reachable: bool = True
    error: str | None = None
    java_version: str | None = None
    mem_total_bytes: int | None = MEM
    artifacts: dict[str, InstalledArtifact] = field(default_factory=dict)  # artifact_id -> marker
    files: dict[str, ManagedFile] = field(default_factory=dict)
    services: dict[str, ServiceState] = field(default_factory=dict)

    def build(self) -> HostFacts:
        if not self.reachable:
            return HostFacts(host=self.host, reachable=False, error=self.error)
        return HostFacts(host=self.host, os="Debian GNU/Linux 12 (bookworm)", java_version=self.java_version,
                         mem_total_bytes=self.mem_total_bytes, cpus=2,
                         artifacts=tuple(self.artifacts[k] for k in sorted(self.artifacts)),
                         files=dict(self.files), services=dict(self.services))


class Observed:
    """Mutable while building; `build()` returns the frozen ObservedCluster."""

    def __init__(self, cluster_name: str) -> None:
        self.cluster_name = cluster_name
        self._hosts: dict[str, _Host] = {}
        self._current: str | None = None
        self._controller: int | None = None
        self._partitions: list[PartitionState] = []
        self._zk_modes: dict[str, str] = {}
        self._broker_ids: set[int] = set()
        self._topic_min_isr: dict[str, int] = {}
        self._zk_members: dict[int, str] = {}
        self._throttles: tuple[tuple[str, ...], tuple[int, ...]] = ((), ())
        self._voters: list[int] = []
        self._quorum_leader: int | None = None
        self._announced: dict[int, tuple[str, ...]] = {}  # voter -> controller listener names in the quorum
        self._behind: dict[int, int] = {}
        self._fenced: set[int] = set()
        self._features: dict[str, int] = {}

    # -- whole-cluster starting points ---------------------------------------------------------
    @classmethod
    def bare_cluster(cls, spec: ClusterSpec) -> Observed:
        obs = cls(spec.name)
        for h in spec.hosts():
            obs.host(h).bare()
        return obs

    @classmethod
    def converged_cluster(cls, spec: ClusterSpec, artifacts: ArtifactIds) -> Observed:
        obs = cls(spec.name)
        for h in spec.hosts():
            obs.host(h).converged(spec, artifacts)
        return obs

    # -- host selection ------------------------------------------------------------------------
    def host(self, host: str) -> Self:
        """Select a host (created reachable, with nothing installed and no Java, if new)."""
        self._hosts.setdefault(host, _Host(host))
        self._current = host
        return self

    on = host

    @property
    def _h(self) -> _Host:
        assert self._current is not None, "select a host with .host(...) first"
        return self._hosts[self._current]

    # -- per-host state (applies to the selected host) -----------------------------------------
    def bare(self) -> Self:
        self._hosts[self._h.host] = _Host(self._h.host)
        return self

    def java(self, version: str | None = JAVA) -> Self:
        self._h.java_version = version
        return self

    def memory(self, total_bytes: int | None) -> Self:
        self._h.mem_total_bytes = total_bytes
        return self

    def converged(self, spec: ClusterSpec, artifacts: ArtifactIds) -> Self:
        """The selected host exactly as the spec wants it, for each service the spec puts there
        (KRaft: storage formatted, the node a voter of a quorum that leads from its first voter)."""
        from reconciler.modes import mode_of

        h = self._h
        h.java_version = JAVA
        for d in mode_of(spec).services(spec, artifacts):
            if d.host != h.host:
                continue
            if d.service == "zookeeper":
                assert spec.zookeeper is not None and artifacts.zookeeper is not None
                node = next(n for n in spec.zookeeper.nodes if str(n.myid) == d.key)
                self._service_as_desired(d, artifacts.zookeeper, spec.zookeeper.install_dir)
                self._zk_modes.setdefault(h.host, "follower")
                self._zk_members[node.myid] = F.zk_server_line(spec, node)[1]
                continue
            self._service_as_desired(d, artifacts.kafka, spec.kafka.install_dir)
            if d.service == "kafka":
                self._broker_ids.add(int(d.key))
            if d.storage is not None:
                for i, dir_path in enumerate(d.storage.dirs):
                    self.file(f"{dir_path}/{F.META_PROPERTIES}",
                              f"node.id={d.key}\ndirectory.id=DIR{d.key}x{i}\ncluster.id={CLUSTER_ID}\nversion=1\n")
                if d.storage.voter:
                    self._voters.append(int(d.key))
                    self._announced[int(d.key)] = tuple(c.name for c in spec.kafka.controller_listeners)
        return self

    def announced(self, voter: int, *listeners: str) -> Self:
        """KRaft: the controller listeners a voter's endpoints in the quorum name."""
        self._announced[voter] = listeners
        return self

    def quorum(self, leader: int | None = None, behind: dict[int, int] | None = None) -> Self:
        """KRaft: the quorum's leader and how far (ms) voters' last-caught-up times trail it."""
        self._quorum_leader = leader
        self._behind = dict(behind or {})
        return self

    def _service_as_desired(self, desired: F.ServiceDesired, artifact_id: str, install_dir: str) -> None:
        h = self._h
        for f in desired.files:
            h.files[f.path] = managed_file(f.path, f.content)
        self.artifact(F.artifact_name(desired.service), artifact_id, install_dir)
        self.service(desired.service, "active")

    def artifact(self, name: str, artifact_id: str, install_dir: str | None = None) -> Self:
        self._h.artifacts[artifact_id] = marker(name, artifact_id, install_dir)
        return self

    def without_artifact(self, artifact_id: str) -> Self:
        self._h.artifacts.pop(artifact_id, None)
        return self

    def file(self, path: str, content: str) -> Self:
        """A managed file with this content on the selected host (drift when it differs from the spec)."""
        self._h.files[path] = managed_file(path, content)
        return self

    def edit(self, path: str, old: str, new: str) -> Self:
        """Replace text in an existing file, like someone editing it by hand."""
        content = self._h.files[path].content or ""
        assert old in content, f"{old!r} not in {path}"
        return self.file(path, content.replace(old, new))

    def missing(self, path: str) -> Self:
        self._h.files.pop(path, None)
        return self

    def service(self, name: str, active: str = "active", enabled: bool | None = None) -> Self:
        running = active == "active"
        self._h.services[name] = ServiceState(
            name=name, active=active, enabled=running if enabled is None else enabled,
            pid=4242 if running else None, started_at="Thu 2026-01-01 00:00:00 UTC" if running else None)
        return self

    def running(self, service: str, artifact_id: str) -> Self:
        """The build the selected host's service process runs (from its classpath)."""
        svc = self._h.services[service]
        self._h.services[service] = svc.model_copy(update={"running_artifact": artifact_id})
        return self

    def service_started(self, host: str, service: str, started_at: str | None) -> Self:
        """The service's current start time (systemd ActiveEnterTimestamp, e.g.
        'Thu 2026-11-26 07:05:43 UTC') on `host`; the service must already be there."""
        svc = self._hosts[host].services[service]
        self._hosts[host].services[service] = svc.model_copy(update={"started_at": started_at})
        return self

    # -- whole-cluster facts -------------------------------------------------------------------
    def unreachable(self, host: str, reason: str = "connection refused") -> Self:
        self._hosts[host] = _Host(host, reachable=False, error=reason)
        return self

    def controller(self, broker_id: int | None) -> Self:
        self._controller = broker_id
        return self

    def zk_mode(self, host: str, mode: str) -> Self:
        self._zk_modes[host] = mode
        return self

    def zk_members(self, members: dict[int, str]) -> Self:
        """ZooKeeper's membership as /zookeeper/config lists it (myid -> server spec)."""
        self._zk_members = dict(members)
        return self

    def topic_min_isr(self, topic: str, n: int) -> Self:
        """A topic-level min.insync.replicas override."""
        self._topic_min_isr[topic] = n
        return self

    def throttles(self, topics: tuple[str, ...] = (), brokers: tuple[int, ...] = ()) -> Self:
        """Replication throttles set in ZooKeeper (topic throttled-replica lists, broker rates)."""
        self._throttles = (tuple(topics), tuple(brokers))
        return self

    def partition(self, topic: str, p: int, replicas: tuple[int, ...], isr: tuple[int, ...] | None = None,
                  leader: int | None = None, reassigning: bool = False) -> Self:
        isr = replicas if isr is None else isr
        self._partitions.append(PartitionState(topic=topic, partition=p, replicas=tuple(replicas),
                                               isr=tuple(isr), leader=leader if leader is not None else
                                               (isr[0] if isr else None), reassigning=reassigning))
        return self

    def features(self, **levels: int) -> Self:
        """KRaft finalized feature levels (metadata_version=30 for metadata.version)."""
        self._features.update({k.replace("_", "."): v for k, v in levels.items()})
        return self

    def fenced(self, *brokers: int) -> Self:
        self._fenced |= set(brokers)
        return self

    def build(self) -> ObservedCluster:
        brokers_up = bool(self._broker_ids)
        quorum = None
        if self._voters:
            leader = self._quorum_leader if self._quorum_leader is not None else self._voters[0]
            now = 1_800_000_000_000
            quorum = Quorum(kind="kraft", leader_id=leader, leader_epoch=3, high_watermark=100, voters=tuple(
                QuorumMember(node_id=v, directory_id=f"DIR{v}x0", log_end_offset=100,
                             last_caught_up_ms=now - self._behind.get(v, 0))
                for v in sorted(self._voters)), listeners=dict(self._announced))
        state = ClusterState(
            mode="kraft" if quorum else "zookeeper",
            zookeeper_reachable=bool(self._zk_modes), zookeeper_modes=dict(self._zk_modes),
            broker_ids=tuple(sorted(self._broker_ids)),
            controller_id=self._controller if not quorum else (self._controller or quorum.leader_id),
            kafka_reachable=brokers_up, partitions=tuple(self._partitions),
            topic_min_isr=dict(self._topic_min_isr), zookeeper_members=dict(self._zk_members),
            throttled_topics=self._throttles[0], throttled_brokers=self._throttles[1], quorum=quorum,
            fenced_brokers=tuple(sorted(self._fenced)), cluster_id=CLUSTER_ID if quorum else None,
            features=dict(self._features))
        return ObservedCluster(cluster_name=self.cluster_name,
                               hosts={h: b.build() for h, b in self._hosts.items()}, cluster=state)
