"""Walk a plan's DAG: run each step through Ansible, gate, journal, report progress.

Steps of one topological generation are independent. They are grouped by (kind, service) and
each group is one ansible-runner run over its hosts, so independent hosts change in parallel;
restarts are chained in the plan, so they always run one at a time. A failed host stops the
apply after its group: nothing later runs on a cluster in an unknown state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import networkx as nx

from reconciler import files as F
from reconciler.apply import gates, unit_health
from reconciler.apply.inventory import ArtifactRef, file_var, host_vars, inventory, svc_var
from reconciler.apply.runner import HostResult, StepRun
from reconciler.apply.state import Journal
from reconciler.diff import ArtifactIds
from reconciler.files import ServiceDesired, broker_desired, parse_properties, server_properties
from reconciler.modes import mode_of
from reconciler.observe.connect import admin_endpoint
from reconciler.observe.model import ObservedCluster
from reconciler.plan.model import GateKind, Plan, Step, StepKind
from reconciler.spec import ClusterSpec

PLAYBOOK = {
    StepKind.INSTALL_JAVA: "install_java.yml",
    StepKind.INSTALL_ARTIFACT: "install_artifact.yml",
    StepKind.CONFIGURE: "configure.yml",
    StepKind.FORMAT_STORAGE: "format_storage.yml",
    StepKind.START: "service.yml",
    StepKind.RESTART: "service.yml",
    StepKind.STOP: "service.yml",
    StepKind.REMOVE: "remove.yml",
    StepKind.PREPARE_VOLUME: "volume.yml",
}
SERVICE_STATE = {StepKind.START: "started", StepKind.RESTART: "restarted", StepKind.STOP: "stopped"}


class Hooks(Protocol):
    def step_started(self, steps: list[Step]) -> None: ...
    def host_done(self, step: Step, result: HostResult) -> None: ...
    def message(self, text: str) -> None: ...


class FailureKind(StrEnum):
    """What an operator does after a failed apply."""

    RETRY = "retry"  # a host, a gate or Kafka failed a step: rerunning apply re-plans and resumes
    ABORT = "abort"  # the plan no longer fits the spec or the hosts (nothing ran): plan again

    @property
    def advice(self) -> str:
        if self is FailureKind.RETRY:
            return ("rerun `kafkaform apply` with the spec once the cause is fixed: it reads the hosts again, "
                    "keeps what is done (journal) and resumes")
        return "nothing was changed by this apply; run `kafkaform plan` again and review the new plan"


class ApplyFailed(Exception):
    kind = FailureKind.RETRY


class PlanMismatch(ApplyFailed):
    kind = FailureKind.ABORT


@dataclass
class ApplyResult:
    steps_done: int = 0
    seconds: float = 0.0
    gates: list[gates.GateResult] = field(default_factory=list)


def desired_services(spec: ClusterSpec, kafka: ArtifactRef, zookeeper: ArtifactRef | None,
                     ibp_pin: str | None = None) -> dict[tuple[str, str], ServiceDesired]:
    """(host, service) -> what the spec renders for it now."""
    ids = ArtifactIds(kafka=kafka.artifact_id, zookeeper=zookeeper.artifact_id if zookeeper else None)
    return {(d.host, d.service): d for d in mode_of(spec).services(spec, ids, ibp_pin)}


def check_rendered(plan: Plan, spec: ClusterSpec, kafka: ArtifactRef, zookeeper: ArtifactRef | None) -> None:
    """Refuse when the files apply would write are not the ones the plan was reviewed with."""
    rendered = desired_services(spec, kafka, zookeeper)
    for s in plan.steps:
        if s.kind is not StepKind.CONFIGURE:
            continue
        d = rendered.get((s.host, s.service or ""))
        if d is None:
            raise PlanMismatch(f"step {s.id}: the spec no longer has {s.service} on {s.host}")
        if s.ibp_pin:
            d = desired_services(spec, kafka, zookeeper, s.ibp_pin)[(s.host, s.service or "")]
        now = {f.path: f.sha256 for f in d.files}
        if now != s.file_hashes:
            raise PlanMismatch(f"step {s.id}: the files rendered from the spec differ from the plan; run plan again")
    vols = {(v.host, v.name): v for v in (spec.security.volumes if spec.security else ())}
    for s in plan.steps:
        if s.volume is None:
            continue
        v = vols.get((s.host, s.volume.name))
        if v is None or (v.device, v.mount, v.filesystem) != (s.volume.device, s.volume.mount, s.volume.filesystem):
            raise PlanMismatch(f"step {s.id}: the spec's volume {s.volume.name} on {s.host} differs from the plan's; "
                               "run plan again")
    for s in plan.steps:
        if s.kind is StepKind.INSTALL_ARTIFACT:
            want = zookeeper if s.service == "zookeeper" else kafka
            if want is None or s.artifact_id != want.artifact_id:
                raise PlanMismatch(f"step {s.id}: plan installs {s.artifact_id}, the spec resolves to "
                                   f"{want.artifact_id if want else 'nothing'}; run plan again")
    marked = {u: m for s in plan.steps if s.kind is StepKind.ACCESS and s.access for u, m in s.access.marks.items()}
    if marked:
        from reconciler.pipeline import password_marks

        now = password_marks(spec)
        changed = sorted(u for u, m in marked.items() if now.get(u) != m)
        if changed:
            raise PlanMismatch(f"the password of {', '.join(changed)} changed since the plan was made; run plan again")


def _pre_gate(step: Step, spec: ClusterSpec, plan: Plan, progress: Callable[[str], None]) -> gates.GateResult | None:
    """Before a restart: ZooKeeper keeps quorum without the node; a broker's partitions keep min ISR.
    Before stopping a drained broker: it holds no replica."""
    if step.kind is StepKind.STOP and step.drain:
        return gates.broker_empty(spec, step.drain[0], progress=progress)
    if step.kind is StepKind.STOP and step.gate and step.gate.kind is GateKind.LEFT_ENSEMBLE:
        return gates.zookeeper_not_member(spec, step.host, progress=progress)
    if step.kind is StepKind.ZK_RECONFIG:
        return gates.zookeeper_quorum(spec, progress=progress, members_too=True)
    if step.kind is not StepKind.RESTART:
        return None
    if step.service == "zookeeper":
        return gates.zookeeper_quorum(spec, progress=progress)
    if plan.allow_unavailable:
        return None
    if step.voter and step.address:  # a KRaft controller or combined node: the quorum holds without it
        node = int(step.address.split(".", 1)[1])
        quorum = gates.voter_safe_to_stop(spec, node, progress=progress)
        if step.service != "kafka":
            return quorum
        progress(f"{quorum.name}: ok after {quorum.seconds:.1f}s ({quorum.detail})")
    gate = step.gate
    if step.service == "kafka" and gate and gate.kind is GateKind.BROKER_REGISTERED and gate.node is not None:
        together = list(step.restart_group) or [gate.node]  # a rack roll checks the rack as a whole
        return gates.safe_to_stop(spec, together, plan.min_isr, progress=progress)
    return None


def _post_gate(step: Step, spec: ClusterSpec, progress: Callable[[str], None]) -> list[gates.GateResult]:
    if step.kind is StepKind.REASSIGN:
        out = [gates.replicas_in_sync(spec, progress=progress)]
        return out + [gates.broker_empty(spec, b, progress=progress) for b in step.drain]
    if step.kind is StepKind.ZK_RECONFIG:
        return [gates.zookeeper_members(spec, progress=progress, lines=bool(step.zk_update)),
                gates.zookeeper_quorum(spec, progress=progress)]
    if step.kind not in (StepKind.START, StepKind.RESTART) or not step.gate:
        return []
    gate = step.gate
    if gate.kind is GateKind.ZOOKEEPER_QUORUM:
        return [gates.zookeeper_quorum(spec, progress=progress)]
    if gate.kind is GateKind.CONTROLLER_CAUGHT_UP and gate.node is not None:
        return [gates.controller_caught_up(spec, gate.node, progress=progress)]
    if gate.kind is GateKind.BROKER_REGISTERED and gate.node is not None:
        broker = gate.node
        out = [gates.controller_caught_up(spec, broker, progress=progress)] if step.voter else []
        out.append(gates.broker_registered(spec, broker, progress=progress))
        if step.kind is StepKind.RESTART:
            out.append(gates.replicas_in_sync(spec, progress=progress, broker_id=broker))
        return out
    raise PlanMismatch(f"unknown gate {step.gate!r} in plan")


def execute(plan: Plan, spec: ClusterSpec, kafka: ArtifactRef, zookeeper: ArtifactRef | None,
            observed: ObservedCluster, hooks: Hooks, journal: Journal,
            on_task: Callable[[str, str, str], None] | None = None) -> ApplyResult:
    try:
        return _execute(plan, spec, kafka, zookeeper, observed, hooks, journal, on_task)
    finally:
        gates.close()


def _execute(plan: Plan, spec: ClusterSpec, kafka: ArtifactRef, zookeeper: ArtifactRef | None,
             observed: ObservedCluster, hooks: Hooks, journal: Journal,
             on_task: Callable[[str, str, str], None] | None) -> ApplyResult:
    from reconciler.plan.planfile import PlanFileError, check_graph

    try:  # a plan made in this process passes; this guards every caller, saved plan or not
        check_graph(plan, set(spec.hosts()) | set(observed.hosts))
    except PlanFileError as e:
        raise PlanMismatch(str(e)) from None
    check_rendered(plan, spec, kafka, zookeeper)
    _ARTIFACT["kafka"] = kafka.artifact_id
    started = time.monotonic()
    result = ApplyResult()
    hv = host_vars(spec, kafka, zookeeper, observed.hosts, zk_members=observed.cluster.zookeeper_members)
    inv = inventory(spec, hv)
    g = plan.graph()
    restarts = [{"step": s.id, "address": s.address, "service": s.service, "host": s.host}
                for s in plan.steps if s.kind is StepKind.RESTART]
    journal.record(event="apply_started", cluster=plan.cluster, fingerprint=plan.fingerprint,
                   steps=len(plan.steps), restarts=restarts)
    for step_id, why in plan.confirmed_restarts:
        journal.record(event="step_done", step=step_id, resumed=True, message=why)
    _keep_kraft_identity(plan, spec)
    roll = _RollProgress(sum(s.kind is StepKind.RESTART for s in plan.steps))
    order: list[tuple[StepKind, list[Step]]] = []
    for generation in nx.topological_generations(g):
        steps = sorted((g.nodes[n]["step"] for n in generation), key=lambda s: (s.service or "", s.id))
        groups: dict[StepKind, list[Step]] = {}
        for s in steps:
            groups.setdefault(s.kind, []).append(s)
        order.extend(groups.items())

    def start_run(kind: StepKind, group: list[Step]) -> StepRun:
        return StepRun(PLAYBOOK[kind], _group_inventory(inv, group, spec, kafka),
                       sorted({s.host for s in group}), None, on_task, cluster=spec.name)

    held: dict[int, StepRun] = {}  # restart runs started ahead, waiting for their go-ahead
    run: StepRun | None = None
    try:
        for i, (kind, group) in enumerate(order):
            run = held.pop(i, None)
            if run is None and kind is StepKind.RESTART:
                run = start_run(kind, group)  # Ansible starts up while the pre-gate is checked
            next_is_restart = i + 1 < len(order) and order[i + 1][0] is StepKind.RESTART
            if next_is_restart and kind is not StepKind.RESTART:
                held[i + 1] = start_run(*order[i + 1])  # a roll's first restart starts up during this step
            roll.starting([s for s in group if s.kind is StepKind.RESTART])
            for s in group:
                try:
                    pre = _pre_gate(s, spec, plan, hooks.message)
                except gates.GateFailed as e:
                    journal.record(event="apply_failed", reason=str(e), step=s.id, failure=FailureKind.RETRY.value)
                    raise ApplyFailed(f"{s.describe()} not started: {e}") from None
                if pre:
                    hooks.message(f"{pre.name}: ok after {pre.seconds:.1f}s ({pre.detail})")
                    result.gates.append(pre)
            hooks.step_started(group)
            for s in group:
                journal.record(event="step_started", step=s.id)
            if kind in API_STEPS:
                res = {s.host: API_STEPS[kind](s, spec, hooks, journal) for s in group}
            else:
                run = run or start_run(kind, group)
                res = run.go().wait()
            _record_results(group, res, hooks, journal, result)
            if next_is_restart and kind is StepKind.RESTART:
                held[i + 1] = start_run(*order[i + 1])  # the next restart starts up during this one's gates
            _run_post_gates(group, spec, hooks, journal, result)
            if run is not None:
                _record_results(group, run.finish(), hooks, journal, result, report=False)
            roll.done([s for s in group if s.kind is StepKind.RESTART], hooks.message)
    finally:
        for pending in held.values():
            pending.cancel()
        if run is not None:
            run.close()
    result.seconds = time.monotonic() - started
    journal.record(event="apply_done", steps=result.steps_done, seconds=round(result.seconds, 1))
    return result


def _keep_kraft_identity(plan: Plan, spec: ClusterSpec) -> None:
    """Before the first node is formatted: keep the cluster id and initial controllers, so a create
    interrupted halfway formats the remaining nodes into the same cluster and quorum."""
    from reconciler.apply import state

    fmt = [s for s in plan.steps if s.kind is StepKind.FORMAT_STORAGE and s.cluster_id]
    if not fmt:
        return
    kept = state.kraft_identity(spec.name) or {}
    initial = next((s.initial_controllers for s in fmt if s.initial_controllers), None)
    if kept.get("cluster_id") != fmt[0].cluster_id or (initial and not kept.get("initial_controllers")):
        state.save_kraft_identity(spec.name, fmt[0].cluster_id or "", initial or kept.get("initial_controllers"))


def _record_results(group: list[Step], res: dict[str, HostResult], hooks: Hooks, journal: Journal,
                    result: ApplyResult, report: bool = True) -> None:
    """Report and journal each step's host result; stop the apply on any failure. Called again
    with report=False once the Ansible run has ended, to catch a failure after the step marker."""
    failed = []
    for s in group:
        r = res[s.host]
        if report:
            hooks.host_done(s, r)
            journal.record(event="step_done" if r.ok else "step_failed", step=s.id,
                           seconds=round(r.seconds, 2), message=r.message)
            result.steps_done += r.ok
        if not r.ok:
            failed.append(f"{s.describe()} on {s.host}: {r.message}")
    if failed:
        journal.record(event="apply_failed", reason=failed[0], failure=FailureKind.RETRY.value)
        raise ApplyFailed("; ".join(failed))


def _run_post_gates(group: list[Step], spec: ClusterSpec, hooks: Hooks, journal: Journal,
                    result: ApplyResult) -> None:
    seen_gates: set[str] = set()
    started = _started_units(group)
    for s in group:
        key = f"{s.kind}:{s.gate}"
        if key in seen_gates:
            continue
        seen_gates.add(key)
        try:
            with gates.watching(unit_health.watcher(spec, started)):
                post = _post_gate(s, spec, hooks.message)
        except gates.GateFailed as e:
            reason = str(e)
            if started and not isinstance(e, gates.GateWillNotPass):  # it timed out: say what systemd sees
                reason = "; ".join([reason, *unit_health.diagnose(spec, started)])
            journal.record(event="apply_failed", reason=reason, step=s.id, failure=FailureKind.RETRY.value)
            raise ApplyFailed(reason) from None
        for gr in post:
            hooks.message(f"{gr.name}: ok after {gr.seconds:.1f}s ({gr.detail})")
            journal.record(event="gate_passed", step=s.id, gate=gr.name, seconds=round(gr.seconds, 2))
            result.gates.append(gr)


def _started_units(group: list[Step]) -> unit_health.Units:
    """The services a group of steps (re)started, by host: what a failing gate asks systemd about."""
    units: dict[str, tuple[str, ...]] = {}
    for s in group:
        if s.kind in (StepKind.START, StepKind.RESTART) and s.service:
            units[s.host] = (*units.get(s.host, ()), s.service)
    return units


class _RollProgress:
    """Restarts done / total, elapsed and an ETA from the measured restart durations so far."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished = 0
        self.first: float | None = None

    def starting(self, restarts: list[Step]) -> None:
        if restarts and self.first is None:
            self.first = time.monotonic()

    def done(self, restarts: list[Step], say: Callable[[str], None]) -> None:
        if not restarts or self.first is None:
            return
        self.finished += len(restarts)
        elapsed = time.monotonic() - self.first
        eta = elapsed / self.finished * (self.total - self.finished)
        say(f"rolling restart: {self.finished}/{self.total} done, {elapsed:.0f}s elapsed"
            + (f", ETA {eta:.0f}s" if self.finished < self.total else ""))


