"""The stages wired together for the CLI, tests and benchmarks: resolve, observe, plan, apply.

Each function does one stage's I/O and hands typed data on; the decisions stay in the pure
modules (spec, diff, plan.build).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import artifacts, scaling
from reconciler import files as F
from reconciler.apply import state
from reconciler.apply.state import Journal, record_revision
from reconciler.diff import AttrDiff, Change, carry_pending_restarts, delete_change, diff
from reconciler.files import SERVER_PROPERTIES, parse_properties
from reconciler.modes import mode_of
from reconciler.observe.model import ObservedCluster
from reconciler.observe.targets import observe, ssh_settings  # noqa: F401  (re-exported stage)
from reconciler.plan import planfile
from reconciler.plan.build import KRaftIds, build_plan
from reconciler.plan.model import Plan
from reconciler.spec import ClusterSpec, SpecIssue, broker_config

if TYPE_CHECKING:  # the apply stack (ansible-runner) loads only when something is applied
    from reconciler.apply import executor

Progress = Callable[[str], None]


class PlanRefused(Exception):
    """The plan cannot be made or must not be applied; `issues` say why, each naming a field or host."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


Artifacts = artifacts.SpecArtifacts
resolve_artifacts = artifacts.resolve_for_spec


def effective_min_isr(spec: ClusterSpec, observed: ObservedCluster) -> int:
    """The cluster-wide min.insync.replicas to prove availability against: the larger of what the
    brokers run with now and what the spec asks for (a change of the value itself is then safe
    under both)."""
    values = [int(str(broker_config(spec).get("min.insync.replicas", 1)))]
    for facts in observed.hosts.values():
        seen = facts.files.get(SERVER_PROPERTIES)
        raw = parse_properties(seen.content).get("min.insync.replicas") if seen and seen.content else None
        if raw and raw.isdigit():
            values.append(int(raw))
    return max(values)


def partition_sizes(spec: ClusterSpec, progress: Progress | None = None) -> dict[tuple[str, int], int]:
    """Bytes per partition (DescribeLogDirs); empty when the brokers cannot say (moves are then
    counted, not weighed)."""
    from reconciler.apply import reassign
    from reconciler.observe.connect import admin_endpoint

    try:
        return reassign.partition_sizes(admin_endpoint(spec))
    except Exception as e:  # noqa: BLE001 - sizes refine the plan, they never block it
        if progress:
            progress(f"partition sizes unavailable ({type(e).__name__}: {e}); planning by replica counts")
        return {}


def partition_sizes_if_moving(spec: ClusterSpec, observed: ObservedCluster,
                              progress: Progress | None = None) -> dict[tuple[str, int], int] | None:
    """Partition sizes, read only when the broker set changes and data may move, and only from a
    cluster whose brokers answered the observation (else the Admin client's bootstrap would wait
    its whole timeout for nothing)."""
    if not any(scaling.brokers_to_balance(spec, observed)):
        return None
    if not observed.cluster.kafka_reachable:
        if progress:
            progress("partition sizes unavailable (no broker answered); planning by replica counts")
        return {}
    return partition_sizes(spec, progress)


def measured_reassign_rate(cluster: str, min_bytes: int = 64 * 2**20) -> float | None:
    """Bytes/s of this cluster's last reassignment that moved enough data to measure."""
    for e in reversed(Journal(cluster).entries()):
        if e.get("event") == "reassign_done" and e.get("bytes", 0) >= min_bytes and e.get("seconds"):
            return e["bytes"] / e["seconds"]
    return None


def new_kafka_uuid() -> str:
    """A random id as Kafka's Uuid.randomUuid makes them: 16 bytes, base64url without padding, never
    starting with '-' (its tools would read it as an option) and never a reserved id."""
    import base64
    import os

    while True:
        raw = os.urandom(16)
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not text.startswith("-") and raw not in (bytes(16), bytes(15) + b"\x01"):
            return text


