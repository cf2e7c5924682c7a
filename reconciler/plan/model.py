"""The plan as plain data: changes (what people review) and steps (what apply runs).

Apply runs steps only, in the order of the edges saved with them; the changes' reasons are for
people. A plan never holds file contents or secret values — only hashes of the rendered files,
which apply re-renders from the spec and checks against the plan before touching a host.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from reconciler.diff import Action, Change, ReplicaMove, RestartReason
from reconciler.removal import Deletion
from reconciler.security.access import AccessPlan

if TYPE_CHECKING:  # networkx costs ~75 ms to import; a no-op plan never builds a graph
    import networkx as nx

FORMAT_VERSION = 4  # 2: typed gates, restart reasons; 3: changes are a tagged union on `kind`; 4: access


class GateKind(StrEnum):
    """What must hold after a step (and, for some, before it): each one gate of apply/gates.py."""

    BROKER_REGISTERED = "broker_registered"  # registered (KRaft: unfenced), listener up; restarts: back in sync
    CONTROLLER_CAUGHT_UP = "controller_caught_up"  # a KRaft controller caught up with the quorum's leader
    ZOOKEEPER_QUORUM = "zookeeper_quorum"  # every server serves, one leader
    ZOOKEEPER_MEMBERS = "zookeeper_members"  # ZooKeeper's membership is the spec's
    LEFT_ENSEMBLE = "left_ensemble"  # before a stop: the server no longer votes


class Gate(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: GateKind
    node: int | None = None  # the broker or controller the gate is about

    def __str__(self) -> str:
        return self.kind.value + (f":{self.node}" if self.node is not None else "")

    @property
    def text(self) -> str:
        """What apply waits for, in words for the plan's reader."""
        n = self.node
        return {
            GateKind.BROKER_REGISTERED: f"broker {n} registered and serving; after a restart its replicas back in sync",
            GateKind.CONTROLLER_CAUGHT_UP: f"controller {n} caught up with the quorum leader",
            GateKind.ZOOKEEPER_QUORUM: "every ZooKeeper server serving, one leader",
            GateKind.ZOOKEEPER_MEMBERS: "ZooKeeper's ensemble membership equal to the spec's",
            GateKind.LEFT_ENSEMBLE: "(before the stop) the server no longer votes in the ensemble",
        }[self.kind]


class StepKind(StrEnum):
    INSTALL_JAVA = "install_java"
    INSTALL_ARTIFACT = "install_artifact"
    CONFIGURE = "configure"
    FORMAT_STORAGE = "format_storage"  # KRaft: Kafka's storage tool formats the node's dirs once
    START = "start"
    RESTART = "restart"
    STOP = "stop"
    REMOVE = "remove"
    ALTER_CONFIG = "alter_config"  # live broker config change through the Admin API (no restart)
    REASSIGN = "reassign"  # partition reassignment through the Admin API (scale-out / drain for scale-in)
    CLEAR_THROTTLES = "clear_throttles"  # delete leftover replication throttles through the Admin API
    ZK_RECONFIG = "zk_reconfig"  # ZooKeeper ensemble membership change by dynamic reconfiguration
    UPDATE_FEATURES = "update_features"  # KRaft: finalize feature levels (metadata.version) via UpdateFeatures
    UNREGISTER_BROKERS = "unregister_brokers"  # KRaft: drop the registrations of brokers that left (ClusterTool)
    ADD_VOTER = "add_voter"  # KRaft: a started controller (an observer) becomes a voter (MetadataQuorumCommand)
    REMOVE_VOTER = "remove_voter"  # KRaft: a controller stops voting, before it is stopped
    ELECT_LEADERS = "elect_leaders"  # preferred-leader election after a broker roll (Admin API)
    ACCESS = "access"  # SCRAM users and ACLs created, rotated, deleted (Admin API)
    SECURE_ZNODES = "secure_znodes"  # ZooKeeper mode: ACLs on znodes made before zookeeper.set.acl (ZkSecurityMigrator)
    PREPARE_VOLUME = "prepare_volume"  # a LUKS volume (security.volumes): format if blank, open, mount


