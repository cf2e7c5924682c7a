"""(ClusterSpec, ObservedCluster) -> list[Change]. Pure.

A change is per resource (a ZooKeeper node or a broker), Terraform style: create, update in place
or delete, with the reasons that explain it and the attribute-level differences people review.
Reasons explain; they never steer apply — the step list built from the change does.

`Change` is a closed set of kinds (a tagged union on `kind`): a service on a host
(`ServiceChange`), or one change of the cluster as a whole (reassignment, ZooKeeper ensemble,
leftover throttles, KRaft features, registrations, quorum voters). Each kind has only its own
fields, so nothing reads, say, `moves` off a broker restart, and plan/build.py picks a change's
steps by its kind, not by which optional fields happen to be set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from reconciler import files as F
from reconciler.apply.state import PendingRestart
from reconciler.modes import mode_of
from reconciler.observe.model import HostFacts, ObservedCluster
from reconciler.removal import Deletion, deletions
from reconciler.scaling import ScalePlan, ScaleRefused, plan_scaling
from reconciler.security.access import AccessPlan
from reconciler.security.at_rest import at_rest_issues, volume_changes
from reconciler.security.migration import listener_issues, zookeeper_tls_issues
from reconciler.spec import BrokerSpec, ClusterSpec, SpecIssue, check_against_facts, is_sensitive
from reconciler.versions import config_table, has, metadata_version_name, parse_version

LIVE_REASON = "can change on the running broker (Admin API, no restart)"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "delete": "-"}[self.value]


class AttrDiff(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    before: str | None = None
    after: str | None = None


class ReplicaMove(BaseModel):
    """One partition's new replica list (first = preferred leader); bytes copied per new replica."""

    model_config = ConfigDict(frozen=True)
    topic: str
    partition: int
    before: tuple[int, ...]
    after: tuple[int, ...]
    bytes: int = 0


class RestartReason(StrEnum):
    """Why a service restarts, as the plan and the journal say it."""

    CONFIG = "config"
    UNIT = "unit"
    NEW_BUILD = "new_build"
    OTHER_BUILD_RUNNING = "other_build_running"
    SECOND_ROLL = "second_roll"
    OWED = "owed"

    @property
    def text(self) -> str:
        return {
            "config": "its configuration changed and the change needs a restart",
            "unit": "its service unit changed (JVM options, heap, build path)",
            "new_build": "a new build is installed",
            "other_build_running": "the running process is another build than the unit starts",
            "second_roll": "second roll of an upgrade: inter.broker.protocol.version raised",
            "owed": "a restart an interrupted apply did not finish (journal)",
        }[self.value]


class _ChangeBase(BaseModel):
    """What every change has, and all that plan/render.py shows: the resource, the action, the
    reasons (for people) and the attribute-level differences people review."""

    model_config = ConfigDict(frozen=True)
    address: str  # e.g. broker.1, zookeeper.2, partitions
    service: str  # kafka | zookeeper | kafka-controller
    key: str
    host: str  # the host, or "cluster" for a change of the cluster as a whole
    action: Action
    reasons: tuple[str, ...]
    attrs: tuple[AttrDiff, ...] = ()


class ServiceChange(_ChangeBase):
    """One service on one host: created, updated in place or deleted. `restart`/`start`/... say
    which steps apply must run (plan/build.py rule 1)."""

    kind: Literal["service"] = "service"
    install_java: bool = False
    install_artifact: str | None = None  # artifact id to install
    configure: bool = False
    file_hashes: dict[str, str] = {}
    start: bool = False
    restart: bool = False
    restart_reasons: tuple[RestartReason, ...] = ()  # why `restart` is set
    dynamic_keys: tuple[str, ...] = ()  # broker configs applied live through the Admin API
    # Two-phase upgrade: first roll with inter.broker.protocol.version pinned to the old release
    # (files hashed in pinned_hashes), then a second roll with the final files.
    ibp_pin: str | None = None
    pinned_hashes: dict[str, str] = {}
    # Removal: every path deleted on the host, each with the proof it needs there
    deletions: tuple[Deletion, ...] = ()
    # KRaft: the node's storage dirs are formatted before it first starts (a dir lacks meta.properties)
    format_storage: bool = False
    voter: bool = False  # KRaft: the node is a voter of the metadata quorum (controller or combined)

    @property
    def rolling_restart(self) -> bool:
        return self.action is Action.UPDATE and self.restart


class ReassignChange(_ChangeBase):
    """Partition reassignment (address "partitions"): moves computed from the observed placement."""

    kind: Literal["reassign"] = "reassign"
    moves: tuple[ReplicaMove, ...] = ()
    drain: tuple[int, ...] = ()  # brokers that must hold nothing once the moves are done
    throttle_bytes_per_s: int | None = None
    per_broker: int = 4


class EnsembleChange(_ChangeBase):
    """ZooKeeper membership change (address "zookeeper.ensemble"): myids to add / remove by reconfig."""

    kind: Literal["zk_ensemble"] = "zk_ensemble"
    zk_update: tuple[int, ...] = ()  # members whose line drops its plaintext client port (ZooKeeper TLS)
    zk_join: tuple[int, ...] = ()
    zk_leave: tuple[int, ...] = ()