def _meta(observed: ObservedCluster, host: str, dir_path: str) -> dict[str, str] | None:
    facts = observed.hosts.get(host)
    seen = facts.files.get(f"{dir_path}/{F.META_PROPERTIES}") if facts else None
    return parse_properties(seen.content) if seen and seen.content else None


def kraft_ids(spec: ClusterSpec, observed: ObservedCluster) -> tuple[KRaftIds | None, list[SpecIssue]]:
    """The KRaft cluster id (read back from the hosts' meta.properties, else kept on this machine,
    else new) and, while no voter is formatted yet, the initial controllers with their directory
    ids. Refused when the hosts disagree about which cluster they belong to."""
    if not spec.kraft:
        return None, []
    dirs = [(b.host, d) for b in spec.brokers for d in b.data_dirs] + [(c.host, c.metadata_dir)
                                                                      for c in spec.controllers]
    seen = {}
    for host, d in dirs:
        meta = _meta(observed, host, d)
        if meta and meta.get("cluster.id"):
            seen[f"{host}:{d}"] = meta["cluster.id"]
    kept = state.kraft_identity(spec.name)
    ids = sorted(set(seen.values()))
    if len(ids) > 1:
        where = ", ".join(f"{k}={v}" for k, v in sorted(seen.items()))
        return None, [SpecIssue(path="brokers", message=f"the hosts' storage belongs to different clusters ({where})")]
    cluster_id = ids[0] if ids else (kept["cluster_id"] if kept else new_kafka_uuid())
    voter_dirs = [(c.id, c.host, c.metadata_dir) for c in spec.controllers] + [
        (b.id, b.host, b.data_dirs[0]) for b in spec.brokers if b.controller]
    formed = any(_meta(observed, host, d) for _, host, d in voter_dirs)
    if kept and kept.get("cluster_id") == cluster_id and kept.get("initial_controllers"):
        initial = kept["initial_controllers"]  # an interrupted create: the same voters and dir ids
    elif not formed:
        port = spec.kafka.controller_listener.port
        initial = ",".join(f"{i}@{host}:{port}:{new_kafka_uuid()}" for i, host, _ in voter_dirs)
    else:
        initial = None
    return KRaftIds(cluster_id=cluster_id, initial_controllers=initial), []


def password_marks(spec: ClusterSpec) -> dict[str, str]:
    """Each spec user's keyed password digest (HMAC under the cluster's plan key)."""
    from reconciler.security.material import material_of

    if spec.security is None or not spec.security.users:
        return {}
    key = planfile.signing_key(spec.name)
    assert key is not None
    return {name: secret.fingerprint(key) for name, secret in material_of(spec).users.items()}


def access_change(spec: ClusterSpec, observed: ObservedCluster, progress: Progress | None = None) -> Change | None:
    """The users and ACLs to create, rotate and delete (see security.access). While the brokers
    cannot be read (a cluster being created, or one whose create stopped before any broker
    registered) the cluster is taken to hold none: creating a user or an ACL twice is harmless, and
    a deletion waits for the next plan."""
    from reconciler.diff import AccessChange, Action
    from reconciler.security.access import AclRow, desired_rows, plan_access

    if spec.security is None:
        return None
    users: set[str] = set()
    acls: set[AclRow] = set()
    others = 0
    if observed.cluster.reachable and observed.cluster.broker_ids:
        from reconciler.observe.access import AccessUnreadable, read_access

        try:
            users, acls, others = read_access(spec)
        except AccessUnreadable as e:
            raise PlanRefused([SpecIssue(path="security", message=f"cannot read the cluster's users and ACLs: {e}")]
                              ) from None
    managed_users, managed_rows = state.access_state(spec.name)
    managed_acls = {AclRow(**r) for r in managed_rows}
    a = plan_access(password_marks(spec), desired_rows(spec.security.acls), users, acls, managed_users,
                    managed_acls)
    a = a.model_copy(update={"unmanaged_acls": a.unmanaged_acls + others})
    if a.empty:
        return None
    attrs = [AttrDiff(name=f"user {u}", before=None, after="SCRAM-SHA-512 (password from the spec)")
             for u in a.users_create]
    attrs += [AttrDiff(name=f"user {u}", before="(sensitive)", after="(sensitive, changed)") for u in a.users_rotate]
    attrs += [AttrDiff(name=f"user {u}", before="SCRAM-SHA-512", after=None) for u in a.users_delete]
    attrs += [AttrDiff(name="acl", before=None, after=r.describe()) for r in a.acls_add]
    attrs += [AttrDiff(name="acl", before=r.describe(), after=None) for r in a.acls_delete]
    reasons = ["users and ACLs differ from the spec"]
    if a.unmanaged_users or a.unmanaged_acls:
        reasons.append(f"left alone: {a.unmanaged_users} user(s) and {a.unmanaged_acls} ACL(s) kafkaform did not "
                       "make and the spec does not list")
    return AccessChange(address="access", service="kafka", key="access", host="cluster", action=Action.UPDATE,
                        reasons=tuple(reasons), attrs=tuple(attrs), access=a)