def _api_step(step: Step, action: Callable[[], object]) -> HostResult:
    """Run a step that talks to the cluster directly (not through Ansible), timed and reported per
    host like an Ansible step: an exception is that host's failure."""
    t0 = time.monotonic()
    try:
        action()
    except Exception as e:  # noqa: BLE001 - reported per host like an Ansible failure
        return HostResult(host=step.host, ok=False, message=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0)
    return HostResult(host=step.host, ok=True, changed=True, seconds=time.monotonic() - t0)


def _alter_config(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    """Live config change on one broker; values are read from the spec now (never from the plan)."""
    broker = next(b for b in spec.brokers if b.host == step.host)
    desired = parse_properties(server_properties(spec, broker))
    return _api_step(step, lambda: gates.alter_broker_configs(
        spec, broker.id, {k: desired.get(k) for k in step.dynamic_keys}))


def _clear_throttles(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    from reconciler.apply import reassign

    return _api_step(step, lambda: reassign.remove_throttles(
        admin_endpoint(spec), list(step.throttled_brokers), list(step.throttled_topics)))


def _zk_reconfig(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    return _api_step(step, lambda: gates.reconfigure_zookeeper(spec, step.zk_join, step.zk_leave, step.zk_update))


def _reassign(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    """Move the partitions the plan lists (throttled, in batches); the throughput measured here
    feeds the time estimate of later plans. Throttles are removed by reassign.execute, also on failure."""
    from reconciler.apply import reassign

    def move() -> None:
        r = reassign.execute(admin_endpoint(spec), step.moves,
                             throttle_bytes_per_s=step.throttle_bytes_per_s, per_broker=step.per_broker,
                             timeout_s=spec.kafka.reassignment.timeout_s, progress=hooks.message)
        journal.record(event="reassign_done", step=step.id, partitions=r.partitions, bytes=r.bytes_moved,
                       seconds=round(r.seconds, 2))

    return _api_step(step, move)


def _update_features(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    """Finalize the planned feature levels: validated first (the controller refuses a level some
    registered node cannot support), then applied, then read back."""
    return _api_step(step, lambda: hooks.message(gates.update_features(spec, step.feature_levels)))


def _unregister_brokers(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    """Kafka's ClusterTool on a broker host that stays; then the registrations are checked gone."""
    from reconciler.apply import kafka_tools

    def act() -> None:
        hooks.message(kafka_tools.unregister_brokers(spec, _ARTIFACT["kafka"], step.unregister))
        gates.brokers_unregistered(spec, step.unregister, progress=hooks.message)

    return _api_step(step, act)


def _add_voter(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    from reconciler.apply import kafka_tools

    def act() -> None:
        node = step.voter_id or 0
        if node not in gates.voters(spec):  # (a resumed apply: it may have been added already)
            hooks.message(kafka_tools.add_voter(spec, _ARTIFACT["kafka"], step.host))
        gates.voter_set(spec, node, present=True, progress=hooks.message)
        gates.controller_caught_up(spec, node, progress=hooks.message)

    return _api_step(step, act)


def _remove_voter(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    from reconciler.apply import kafka_tools

    def act() -> None:
        node = step.voter_id or 0
        if node in gates.voters(spec):
            hooks.message(kafka_tools.remove_voter(spec, _ARTIFACT["kafka"], step.host, node, step.voter_dir or ""))
        gates.voter_set(spec, node, present=False, progress=hooks.message)

    return _api_step(step, act)


def _elect_leaders(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    """Best effort, as the plan says: a failed election leaves leaders where the roll put them,
    which auto.leader.rebalance corrects; it never fails an apply whose roll succeeded."""
    def act() -> None:
        try:
            hooks.message(f"preferred leaders: {gates.elect_preferred_leaders(spec)}")
        except Exception as e:  # noqa: BLE001 - see the docstring
            hooks.message(f"preferred leader election not done ({type(e).__name__}: {e}); "
                          "auto.leader.rebalance will move leaders back")
            journal.record(event="step_note", step=step.id, message=f"election not done: {type(e).__name__}")

    return _api_step(step, act)


def _access(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    """Users and ACLs exactly as the plan lists them (passwords from the spec's secrets now)."""
    from reconciler.apply.access import apply_access
    from reconciler.pipeline import password_marks

    access = step.access
    assert access is not None
    return _api_step(step, lambda: hooks.message(apply_access(spec, access, password_marks(spec), hooks.message)))


def _secure_znodes(step: Step, spec: ClusterSpec, hooks: Hooks, journal: Journal) -> HostResult:
    """ZkSecurityMigrator on a broker host, then proof from ZooKeeper that no znode it covers is
    writable by anyone (a resumed apply whose run had finished skips the tool)."""
    from reconciler.apply import kafka_tools

    def act() -> None:
        if gates.open_znodes(spec):
            hooks.message(kafka_tools.secure_znodes(spec, _ARTIFACT["kafka"], step.host))
        left = gates.open_znodes(spec)
        if left:
            raise gates.GateFailed(f"still writable by anyone after ZkSecurityMigrator: {', '.join(left)}")

    return _api_step(step, act)


_ARTIFACT: dict[str, str] = {}  # the build the cluster runs, for tool classes run on its hosts


# Steps carried out by kafkaform itself (Admin API, kazoo); every other kind is an Ansible playbook.
API_STEPS: dict[StepKind, Callable[[Step, ClusterSpec, Hooks, Journal], HostResult]] = {
    StepKind.UNREGISTER_BROKERS: _unregister_brokers,
    StepKind.ADD_VOTER: _add_voter,
    StepKind.REMOVE_VOTER: _remove_voter,
    StepKind.UPDATE_FEATURES: _update_features,
    StepKind.ALTER_CONFIG: _alter_config,
    StepKind.CLEAR_THROTTLES: _clear_throttles,
    StepKind.ZK_RECONFIG: _zk_reconfig,
    StepKind.REASSIGN: _reassign,
    StepKind.ELECT_LEADERS: _elect_leaders,
    StepKind.ACCESS: _access,
    StepKind.SECURE_ZNODES: _secure_znodes,
}


def _format_argv(step: Step, spec: ClusterSpec, kafka: ArtifactRef) -> list[str]:
    """Kafka's storage tool from the build the node will run (a newer tool's format is not readable
    by an older broker), with the cluster id and, for an initial voter, the initial controllers."""
    config = F.SERVICE_PATHS[step.service or "kafka"].config
    argv = ["/usr/bin/java", "-cp", f"{F.kafka_home(spec, kafka.artifact_id)}/libs/*", "kafka.tools.StorageTool",
            "format", "--config", config, "--cluster-id", step.cluster_id or "", "--ignore-formatted"]
    if step.initial_controllers:
        argv += ["--initial-controllers", step.initial_controllers]
    elif step.voter:
        argv.append("--no-initial-controllers")
    return argv


def _volume_var(step: Step, spec: ClusterSpec) -> dict[str, Any]:
    """What the kf_luks module needs for one volume; its key base64-encoded (never a template),
    read from the spec's secret reference now, never from the plan."""
    import base64

    from reconciler.security import secrets
    from reconciler.security.material import material_of

    v = step.volume
    assert v is not None
    key = material_of(spec).volume_keys[(step.host, v.name)].reveal()
    encoded = base64.b64encode(key.encode()).decode("ascii")
    secrets.register(encoded)  # (masked too, should Ansible ever print its input)
    return {"name": v.name, "device": v.device, "mount": v.mount, "filesystem": v.filesystem, "format": v.format,
            "key_b64": encoded}


def _group_inventory(inv: dict[str, Any], group: list[Step], spec: ClusterSpec, kafka: ArtifactRef
                     ) -> dict[str, Any]:
    """Copy of the inventory telling each host which services this step kind runs for (in order),
    and for service steps the state to reach. One Ansible run then covers every host and service
    of the group; services on one host run one after the other."""
    new_hosts = dict(inv["all"]["hosts"])
    for s in group:
        hv = dict(new_hosts[s.host])
        var = svc_var(s.service) if s.service else None
        hv["kf_step_services"] = [*hv.get("kf_step_services", []), *([var[3:]] if var else [])]
        if s.volume is not None:
            hv["kf_volumes"] = [*hv.get("kf_volumes", []), _volume_var(s, spec)]
        if var is None or s.service is None:  # var is None exactly when the step has no service
            new_hosts[s.host] = hv
            continue
        svc = dict(hv[var])
        if s.kind in SERVICE_STATE:
            svc["state"] = SERVICE_STATE[s.kind]
            svc["wait_port"] = not s.gate  # a gated step is waited for by its gate, not by a port poll
        if s.kind is StepKind.REMOVE:
            svc["deletions"] = [{"path": d.path, "proof": d.proof.value} for d in s.deletions]
        if s.kind is StepKind.FORMAT_STORAGE:
            d = desired_services(spec, kafka, None)[(s.host, s.service)] if spec.kraft else None
            # The recursive chown after the format hands the tool's files to the service account;
            # kafkaform's marker in each dir goes back to its own owner (root), so the service
            # cannot rewrite the proof a removal relies on.
            owners = {f.path: f.owner for f in d.files} if d else {}
            dirs = [{"path": p, "owner": d.account, "marker": F.owner_marker(p),
                     "marker_owner": owners.get(F.owner_marker(p), "root")}
                    for p in d.storage.dirs] if d and d.storage else []
            svc["format"] = {"argv": _format_argv(s, spec, kafka), "dirs": dirs}
        if s.kind is StepKind.CONFIGURE and s.ibp_pin:
            broker = next(b for b in spec.brokers if b.host == s.host)
            pinned = broker_desired(spec, broker, kafka.artifact_id, ibp_pin=s.ibp_pin)
            svc["files"] = [file_var(f.path, f.content, f.owner, f.mode) for f in pinned.files]
        hv[var] = svc
        new_hosts[s.host] = hv
    return {"all": {**inv["all"], "hosts": new_hosts}}