class ThrottleChange(_ChangeBase):
    """Leftover replication throttles to delete (address "throttles")."""

    kind: Literal["throttles"] = "throttles"
    throttled_topics: tuple[str, ...] = ()
    throttled_brokers: tuple[int, ...] = ()


class FeatureChange(_ChangeBase):
    """KRaft feature levels to finalize through UpdateFeatures, each named (address "features")."""

    kind: Literal["features"] = "features"
    feature_levels: dict[str, int] = {}


class UnregisterChange(_ChangeBase):
    """KRaft: registrations of brokers that left the spec, removed from the metadata (UnregisterBroker)."""

    kind: Literal["unregister"] = "unregister"
    unregister: tuple[int, ...] = ()


class VoterChange(_ChangeBase):
    """KRaft quorum membership change (address "controllers.quorum"): voters added / removed, with
    the directory id each leaving voter is removed by."""

    kind: Literal["voters"] = "voters"
    voters_join: tuple[int, ...] = ()
    voters_leave: tuple[int, ...] = ()
    voter_dirs: dict[int, str] = {}
    voter_hosts: dict[int, str] = {}  # joiners: their hosts; leavers: a staying voter's host to run the tool on


class AccessChange(_ChangeBase):
    """SCRAM users and ACLs to create, rotate or delete through the Admin API (address "access");
    passwords are read from the spec's secret references at apply, never stored in the plan."""

    kind: Literal["access"] = "access"
    access: AccessPlan


class ZnodeAclChange(_ChangeBase):
    """ZooKeeper mode (address "zookeeper.acls"): Kafka's znodes made while zookeeper.set.acl was
    off are still world-writable; Kafka's ZkSecurityMigrator, run on a broker host with the brokers'
    ZooKeeper login once every broker logs in, gives them the ACLs new znodes get."""

    kind: Literal["znode_acls"] = "znode_acls"
    znodes: tuple[str, ...]


class VolumeChange(_ChangeBase):
    """A LUKS volume of security.volumes to make ready on its host (address `volume.<host>.<name>`):
    formatted when the device is blank (`format`, destructive: only with --format-devices), opened,
    given a filesystem and mounted where a service keeps its data, before that service is set up."""

    kind: Literal["volume"] = "volume"
    name: str
    device: str
    mount: str
    filesystem: str
    format: bool = False


# A closed set of change kinds, told apart by `kind` (in saved plans and --json too): each kind
# carries only its own fields, and a consumer narrows with isinstance/match instead of guessing
# from which optional fields are set. An unknown kind in a saved plan fails validation.
Change = Annotated[ServiceChange | ReassignChange | EnsembleChange | ThrottleChange | FeatureChange
                   | UnregisterChange | VoterChange | AccessChange | ZnodeAclChange | VolumeChange,
                   Field(discriminator="kind")]
ClusterChange = (ReassignChange | EnsembleChange | ThrottleChange | FeatureChange | UnregisterChange | VoterChange
                 | AccessChange | ZnodeAclChange | VolumeChange)


@dataclass(frozen=True)
class DiffResult:
    changes: list[Change]
    errors: list[SpecIssue]  # refusals: nothing may be applied while any exist


@dataclass(frozen=True)
class ArtifactIds:
    kafka: str
    zookeeper: str | None = None  # ZooKeeper mode only


def _version_of(artifact_id: str) -> str:
    # kafka-3.9.1-0123456789ab -> 3.9.1
    parts = artifact_id.split("-")
    return parts[1] if len(parts) >= 3 else artifact_id


def _properties_diff(before: str | None, after: str) -> list[AttrDiff]:
    old = F.parse_properties(before or "")
    new = F.parse_properties(after)
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            sens = is_sensitive(k)
            out.append(AttrDiff(
                name=f"config.{k}",
                before=None if k not in old else ("(sensitive)" if sens else old[k]),
                after=None if k not in new else ("(sensitive)" if sens else new[k]),
            ))
    return out


def _dynamic_keys(desired: F.ServiceDesired, facts: HostFacts, dynamic: frozenset[str]) -> tuple[str, ...] | None:
    """Changed server.properties keys when the version can change every one of them on a running
    broker (and nothing else differs); None when the change needs a restart."""
    if desired.service != "kafka" or not dynamic:
        return None
    props = desired.file(F.SERVER_PROPERTIES)
    for f in desired.files:
        seen = facts.files.get(f.path)
        if f is not props and (seen is None or seen.sha256 != f.sha256):
            return None
    seen = facts.files.get(F.SERVER_PROPERTIES)
    if seen is None or seen.content is None:
        return None
    old, new = F.parse_properties(seen.content), F.parse_properties(props.content)
    changed = tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
    if not changed or any(k not in dynamic or is_sensitive(k) for k in changed):
        return None
    return changed


# Read only when a KRaft node starts (it finds the quorum through them, then follows the voters the
# quorum itself records): a change is written without a restart, so adding or removing a voter
# restarts nothing.
START_ONLY_KEYS = frozenset({"controller.quorum.bootstrap.servers"})