def make_plan(spec: ClusterSpec, spec_path: str, observed: ObservedCluster, arts: Artifacts,
              destroy: bool = False, allow_unavailable: bool = False, roll_by_rack: bool = False,
              progress: Progress | None = None, format_devices: bool = False) -> Plan:
    from reconciler.security.at_rest import formats

    confirmed: list[tuple[str, str]] = []
    if destroy:
        changes = destroy_changes(observed)
        errors: list[SpecIssue] = [SpecIssue(path=f"host {h}", message=f"unreachable: {why}")
                                   for h, why in observed.unreachable().items()]
    else:
        sizes = partition_sizes_if_moving(spec, observed, progress)
        result = diff(spec, observed, arts.ids, sizes=sizes, measured_bytes_per_s=measured_reassign_rate(spec.name))
        changes, errors = result.changes, result.errors
        changes, confirmed = carry_pending_restarts(changes, spec, observed, Journal(spec.name).pending_restarts())
        if not errors:
            access = access_change(spec, observed, progress)
            if access is not None:
                changes.append(access)
            changes += mode_of(spec).metadata_security_changes(spec, observed)
    kraft, kraft_errors = (None, []) if destroy else kraft_ids(spec, observed)
    errors += kraft_errors
    formatted = formats(changes)
    if formatted and not format_devices:
        errors.append(SpecIssue(path="security.volumes", message=(
            f"this plan would format {', '.join(formatted)} (LUKS2), destroying whatever is on "
            f"{'them' if len(formatted) > 1 else 'it'}: pass --format-devices to plan (and apply) to allow it")))
    if errors:
        raise PlanRefused(errors)
    plan = build_plan(changes, observed, spec_path=str(Path(spec_path).resolve()),
                      spec_digest=planfile.spec_digest(spec), destroy=destroy,
                      default_min_isr=effective_min_isr(spec, observed),
                      broker_racks={b.id: b.rack for b in spec.brokers} if roll_by_rack else None,
                      kraft=kraft, format_devices=format_devices)
    risky = [s for s in plan.steps if s.unavailable]
    if risky and not allow_unavailable:
        raise PlanRefused([SpecIssue(path=s.address or s.host, message=(
            f"restart refused: {s.availability}. "
            + ("Bring the quorum's other nodes back and caught up first (the quorum rule above) "
               if "the metadata quorum" in s.unavailable else "Bring the missing replicas back into the ISR first ")
            + "(or pass --allow-unavailable to accept the outage)")) for s in risky])
    return plan.model_copy(update={"allow_unavailable": allow_unavailable,
                                   "confirmed_restarts": tuple(confirmed) if not destroy else ()})