class VolumeWork(BaseModel):
    """A prepare_volume step's volume, as the plan was reviewed with (the key is never here)."""

    model_config = ConfigDict(frozen=True)
    name: str
    device: str
    mount: str
    filesystem: str
    format: bool = False  # the device is blank and is formatted (destroys what is on it)


class Step(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    kind: StepKind
    host: str
    service: str | None = None  # kafka | zookeeper; None for host-wide steps (java)
    address: str | None = None  # resource address the step belongs to
    artifact_id: str | None = None
    file_hashes: dict[str, str] = {}
    gate: Gate | None = None  # health check after the step (and some before it)
    restart_reasons: tuple[RestartReason, ...] = ()  # restart steps: why
    availability: str | None = None  # restart steps: what stopping this broker does to acks=all writes
    unavailable: tuple[str, ...] = ()  # partitions that would reject acks=all writes during this step
    dynamic_keys: tuple[str, ...] = ()  # alter_config: keys set live; values come from the spec at apply
    ibp_pin: str | None = None  # configure: hold inter.broker.protocol.version here (upgrade, first roll)
    restart_group: tuple[int, ...] = ()  # rack roll: brokers that restart together with this one
    moves: tuple[ReplicaMove, ...] = ()  # reassign: the partitions that change, computed at plan time
    throttle_bytes_per_s: int | None = None  # reassign: replication throttle while data moves
    per_broker: int = 4  # reassign: partitions receiving data at once on one broker
    drain: tuple[int, ...] = ()  # reassign: brokers that must hold nothing afterwards; stop: verify empty
    zk_join: tuple[int, ...] = ()  # zk_reconfig: myids added
    zk_leave: tuple[int, ...] = ()  # zk_reconfig: myids removed
    zk_update: tuple[int, ...] = ()  # zk_reconfig: myids whose membership line drops its plaintext client port
    throttled_topics: tuple[str, ...] = ()  # clear_throttles: topics whose throttled-replica lists go
    throttled_brokers: tuple[int, ...] = ()  # clear_throttles: brokers whose throttle rates go
    deletions: tuple[Deletion, ...] = ()  # remove: exactly the paths deleted, each with its proof
    cluster_id: str | None = None  # format_storage: the KRaft cluster id (made once at create)
    initial_controllers: str | None = None  # format_storage of an initial voter: id@host:port:dir,...
    voter: bool = False  # KRaft: the node is a voter of the metadata quorum (restarts need the quorum proof)
    feature_levels: dict[str, int] = {}  # update_features: each feature named with its new level
    unregister: tuple[int, ...] = ()  # unregister_brokers: the broker ids
    voter_id: int | None = None  # add_voter / remove_voter: the controller
    voter_dir: str | None = None  # remove_voter: its metadata directory id
    access: AccessPlan | None = None  # access: the users and ACL rows it changes (never a password)
    znodes: tuple[str, ...] = ()  # secure_znodes: Kafka's znodes found writable by anyone
    volume: VolumeWork | None = None  # prepare_volume: the volume

    def describe(self) -> str:
        what = {
            StepKind.INSTALL_JAVA: "install Java",
            StepKind.INSTALL_ARTIFACT: f"install {self.artifact_id}",
            StepKind.UPDATE_FEATURES: "finalize "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.feature_levels.items())) + " (UpdateFeatures)",
            StepKind.UNREGISTER_BROKERS: f"unregister broker(s) {', '.join(map(str, self.unregister))} (ClusterTool)",
            StepKind.ADD_VOTER: f"add controller {self.voter_id} to the quorum's voters",
            StepKind.REMOVE_VOTER: f"remove controller {self.voter_id} from the quorum's voters",
            StepKind.ELECT_LEADERS: "move leadership back to the preferred replicas (ElectLeaders)",
            StepKind.ACCESS: _describe_access(self.access),
            StepKind.SECURE_ZNODES: f"set the ACLs of {len(self.znodes)} znode(s) made before ZooKeeper was secured, "
            "and all beneath them (ZkSecurityMigrator)",
            StepKind.PREPARE_VOLUME: _describe_volume(self.volume),
            StepKind.FORMAT_STORAGE: f"format KRaft storage (cluster {self.cluster_id}"
            + (", initial controllers)" if self.initial_controllers else ")"),
            StepKind.CONFIGURE: f"write {self.service} config"
            + (f" (inter.broker.protocol.version held at {self.ibp_pin})" if self.ibp_pin else "")
            + (" (final: inter.broker.protocol.version raised)" if self.id.endswith("#final") else ""),
            StepKind.START: f"start {self.service}",
            StepKind.RESTART: f"restart {self.service}" + (" (second roll)" if self.id.endswith("#final") else ""),
            StepKind.STOP: f"stop {self.service}",
            StepKind.REMOVE: f"remove {self.service}",
            StepKind.ALTER_CONFIG: f"set {', '.join(self.dynamic_keys)} live (no restart)",
            StepKind.CLEAR_THROTTLES: "remove leftover replication throttles"
            + (f" on broker(s) {', '.join(map(str, self.throttled_brokers))}" if self.throttled_brokers else "")
            + (f" and {len(self.throttled_topics)} topic(s)" if self.throttled_topics else ""),
            StepKind.ZK_RECONFIG: "reconfigure the ZooKeeper ensemble"
            + (f": drop the plaintext client port from the lines of server(s) {', '.join(map(str, self.zk_update))}"
               if self.zk_update else "")
            + (f": add server(s) {', '.join(map(str, self.zk_join))}" if self.zk_join else "")
            + (f"{';' if self.zk_join else ':'} remove server(s) {', '.join(map(str, self.zk_leave))}"
               if self.zk_leave else ""),
            StepKind.REASSIGN: f"move {sum(bool(set(m.after) - set(m.before)) for m in self.moves)} partition(s)"
            + (f", drain broker(s) {', '.join(map(str, self.drain))}" if self.drain else ""),
        }[self.kind]
        return f"{self.address}: {what}" if self.address else what