def _start_only_change(desired: F.ServiceDesired, facts: HostFacts) -> bool:
    """Whether the only difference is in keys a running node never reads again."""
    if desired.service == "zookeeper":
        return False
    props = desired.file(desired.config_path)
    for f in desired.files:
        seen = facts.files.get(f.path)
        if f is not props and (seen is None or seen.sha256 != f.sha256):
            return False
    seen = facts.files.get(desired.config_path)
    if seen is None or seen.content is None or seen.sha256 == props.sha256:
        return False
    old, new = F.parse_properties(seen.content), F.parse_properties(props.content)
    changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    return bool(changed) and changed <= START_ONLY_KEYS


def running_kafka_version(facts: HostFacts, artifact_id: str) -> str | None:
    """The Kafka version the broker process on this host runs now: from its classpath when
    observe saw it, else the oldest installed build when the wanted one is not installed yet."""
    svc = facts.services.get("kafka")
    if svc and svc.active == "active" and svc.running_artifact:
        return _version_of(svc.running_artifact)
    installed = [a for a in facts.artifacts if a.name == "kafka"]
    if not installed or any(a.artifact_id == artifact_id for a in installed):
        return None
    return min((a.version for a in installed), key=parse_version)


def cluster_ibp_pin(spec: ClusterSpec, observed: ObservedCluster, artifact_id: str) -> str | None:
    """The inter.broker.protocol.version to hold while any broker still runs an older major.minor
    than the spec's version (an upgrade's first roll, or its resumption), else None.

    Cluster-wide on purpose: a broker already on the new build keeps the old protocol until the
    last broker has been restarted onto it. Not for versions without the setting (4.0+) or when
    the spec sets it itself.
    """
    if "inter.broker.protocol.version" in spec.kafka.config or not has(spec.kafka.version,
                                                                        "inter_broker_protocol_version"):
        return None
    want = parse_version(spec.kafka.version)[:2]
    running = [parse_version(v)[:2] for b in spec.brokers if b.host in observed.hosts
               for v in [running_kafka_version(observed.hosts[b.host], artifact_id)] if v]
    oldest = min(running, default=want)
    return f"{oldest[0]}.{oldest[1]}" if oldest < want else None


def _service_change(desired: F.ServiceDesired, facts: HostFacts, artifact_id: str,
                    dynamic: frozenset[str] = frozenset()) -> ServiceChange | None:
    svc = facts.services.get(desired.service)
    installed = [a for a in facts.artifacts if a.name == F.artifact_name(desired.service)]
    have_files = {p: m for p, m in facts.files.items() if p in {f.path for f in desired.files}}
    exists = bool(have_files) or bool(installed) or (svc is not None and svc.active not in ("inactive", ""))
    address = desired.address
    hashes = {f.path: f.sha256 for f in desired.files}
    need_java = facts.java_version is None

    if not exists:
        created = tuple(AttrDiff(name=k, after=v) for k, v in desired.attributes.items())
        return ServiceChange(address=address, service=desired.service, key=desired.key, host=desired.host,
                             action=Action.CREATE, reasons=("not installed on the host",), attrs=created,
                             install_java=need_java, install_artifact=artifact_id, configure=True,
                             file_hashes=hashes, start=True)

    reasons: list[str] = []
    attrs: list[AttrDiff] = []
    need_install = not any(a.artifact_id == artifact_id for a in installed)
    stale = (svc is not None and svc.active == "active" and svc.running_artifact is not None
             and svc.running_artifact != artifact_id and not need_install)
    if stale and svc is not None:  # e.g. an apply stopped between writing the new unit and restarting onto it
        reasons.append(f"the running process is {svc.running_artifact}; the service starts {artifact_id}")
    if need_install:
        have = ", ".join(sorted(a.artifact_id for a in installed)) or "none"
        reasons.append(f"{artifact_id} is not installed (installed: {have})")
        versions_have = ", ".join(sorted({a.version for a in installed})) or "none"
        if versions_have != desired.version:
            attrs.append(AttrDiff(name="version", before=versions_have, after=desired.version))
        attrs.append(AttrDiff(name="artifact", before=have, after=artifact_id))
    restart_files = False
    why: list[RestartReason] = []
    if stale:
        why.append(RestartReason.OTHER_BUILD_RUNNING)
    if need_install:
        why.append(RestartReason.NEW_BUILD)
    for f in desired.files:
        seen = facts.files.get(f.path)
        if seen is not None and seen.sha256 == f.sha256:
            continue
        reasons.append(f"{f.path} {'is missing' if seen is None else 'differs from the spec'}")
        restart_files = restart_files or f.restart_on_change
        if f.restart_on_change:
            kind = RestartReason.UNIT if f.path.endswith(".service") else RestartReason.CONFIG
            why += [kind] if kind not in why else []
        if f.path.endswith((".properties", ".cfg")) and not f.path.endswith(("log4j.properties", "log4j2.properties")):
            attrs += _properties_diff(seen.content if seen else None, f.content)
        elif f.path in (F.KAFKA_UNIT, F.ZK_UNIT, F.CONTROLLER_UNIT):
            attrs.append(AttrDiff(name="service_unit", before="(differs)" if seen else None, after="(spec)"))
        else:
            attrs.append(AttrDiff(name=f"file {f.path}", before="(differs)" if seen else None, after="(spec)"))
    running = svc is not None and svc.active == "active"
    if not running:
        reasons.append(f"{desired.service} service is {svc.active if svc else 'not installed'}")
        attrs.append(AttrDiff(name="service", before=svc.active if svc else None, after="active"))
    if not reasons:
        return None
    configure = any(facts.files.get(f.path) is None or facts.files[f.path].sha256 != f.sha256
                    for f in desired.files)
    if running and not need_install and not stale and _start_only_change(desired, facts):
        reasons.append("controller.quorum.bootstrap.servers is read only at start: written, no restart")
        return ServiceChange(address=address, service=desired.service, key=desired.key, host=desired.host,
                             action=Action.UPDATE, reasons=tuple(reasons), attrs=tuple(attrs),
                             install_java=need_java, configure=True, file_hashes=hashes)
    dyn = _dynamic_keys(desired, facts, dynamic) if running and not need_install and not stale else None
    if dyn:
        reasons.append(f"{', '.join(dyn)} {LIVE_REASON}")
        return ServiceChange(address=address, service=desired.service, key=desired.key, host=desired.host,
                             action=Action.UPDATE, reasons=tuple(reasons), attrs=tuple(attrs),
                             install_java=need_java, configure=True, file_hashes=hashes, dynamic_keys=dyn)
    return ServiceChange(address=address, service=desired.service, key=desired.key, host=desired.host,
                         action=Action.UPDATE, reasons=tuple(reasons), attrs=tuple(attrs),
                         install_java=need_java, install_artifact=artifact_id if need_install else None,
                         configure=configure, file_hashes=hashes, start=not running,
                         restart=running and (restart_files or need_install or stale),
                         restart_reasons=tuple(why) if running else ())