def make_rebalance_plan(spec: ClusterSpec, spec_path: str, observed: ObservedCluster, arts: Artifacts, *,
                        max_moves: int | None = None, throttle_mib_per_s: float | None = None,
                        progress: Progress | None = None) -> tuple[Plan, dict[str, object]]:
    """`kafkaform rebalance`: an ordinary plan (saved, stale-checked, locked, journaled like any
    other) whose one change is a minimal-movement reassignment over the spec's brokers, and the
    balance figures for people and scripts. Made only for a cluster that matches its spec: the
    spec's own plan comes first (it may add or drain brokers, which moves data itself)."""
    from reconciler.diff import reassignment_change
    from reconciler.placement import BrokerInfo, PlacementError, balance_report, plan_reassignment

    pending = make_plan(spec, spec_path, observed, arts, progress=progress)
    if not pending.empty:
        n = len(pending.changes)
        raise PlanRefused([SpecIssue(path="cluster", message=(
            f"cluster {spec.name!r} differs from its spec ({n} change(s): "
            f"{', '.join(c.address for c in pending.changes[:5])}); run kafkaform plan/apply first, then rebalance"))])
    if not observed.cluster.reachable:
        raise PlanRefused([SpecIssue(path="cluster", message=f"cannot read the partition assignments: "
                                                               f"{observed.cluster.error}")])
    brokers = [BrokerInfo(id=b.id, rack=b.rack) for b in spec.brokers]
    try:
        proposal = plan_reassignment(brokers, observed.cluster.partitions, partition_sizes(spec, progress),
                                     max_moves=max_moves)
    except PlacementError as e:
        raise PlanRefused([SpecIssue(path="rebalance", message=str(e))]) from None
    current = {(p.topic, p.partition): p.replicas for p in observed.cluster.partitions}
    scale = scaling.ScalePlan(proposal=proposal, added=(), removed=(), before=balance_report(brokers, current),
                              after=balance_report(brokers, proposal.target))
    changes = ([reassignment_change(spec, scale, measured_reassign_rate(spec.name), throttle_mib_per_s)]
               if proposal.moves else [])
    plan = build_plan(changes, observed, spec_path=str(Path(spec_path).resolve()),
                      spec_digest=planfile.spec_digest(spec), default_min_isr=effective_min_isr(spec, observed))
    rate = (throttle_mib_per_s or spec.kafka.reassignment.throttle_mib_per_s) * 2**20
    doc: dict[str, object] = {
        "moves": [{"topic": m.topic, "partition": m.partition, "before": list(m.before), "after": list(m.after),
                   "bytes": m.bytes} for m in proposal.moves],
        "replica_moves": proposal.replica_moves, "lower_bound": proposal.lower_bound,
        "leader_only_changes": proposal.reorders, "bytes_to_move": proposal.bytes_to_move,
        "eta_seconds": round(proposal.bytes_to_move / rate, 1), "before": scale.before, "after": scale.after,
        "notes": list(proposal.notes)}
    return plan, doc


def destroy_changes(observed: ObservedCluster) -> list[Change]:
    """Delete every kafka and zookeeper service found (no drain: destroy removes the data too)."""
    out: list[Change] = []
    for _host, facts in sorted(observed.hosts.items()):
        for service in F.SERVICES:
            c = delete_change(service, facts)
            if c:
                out.append(c)
    return out


def apply_plan(plan: Plan, spec: ClusterSpec, arts: Artifacts, observed: ObservedCluster,
               hooks: executor.Hooks, on_task: Callable[[str, str, str], None] | None = None
               ) -> executor.ApplyResult:
    """Run a plan (the caller holds the cluster's ApplyLock); record a configuration revision."""
    from reconciler.apply import executor

    result = executor.execute(plan, spec, arts.kafka, arts.zookeeper, observed, hooks,
                              Journal(spec.name), on_task)
    hosts = [] if plan.destroy else spec.hosts()
    if plan.changes:
        record_revision(spec.name, plan.spec_digest, hosts, plan.counts())
    if plan.destroy:
        state.forget_kraft_identity(spec.name)
    elif spec.security is not None:
        from reconciler.security.material import advance_rotation

        done = advance_rotation(spec.name)  # every host has this phase's files now
        if done:
            hooks.message(done)
    return result
