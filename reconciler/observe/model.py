"""Typed observed state: what observe returns and what diff reads.

Everything here is plain data (frozen pydantic models) so tests can build it without hosts, and
`fingerprint()` can hash exactly the parts the diff depends on.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstalledArtifact(_Frozen):
    """One `/opt/<name>/<artifact_id>/ARTIFACT` marker found on a host."""

    name: str  # "kafka" | "zookeeper"
    artifact_id: str  # directory name, e.g. kafka-3.9.1-0123456789ab
    version: str
    sha256: str
    path: str


class ManagedFile(_Frozen):
    """A file kafkaform manages, as found on the host. Content is kept for text diffs; secrets redacted."""

    path: str
    sha256: str
    content: str | None = None


class ServiceState(_Frozen):
    name: str
    active: str  # systemd ActiveState: active, inactive, failed, activating, ...
    enabled: bool = False
    pid: int | None = None
    started_at: str | None = None  # systemd ActiveEnterTimestamp, raw
    running_artifact: str | None = None  # artifact id the process runs (from its classpath), None if unknown


class DirDevice(_Frozen):
    """The filesystem a data dir is on and the block devices beneath it (see facts.dir_devices)."""

    fstype: str  # e.g. ext4, xfs, overlay
    stack: tuple[str, ...] = ()  # lsblk TYPEs from the mounted device down: crypt, lvm, part, disk

    @property
    def encrypted(self) -> bool:
        return "crypt" in self.stack

    def describe(self) -> str:
        return f"{self.fstype} on {' over '.join(self.stack)}" if self.stack else f"{self.fstype} (no block device)"


class VolumeState(_Frozen):
    """A device `security.volumes` names, as found on its host (see facts.volumes)."""

    state: str  # block | missing | notblock
    signature: str | None = None  # blkid TYPE: crypto_LUKS, ext4, ... (None: nothing found)
    partition_table: str | None = None  # blkid PTTYPE: gpt, dos
    uuid: str | None = None
    open: bool = False  # /dev/mapper/kafkaform-<name> exists
    mounted_at: str | None = None  # where that mapping is mounted
    device_mounted_at: str | None = None  # the raw device mounted itself (in use: never formatted)
    mount_has_files: bool = False  # the mount point exists and is not empty

    @property
    def blank(self) -> bool:
        return self.state == "block" and self.signature is None and self.partition_table is None

    @property
    def luks(self) -> bool:
        return self.signature == "crypto_LUKS"

    def describe(self, mount: str) -> str:
        """In words, for a volume meant to be mounted at `mount` (describe-cluster)."""
        if self.state != "block":
            return self.state
        if self.luks:
            return "ready" if self.open and self.mounted_at == mount else "luks (not open or not mounted)"
        return "blank" if self.blank else f"holds {self.signature or self.partition_table}"


class HostVolumes(_Frozen):
    """Facts for a host's `security.volumes`; all None/empty on a host without any."""

    device_mapper: bool | None = None
    cryptsetup: bool | None = None
    volumes: dict[str, VolumeState] = Field(default_factory=dict)


class HostFacts(_Frozen):
    """Facts of one host. `error` set means the host could not be observed; nothing else is trusted then."""

    host: str
    reachable: bool = True
    error: str | None = None
    os: str | None = None
    java_version: str | None = None
    mem_total_bytes: int | None = None
    cpus: int | None = None
    artifacts: tuple[InstalledArtifact, ...] = ()
    files: dict[str, ManagedFile] = Field(default_factory=dict)
    services: dict[str, ServiceState] = Field(default_factory=dict)
    dir_usage_bytes: dict[str, int] = Field(default_factory=dict)
    dir_devices: dict[str, DirDevice] = Field(default_factory=dict)
    volumes: HostVolumes = HostVolumes()


class PartitionState(_Frozen):
    topic: str
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int | None
    reassigning: bool = False  # a reassignment of this partition is in progress


class QuorumMember(_Frozen):
    """A KRaft voter or observer as DescribeQuorum reports it."""

    node_id: int
    directory_id: str | None = None  # base64url, as meta.properties has it
    log_end_offset: int = -1
    last_caught_up_ms: int | None = None
    last_fetch_ms: int | None = None


class Quorum(_Frozen):
    """The metadata quorum: KRaft's controllers (from DescribeQuorum), or a ZooKeeper ensemble."""

    kind: str  # "kraft" | "zookeeper"
    leader_id: int | None = None
    leader_epoch: int | None = None
    high_watermark: int | None = None
    voters: tuple[QuorumMember, ...] = ()
    observers: tuple[QuorumMember, ...] = ()
    endpoints: dict[int, str] = Field(default_factory=dict)  # node id -> controller host:port
    # node id -> the controller listener names it announced to the quorum (KIP-853 voter endpoints)
    listeners: dict[int, tuple[str, ...]] = Field(default_factory=dict)
    # kraft.version as the leading controller finalized it (its ApiVersions answer, when >= 1): the
    # quorum keeps it in its own log, and a broker that read it from a leader who then lost its epoch
    # answers 0 until it restarts (its raft state machine drops the truncated records and does not
    # read the new leader's). Controllers before Kafka 4.1 always answer 0 (KAFKA-18920): then the
    # brokers' answer stands
    kraft_version: int | None = None

    @property
    def voter_ids(self) -> tuple[int, ...]:
        return tuple(v.node_id for v in self.voters)