def _describe_volume(v: VolumeWork | None) -> str:
    if v is None:
        return "prepare an encrypted volume"
    return (f"{'FORMAT (LUKS2, destroys its contents), ' if v.format else ''}open {v.device} as "
            f"/dev/mapper/kafkaform-{v.name}, mount it at {v.mount} ({v.filesystem})")


def _describe_access(a: AccessPlan | None) -> str:
    if a is None:
        return "users and ACLs"
    parts = [f"{what} {n} user(s)" for what, n in (("create", len(a.users_create)), ("rotate the password of",
             len(a.users_rotate)), ("delete", len(a.users_delete))) if n]
    parts += [f"{what} {n} ACL(s)" for what, n in (("add", len(a.acls_add)), ("delete", len(a.acls_delete))) if n]
    return ", ".join(parts) + " (Admin API)"


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)
    format_version: int = FORMAT_VERSION
    kafkaform_version: str
    cluster: str
    spec_path: str
    spec_digest: str
    fingerprint: str  # ObservedCluster.fingerprint() the plan was computed from
    created_at: str
    destroy: bool = False
    allow_unavailable: bool = False  # the operator accepted restarts that make partitions unavailable
    format_devices: bool = False  # the operator allowed formatting blank devices (--format-devices)
    min_isr: int = 1  # cluster-wide min.insync.replicas the availability proof used
    # restarts an interrupted apply did (seen from the service's start time): (step id, why)
    confirmed_restarts: tuple[tuple[str, str], ...] = ()
    changes: tuple[Change, ...]
    steps: tuple[Step, ...]
    edges: tuple[tuple[str, str], ...]

    def graph(self) -> nx.DiGraph:
        import networkx as nx

        g: nx.DiGraph[str] = nx.DiGraph()
        for s in self.steps:
            g.add_node(s.id, step=s)
        g.add_edges_from(self.edges)
        return g

    def counts(self) -> dict[str, int]:
        return {
            "add": sum(c.action is Action.CREATE for c in self.changes),
            "change": sum(c.action is Action.UPDATE for c in self.changes),
            "destroy": sum(c.action is Action.DELETE for c in self.changes),
        }

    @property
    def empty(self) -> bool:
        return not self.changes