def _pinned(c: ServiceChange, spec: ClusterSpec, broker: BrokerSpec, facts: HostFacts, artifact_id: str,
            pin: str) -> ServiceChange:
    """An upgrade's change in two rolls. The first-roll work is what the pinned files and the new
    build still need on this host (none for a broker already on both, e.g. when resuming); the
    second roll (final files, protocol raised) always follows, once every broker runs the build."""
    pinned = F.broker_desired(spec, broker, artifact_id, ibp_pin=pin)
    first = _service_change(pinned, facts, artifact_id)
    return c.model_copy(update={
        "ibp_pin": pin, "pinned_hashes": {f.path: f.sha256 for f in pinned.files},
        "install_artifact": first.install_artifact if first else None,
        "configure": bool(first and first.configure), "restart": bool(first and first.restart),
        "restart_reasons": first.restart_reasons if first else (),
        "start": bool(first and first.start),
        "reasons": (*c.reasons, f"upgrade in two rolls: inter.broker.protocol.version stays {pin} "
                                f"until every broker runs {spec.kafka.version}, then it is raised"),
        "attrs": (*c.attrs, AttrDiff(name="inter.broker.protocol.version (during the first roll)", after=pin))})


def node_id_on(facts: HostFacts, service: str = "kafka") -> str | None:
    """The node id a Kafka service on this host is configured with (broker.id, or KRaft's node.id)."""
    seen = facts.files.get(F.SERVICE_PATHS[service].config)
    if seen and seen.content:
        props = F.parse_properties(seen.content)
        return props.get("node.id") or props.get("broker.id")
    return None


def _unformatted(desired: F.ServiceDesired, facts: HostFacts) -> list[str]:
    """KRaft storage dirs of the service that the storage tool has not formatted yet."""
    if desired.storage is None:
        return []
    return [d for d in desired.storage.dirs if f"{d}/{F.META_PROPERTIES}" not in facts.files]


def delete_change(service: str, facts: HostFacts, keep_artifacts: bool = False) -> ServiceChange | None:
    """The removal of a service the spec does not want on this host (None when nothing is there).

    A broker that still holds replicas is drained first: that is the reassignment change the
    diff adds (`reassignment_change`), and its stop step verifies the broker holds nothing.
    """
    svc = facts.services.get(service)
    paths = F.SERVICE_PATHS[service]
    own_files = any(facts.files.get(p) is not None for p in (paths.unit, paths.config))
    # A build on the host shows this service was installed only where no other service of that
    # build is (staying or found): a controller-only host has the kafka build, not a broker.
    sharing = [o for o in F.SERVICES if o != service and F.artifact_name(o) == F.artifact_name(service)
               and any(facts.files.get(p) is not None for p in (F.SERVICE_PATHS[o].unit, F.SERVICE_PATHS[o].config))]
    installed = not keep_artifacts and not sharing and any(
        a.name == F.artifact_name(service) for a in facts.artifacts)
    if not (installed or own_files) and (svc is None or svc.active == "inactive") and not (
            svc is not None and svc.enabled):
        return None
    if service == "zookeeper":
        key = facts.host
    else:
        key = node_id_on(facts, service) or facts.host
    address = F.address(service, key)
    return ServiceChange(address=address, service=service, key=key, host=facts.host, action=Action.DELETE,
                         reasons=(f"{service} on {facts.host} is not in the spec",),
                         attrs=(AttrDiff(name="service", before=svc.active if svc else "installed", after=None),),
                         deletions=deletions(service, facts, keep_artifacts))