class ClusterState(_Frozen):
    """Cluster-level view: ZooKeeper mode from ZooKeeper (kazoo) and the Admin API, KRaft from the
    Admin API alone (`mode`)."""

    mode: str = "zookeeper"
    zookeeper_reachable: bool = False
    zookeeper_error: str | None = None
    zookeeper_modes: dict[str, str] = Field(default_factory=dict)  # host -> leader/follower/standalone/down
    broker_ids: tuple[int, ...] = ()  # registered in /brokers/ids
    broker_endpoints: dict[int, str] = Field(default_factory=dict)
    controller_id: int | None = None
    kafka_reachable: bool = False
    kafka_error: str | None = None
    partitions: tuple[PartitionState, ...] = ()
    topic_min_isr: dict[str, int] = Field(default_factory=dict)  # topic-level min.insync.replicas overrides
    # ZooKeeper's own membership (/zookeeper/config): myid -> "host:peer:election:role;client"
    zookeeper_members: dict[int, str] = Field(default_factory=dict)
    # Replication throttles (topic throttled-replica lists, broker throttle rates)
    throttled_topics: tuple[str, ...] = ()
    throttled_brokers: tuple[int, ...] = ()
    open_znodes: tuple[str, ...] = ()  # Kafka's znodes anyone may change (see zookeeper.KAFKA_ZNODES)
    # KRaft
    cluster_id: str | None = None
    fenced_brokers: tuple[int, ...] = ()  # registered but fenced (down, or not caught up)
    quorum: Quorum | None = None
    features: dict[str, int] = Field(default_factory=dict)  # finalized feature levels (metadata.version ...)
    supported_features: dict[str, tuple[int, int]] = Field(default_factory=dict)  # (min, max) of the answering node

    @property
    def reachable(self) -> bool:
        """Whether the cluster's state could be read (ZooKeeper in ZooKeeper mode, the Admin API in KRaft)."""
        return self.kafka_reachable if self.mode == "kraft" else self.zookeeper_reachable

    @property
    def error(self) -> str | None:
        return self.kafka_error if self.mode == "kraft" else self.zookeeper_error

    @property
    def unfenced_brokers(self) -> tuple[int, ...]:
        return tuple(b for b in self.broker_ids if b not in self.fenced_brokers)

    @property
    def reassigning(self) -> list[str]:
        """Partitions with a reassignment in progress."""
        return [f"{p.topic}-{p.partition}" for p in self.partitions if p.reassigning]

    def topics(self) -> dict[str, list[PartitionState]]:
        out: dict[str, list[PartitionState]] = {}
        for p in self.partitions:
            out.setdefault(p.topic, []).append(p)
        return out


class ObservedCluster(_Frozen):
    cluster_name: str
    hosts: dict[str, HostFacts]
    cluster: ClusterState = ClusterState()
    observed_at: str = ""
    duration_s: float = 0.0

    def unreachable(self) -> dict[str, str]:
        return {h: f.error or "unreachable" for h, f in self.hosts.items() if not f.reachable}

    def fingerprint(self) -> str:
        """Hash of the state the diff depends on; a saved plan is stale when this changes.

        Left out on purpose: ISR, leaders, byte counts and timestamps, which move on a healthy
        cluster without anything we would change.
        """
        basis = {
            "hosts": {
                h: {
                    "reachable": f.reachable,
                    "java": f.java_version is not None,
                    "artifacts": sorted(a.artifact_id for a in f.artifacts),
                    "files": {p: m.sha256 for p, m in sorted(f.files.items())},
                    "services": {n: [s.active, s.enabled, s.pid] for n, s in sorted(f.services.items())},
                    "encrypted_dirs": sorted(d for d, v in f.dir_devices.items() if v.encrypted),
                    # (only on hosts with security.volumes: other hosts' fingerprints stay as they were)
                    **({"volumes": f.volumes.model_dump(mode="json")} if f.volumes.volumes else {}),
                }
                for h, f in sorted(self.hosts.items())
            },
            "brokers": sorted(self.cluster.broker_ids),
            "assignments": sorted(
                (p.topic, p.partition, list(p.replicas)) for p in self.cluster.partitions
            ),
            "zookeeper_members": sorted(self.cluster.zookeeper_members),
            "voters": list(self.cluster.quorum.voter_ids) if self.cluster.quorum else [],
            "features": sorted(self.cluster.features.items()),
            "throttles": [list(self.cluster.throttled_topics), list(self.cluster.throttled_brokers)],
            "open_znodes": list(self.cluster.open_znodes),
        }
        blob = json.dumps(basis, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()