def ensemble_change(spec: ClusterSpec, observed: ObservedCluster, changes: list[Change],
                    errors: list[SpecIssue]) -> EnsembleChange | None:
    """ZooKeeper servers to add or remove by dynamic reconfiguration (no restart of the others).

    Compared with ZooKeeper's own membership (/zookeeper/config), not with files: ZooKeeper keeps
    it. Refused when the membership cannot be read while servers would be removed, and when most of
    the new ensemble would be servers that are not members yet (its quorum would hold no history).
    """
    if spec.kraft:
        return None
    members = observed.cluster.zookeeper_members
    removed_nodes = [c for c in changes if c.action is Action.DELETE and c.service == "zookeeper"]
    if not observed.cluster.zookeeper_reachable or not members:
        if removed_nodes:
            errors.append(SpecIssue(path="zookeeper.nodes", message=(
                f"{', '.join(c.address for c in removed_nodes)} would be removed, but the ensemble's membership "
                f"cannot be read ({observed.cluster.zookeeper_error or 'no /zookeeper/config'}); not removing a "
                "ZooKeeper server that may still be a voting member")))
        return None
    want = {n.myid: F.zk_server_line(spec, n)[1] for n in spec.zk_nodes()}
    join = tuple(sorted(set(want) - set(members)))
    leave = tuple(sorted(set(members) - set(want)))
    # security.zookeeper_tls true on a running ensemble: its lines drop the plaintext client port
    # (only that part differs; nothing else of a member's line is changed by reconfiguration)
    update = tuple(sorted(i for i in set(want) & set(members)
                          if ";" in members[i] and members[i].split(";")[0] == want[i]))
    if update and (join or leave):
        errors.append(SpecIssue(path="zookeeper.nodes", message=(
            "the ensemble's membership and ZooKeeper TLS would change in one apply; change the servers first, "
            "then turn ZooKeeper TLS on (or the other way round)")))
        return None
    if update:
        return EnsembleChange(
            address="zookeeper.ensemble", service="zookeeper", key="ensemble", host="cluster",
            action=Action.UPDATE, reasons=(
                "ZooKeeper TLS only: the membership lines drop the plaintext client port, before each server "
                "restarts with its TLS client port on that port number",),
            attrs=tuple(AttrDiff(name=f"server.{i}", before=members[i], after=want[i]) for i in update),
            zk_update=update)
    if not join and not leave:
        return None
    staying = len(set(want) & set(members))
    if staying * 2 <= len(want):
        errors.append(SpecIssue(path="zookeeper.nodes", message=(
            f"the new ensemble ({len(want)} servers) would have only {staying} current member(s); a majority of it "
            "must already be members so its quorum holds the ensemble's data. Change fewer servers per apply.")))
        return None
    before = ",".join(map(str, sorted(members)))
    after = ",".join(map(str, sorted(want)))
    reasons = []
    if join:
        reasons.append(f"server(s) {', '.join(map(str, join))} join the ensemble (started first, then added)")
    if leave:
        reasons.append(f"server(s) {', '.join(map(str, leave))} leave the ensemble (removed, then stopped)")
    return EnsembleChange(
        address="zookeeper.ensemble", service="zookeeper", key="ensemble", host="cluster",
        action=Action.UPDATE, reasons=(*reasons, "dynamic reconfiguration: no other server restarts"),
        attrs=(AttrDiff(name="members", before=before, after=after),
               AttrDiff(name="quorum", before=str(len(members) // 2 + 1), after=str(len(want) // 2 + 1))),
        zk_join=join, zk_leave=leave)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def reassignment_change(spec: ClusterSpec, scale: ScalePlan, measured_bytes_per_s: float | None = None,
                        throttle_mib_per_s: float | None = None) -> ReassignChange:
    """The partition reassignment a broker-set change (or a rebalance) needs, as one reviewable change.

    The time estimate divides the bytes to copy by the throttle, or by the throughput measured in
    this cluster's last reassignment when that was lower.
    """
    r = spec.kafka.reassignment
    throttle = throttle_mib_per_s or r.throttle_mib_per_s
    rate = throttle * 2**20
    if measured_bytes_per_s:
        rate = min(rate, measured_bytes_per_s)
    p = scale.proposal
    moves = tuple(ReplicaMove(topic=m.topic, partition=m.partition, before=m.before, after=m.after, bytes=m.bytes)
                  for m in p.moves)
    eta = p.bytes_to_move / rate if rate else 0.0
    b, a = scale.before, scale.after
    spans = cast("dict[int, int]", a["racks_per_partition"])  # balance_report: racks spanned -> partitions
    attrs = (
        AttrDiff(name="replicas per broker", before=_counts(b["replicas"]), after=_counts(a["replicas"])),
        AttrDiff(name="leaders per broker", before=_counts(b["leaders"]), after=_counts(a["leaders"])),
        AttrDiff(name="replica moves", after=f"{p.replica_moves} (lower bound {p.lower_bound}); "
                                             f"{p.reorders} leader-only change(s)"),
        AttrDiff(name="data to copy", after=f"{_mib(p.bytes_to_move)}, about {eta:.0f}s at {_mib(rate)}/s"
                                            f" (throttled to {throttle:g} MiB/s per broker)"),
        AttrDiff(name="racks per partition", after=", ".join(f"{k}: {v}" for k, v in
                                                             spans.items())),
    )
    return ReassignChange(address="partitions", service="kafka", key="reassignment", host="cluster",
                          action=Action.UPDATE,
                          reasons=(scale.reason, *(n for n in p.notes if not _summary_note(n))), attrs=attrs,
                          moves=moves, drain=scale.removed,
                          throttle_bytes_per_s=int(throttle * 2**20), per_broker=r.max_partitions_per_broker)


def _summary_note(note: str) -> bool:
    """The planner's own summary lines, which the change's attributes already show."""
    return note.startswith(("scale-out:", "scale-in:")) or "replica move(s), lower bound" in note


def _counts(d: object) -> str:
    return " ".join(f"{k}:{v}" for k, v in dict(cast("dict[int, int]", d)).items())  # balance_report: broker -> count


def diff(spec: ClusterSpec, observed: ObservedCluster, artifacts: ArtifactIds,
         sizes: dict[tuple[str, int], int] | None = None, measured_bytes_per_s: float | None = None) -> DiffResult:
    """Changes per resource, plus the partition reassignment a change of the broker set needs
    (`sizes`: bytes per partition, for ordering moves and estimating the copy)."""
    errors: list[SpecIssue] = []
    for host, why in observed.unreachable().items():
        errors.append(SpecIssue(path=f"host {host}", message=f"unreachable: {why}; not planning without it"))
    if errors:
        return DiffResult([], errors)
    errors += check_against_facts(spec, {h: f.mem_total_bytes for h, f in observed.hosts.items()})
    errors += listener_issues(spec, observed)
    errors += zookeeper_tls_issues(spec, observed)
    errors += at_rest_issues(spec, observed)

    changes: list[Change] = list(volume_changes(spec, observed, errors))
    wanted: dict[str, set[str]] = {}
    table = config_table(spec.kafka.version)
    dynamic = table.dynamic_broker_configs if table else frozenset()
    mode = mode_of(spec)
    pin = None if spec.kraft else cluster_ibp_pin(spec, observed, artifacts.kafka)
    brokers = {str(b.id): b for b in spec.brokers}
    for d in mode.services(spec, artifacts):
        wanted.setdefault(d.host, set()).add(d.service)
        facts = observed.hosts[d.host]
        if d.service != "zookeeper":
            was = node_id_on(facts, d.service)
            if was is not None and was != d.key:
                field = (f"brokers[{spec.brokers.index(brokers[d.key])}].id" if d.service == "kafka" else
                         f"controllers[{[str(c.id) for c in spec.controllers].index(d.key)}].id")
                kind = F.ADDRESS_PREFIX[d.service]
                errors.append(SpecIssue(path=field, message=(
                    f"{d.host} runs {kind} {was}; a {kind} id cannot change in place (its data dirs belong to "
                    f"{kind} {was}). Remove {kind} {was} and add {kind} {d.key} as a new host.")))
                continue
        art = mode.artifact_id(d.service, artifacts)
        c = _service_change(d, facts, art, dynamic if d.service == "kafka" else frozenset())
        if c and pin and d.service == "kafka" and c.action is Action.UPDATE and not c.dynamic_keys:
            c = _pinned(c, spec, brokers[d.key], facts, artifacts.kafka, pin)
        if d.storage is not None:
            todo = _unformatted(d, facts)
            if todo:
                c = c or ServiceChange(address=d.address, service=d.service, key=d.key, host=d.host,
                                       action=Action.UPDATE, reasons=(),
                                       file_hashes={f.path: f.sha256 for f in d.files})
                c = c.model_copy(update={
                    "format_storage": True, "voter": d.storage.voter,
                    "reasons": (*c.reasons, f"storage not formatted yet: {', '.join(todo)}")})
            elif c is not None:
                c = c.model_copy(update={"voter": d.storage.voter})
        if c:
            changes.append(c)
    for host, facts in sorted(observed.hosts.items()):
        for service in F.SERVICES:
            if service not in wanted.get(host, set()):
                # a Kafka service leaving a host where another stays keeps the build they share
                shared = service != "zookeeper" and bool(wanted.get(host, set()) - {"zookeeper"})
                c = delete_change(service, facts, keep_artifacts=shared)
                if c:
                    changes.append(c)
    ensemble = ensemble_change(spec, observed, changes, errors)
    if ensemble:
        changes.append(ensemble)
    leaving = [c for c in changes if c.action is Action.DELETE and c.service == "kafka"]
    if leaving and not observed.cluster.reachable:
        errors.append(SpecIssue(path="brokers", message=(
            f"{', '.join(c.address for c in leaving)} would be removed, but the partition assignments cannot be "
            f"read ({observed.cluster.error or 'the cluster is unreachable'}); not removing a broker "
            "without knowing it holds nothing")))
        return DiffResult(changes, errors)
    try:
        scale = plan_scaling(spec, observed, sizes)
    except ScaleRefused as e:
        errors.append(SpecIssue(path="brokers", message=str(e)))
        return DiffResult(changes, errors)
    moving = observed.cluster.reassigning
    if scale and moving:
        errors.append(SpecIssue(path="brokers", message=(
            f"{scale.reason}, but a partition reassignment is still running ({len(moving)} partitions, e.g. "
            f"{', '.join(moving[:3])}); wait for it (kafkaform reassignment status), then plan again")))
    elif scale and not has(spec.kafka.version, "reassignment_api"):
        errors.append(SpecIssue(path="kafka.version", message=(
            f"{scale.reason}, but Kafka {spec.kafka.version} has no partition reassignment in the Admin API "
            "(2.4+); the ZooKeeper /admin/reassign_partitions path for older clusters is not built")))
    elif scale:
        changes.append(reassignment_change(spec, scale, measured_bytes_per_s))
    leftover = throttles_change(observed)
    if leftover:
        changes.append(leftover)
    features = features_change(spec, observed, errors)
    if features:
        changes.append(features)
    registrations = unregister_change(spec, observed)
    if registrations:
        changes.append(registrations)
    voters = voters_change(spec, observed, changes, errors)
    if voters:
        changes.append(voters)
    return DiffResult(changes, errors)


def voters_change(spec: ClusterSpec, observed: ObservedCluster, changes: list[Change],
                  errors: list[SpecIssue]) -> VoterChange | None:
    """KRaft controllers to add to or remove from the quorum (AddRaftVoter / RemoveRaftVoter, one
    at a time; no running controller restarts). Compared with the quorum's own voters
    (DescribeQuorum), not with files. Refused while the quorum cannot be read and a controller
    would go, and when most of the new quorum would be controllers that are not voters yet."""
    if not spec.kraft:
        return None
    quorum = observed.cluster.quorum
    want = {i for i, _ in spec.voters()}
    leaving_nodes = [c for c in changes if c.action is Action.DELETE and c.service == "kafka-controller"]
    if quorum is None or not quorum.voters:
        if leaving_nodes:
            errors.append(SpecIssue(path="controllers", message=(
                f"{', '.join(c.address for c in leaving_nodes)} would be removed, but the quorum's voters cannot be "
                f"read ({observed.cluster.error or 'no leader'}); not removing a controller that may still vote")))
        return None
    have = set(quorum.voter_ids)
    join = tuple(sorted(want - have))
    leave = tuple(sorted(have - want))
    if not join and not leave:
        return None
    staying = len(want & have)
    if staying * 2 <= len(want):
        errors.append(SpecIssue(path="controllers", message=(
            f"the new quorum ({len(want)} voters) would have only {staying} current voter(s); a majority of it must "
            "already vote so it holds the metadata. Change fewer controllers per apply.")))
        return None
    reasons = []
    if join:
        reasons.append(f"controller(s) {', '.join(map(str, join))} join the quorum (started as observers, "
                       "then added as voters)")
    if leave:
        reasons.append(f"controller(s) {', '.join(map(str, leave))} leave the quorum (removed as voters, "
                       "then stopped)")
    dirs = {v.node_id: v.directory_id or "" for v in quorum.voters if v.node_id in leave}
    hosts = dict(spec.voters())
    anchor = next(hosts[i] for i in sorted(want & have))
    return VoterChange(address="controllers.quorum", service="kafka-controller", key="quorum", host="cluster",
                       action=Action.UPDATE, reasons=(*reasons, "one voter at a time; no running controller restarts"),
                       attrs=(AttrDiff(name="voters", before=",".join(map(str, sorted(have))),
                                       after=",".join(map(str, sorted(want)))),
                              AttrDiff(name="majority", before=str(len(have) // 2 + 1), after=str(len(want) // 2 + 1))),
                       voters_join=join, voters_leave=leave, voter_dirs=dirs,
                       voter_hosts={**{i: hosts[i] for i in join}, **dict.fromkeys(leave, anchor)})


def unregister_change(spec: ClusterSpec, observed: ObservedCluster) -> UnregisterChange | None:
    """KRaft keeps a broker's registration after the broker is gone (fenced), and a stale
    registration blocks feature upgrades: brokers that left the spec are unregistered once they
    are drained and stopped (in this plan, or already)."""
    if not spec.kraft:
        return None
    wanted = {b.id for b in spec.brokers}
    gone = tuple(sorted(b for b in observed.cluster.broker_ids if b not in wanted))
    if not gone:
        return None
    return UnregisterChange(
        address="registrations", service="kafka", key="registrations", host="cluster", action=Action.UPDATE,
        reasons=(f"broker(s) {', '.join(map(str, gone))} left the spec but are still registered with the "
                 "controllers (unregistered once drained and stopped; Kafka's ClusterTool)",),
        attrs=(AttrDiff(name="registered brokers", before=",".join(map(str, observed.cluster.broker_ids)),
                        after=",".join(str(b) for b in observed.cluster.broker_ids if b in wanted)),),
        unregister=gone)


def features_change(spec: ClusterSpec, observed: ObservedCluster, errors: list[SpecIssue]) -> FeatureChange | None:
    """KRaft: raise metadata.version to the spec's release once every node runs it (a version
    upgrade's last step). Only metadata.version, named explicitly: kraft.version and the other
    features are never raised as a side effect (raising kraft.version turns a static quorum dynamic
    for good, KAFKA-21426). A release older than the cluster's metadata.version is refused."""
    if not spec.kraft:
        return None
    table = config_table(spec.kafka.version)
    current = observed.cluster.features.get("metadata.version")
    if table is None or table.metadata_version is None or current is None:
        return None  # a new cluster is formatted at its release's level
    target = table.metadata_version
    if current > target:
        errors.append(SpecIssue(path="kafka.version", message=(
            f"the cluster runs metadata.version {metadata_version_name(current)}, newer than Kafka "
            f"{spec.kafka.version} supports ({metadata_version_name(target)}); kafkaform never downgrades "
            "metadata.version")))
        return None
    if current == target:
        return None
    return FeatureChange(
        address="features", service="kafka", key="metadata.version", host="cluster", action=Action.UPDATE,
        reasons=(f"Kafka {spec.kafka.version} finalizes metadata.version {metadata_version_name(target)}; "
                 "raised once every node runs it (UpdateFeatures; kraft.version and the other features "
                 "are left as they are)",),
        attrs=(AttrDiff(name="metadata.version", before=metadata_version_name(current),
                        after=metadata_version_name(target)),),
        feature_levels={"metadata.version": target})


def throttles_change(observed: ObservedCluster) -> ThrottleChange | None:
    """Replication throttles while no reassignment runs: left by one that was interrupted (or set
    by hand). They cap how fast any replica catches up, e.g. after a restart, so they go."""
    st = observed.cluster
    if st.reassigning or not (st.throttled_topics or st.throttled_brokers):
        return None
    attrs = []
    if st.throttled_brokers:
        attrs.append(AttrDiff(name="throttled brokers", before=",".join(map(str, st.throttled_brokers))))
    if st.throttled_topics:
        attrs.append(AttrDiff(name="throttled topics", before=",".join(st.throttled_topics)))
    return ThrottleChange(address="throttles", service="kafka", key="throttles", host="cluster", action=Action.UPDATE,
                          reasons=("replication throttles are set but no partition reassignment is running "
                                   "(left by an interrupted one?); they would slow every replica catching up",),
                          attrs=tuple(attrs), throttled_topics=st.throttled_topics,
                          throttled_brokers=st.throttled_brokers)


def _systemd_time(raw: str | None) -> datetime | None:
    """systemd's ActiveEnterTimestamp ('Thu 2026-11-26 07:05:43 UTC') as an aware datetime.

    Only UTC/GMT stamps are read: strptime's %Z also accepts the control machine's own zone name
    (e.g. CET) but drops the offset, which would shift the time and could confirm a restart that
    never happened. Any other zone gives None, so the restart is repeated rather than skipped.
    """
    if not raw or raw.strip().rsplit(" ", 1)[-1] not in ("UTC", "GMT"):
        return None
    try:
        return datetime.strptime(raw.strip(), "%a %Y-%m-%d %H:%M:%S %Z").replace(tzinfo=UTC)
    except ValueError:
        return None


def carry_pending_restarts(changes: list[Change], spec: ClusterSpec, observed: ObservedCluster,
                           pending: list[PendingRestart]) -> tuple[list[Change], list[tuple[str, str]]]:
    """Fold restarts owed by an interrupted apply into this plan's changes.

    A restart the interrupted apply had begun counts as done when the service's current process
    started after that moment (the restart happened; only its record was lost): it is confirmed,
    not repeated, so no broker restarts twice for one change. Returns (changes, confirmed).
    """
    hosts = ({f"broker.{b.id}": b.host for b in spec.brokers} | {f"zookeeper.{n.myid}": n.host
                                                                  for n in spec.zk_nodes()}
             | {f"controller.{c.id}": c.host for c in spec.controllers})
    by_addr = {c.address: c for c in changes if isinstance(c, ServiceChange)}
    confirmed: list[tuple[str, str]] = []
    out = list(changes)
    for p in pending:
        if hosts.get(p.address) != p.host:
            continue  # the resource left the spec or moved: the diff decides what happens to it
        facts = observed.hosts.get(p.host)
        svc = facts.services.get(p.service) if facts else None
        began = datetime.fromisoformat(p.started_at) if p.started_at else None
        running_since = _systemd_time(svc.started_at if svc else None)
        if began and running_since and svc and svc.active == "active" and running_since >= began:
            confirmed.append((p.step, f"{p.service} on {p.host} runs since {svc.started_at}, after the "
                                      f"interrupted restart began ({p.started_at})"))
            continue
        reason = "restart owed by an interrupted apply (journal)"
        c = by_addr.get(p.address)
        if c is not None and c.ibp_pin and p.step.endswith("#final"):
            continue  # this plan's second roll restarts it anyway, after every broker runs the build
        if c is None:
            c = ServiceChange(address=p.address, service=p.service, key=p.address.split(".", 1)[1], host=p.host,
                              action=Action.UPDATE, reasons=(reason,), restart=True,
                              restart_reasons=(RestartReason.OWED,))
            out.append(c)
        elif c.action is Action.UPDATE and not c.restart and not c.start:
            # A live update folded into the owed restart no longer happens live: drop its reason.
            kept = tuple(r for r in c.reasons if not r.endswith(LIVE_REASON))
            out[out.index(c)] = c.model_copy(update={"restart": True, "dynamic_keys": (),
                                                     "restart_reasons": (RestartReason.OWED,),
                                                     "reasons": (*kept, reason)})
    return out, confirmed
