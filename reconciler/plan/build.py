"""Changes -> a DAG of steps. Pure; the graph is built from the changes only.

Ordering rules, each one method of `_Graph` below (the restart order itself: plan/roll.py):
1. per resource: install Java -> install artifact -> write config -> (KRaft) format storage ->
   start / restart;
2. the metadata quorum before brokers: every broker restart waits for every step of the quorum's
   nodes (ZooKeeper servers, KRaft controllers), and every broker start for ZooKeeper's (a KRaft
   broker waits for its controllers by itself; a new KRaft quorum starts together with its brokers);
3. restarts are one at a time (quorum followers before the quorum leader: ZooKeeper's leader, the
   active KRaft controller; then brokers by id with the active controller last), chained so the
   executor can never run two at once;
4. removal: brokers stop before the quorum's nodes, and every leaving service stops before any
   files go;
5. partition reassignment after every broker start/restart, and before any broker stops;
6. KRaft: a new metadata.version is finalized after every start and restart (the whole upgrade
   roll), never before;
7. KRaft: a leaving broker is unregistered after it stopped (so after its drain);
8. KRaft: quorum voters change one at a time, joins before leaves; a joining controller becomes a
   voter once it runs, a leaving one stops only once it no longer votes;
9. after a broker roll, one preferred-leader election, once every broker restart (both rolls of
   an upgrade) is done: leadership goes back where the roll moved it away from;
10. users and ACLs change once every broker started or restarted (their listeners and the
   authorizer are in place), before any broker stops; so do the ACLs of znodes made before
   ZooKeeper was secured (every broker logs in to it by then);
11. a host's encrypted volumes (security.volumes) before any install, config, format or start there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, assert_never

from reconciler import __version__
from reconciler.diff import (
    AccessChange,
    Action,
    Change,
    ClusterChange,
    EnsembleChange,
    FeatureChange,
    ReassignChange,
    ServiceChange,
    ThrottleChange,
    UnregisterChange,
    VolumeChange,
    VoterChange,
    ZnodeAclChange,
)
from reconciler.observe.model import ObservedCluster
from reconciler.plan import roll
from reconciler.plan.model import Gate, GateKind, Plan, RestartReason, Step, StepKind, VolumeWork

if TYPE_CHECKING:
    import networkx as nx

QUORUM_SERVICES = ("zookeeper", "kafka-controller")
VOLUME_FIRST = frozenset({StepKind.INSTALL_ARTIFACT, StepKind.CONFIGURE, StepKind.FORMAT_STORAGE, StepKind.START,
                          StepKind.RESTART})


@dataclass(frozen=True)
class KRaftIds:
    """What formatting KRaft storage needs: the cluster id, and for a new quorum the initial
    controllers (`id@host:port:directory-id,...`) every initial voter is formatted with."""

    cluster_id: str
    initial_controllers: str | None  # None: the quorum exists already

RECONFIG_AVAILABILITY = ("ZooKeeper keeps its quorum: the new membership commits through the current quorum "
                         "and needs a quorum of the new ensemble serving; no server restarts")
UPDATE_AVAILABILITY = ("no restart: the servers keep serving on the plaintext client port the lines no longer name "
                       "(ZooKeeper only moves a client port a line names) until each restarts TLS-only")
VOTER_AVAILABILITY = ("the quorum keeps a majority throughout: one voter is added or removed at a time, through "
                      "the current quorum; no running controller restarts")
FEATURES_AVAILABILITY = ("no restart: the controller checks that every registered broker and controller supports "
                         "the level (validated first), then finalizes it")
ELECT_AVAILABILITY = ("no restart: each partition's leadership moves to its preferred replica where that replica "
                      "is in sync (a leader change clients follow); best effort: if it fails, "
                      "auto.leader.rebalance moves leaders back later")
ACCESS_AVAILABILITY = ("no restart: credentials and ACLs change in the cluster's metadata; a rotated password "
                       "takes effect at the user's next login (open connections stay)")
ZNODES_AVAILABILITY = ("no restart: every broker already logs in to ZooKeeper, and the ACLs let its login do "
                       "all it did; only clients without it lose write access")
VOLUME_AVAILABILITY = ("no restart: the volume is made ready before any service on its host is installed, "
                       "configured or started (its data dir is created on it)")
REASSIGN_AVAILABILITY = ("no partition loses an in-sync replica: Kafka adds the new replicas and drops the old "
                         "ones only once the new ones are in sync")


def _sid(kind: StepKind, host: str, service: str | None) -> str:
    return f"{kind.value}:{service or 'host'}@{host}"


def _in_initial(kraft: KRaftIds, node: str) -> bool:
    """Whether the node is one of the quorum's initial voters (a voter added later joins as an
    observer: formatted without initial controllers, then added)."""
    return any(v.split("@", 1)[0] == node for v in (kraft.initial_controllers or "").split(",") if v)


GATES = {"kafka": GateKind.BROKER_REGISTERED, "kafka-controller": GateKind.CONTROLLER_CAUGHT_UP,
         "zookeeper": GateKind.ZOOKEEPER_QUORUM}


def _gate(c: ServiceChange) -> Gate:
    kind = GATES[c.service]
    return Gate(kind=kind, node=None if kind is GateKind.ZOOKEEPER_QUORUM else int(c.key))


def _restart_reasons(c: ServiceChange) -> tuple[RestartReason, ...]:
    return c.restart_reasons or (RestartReason.CONFIG,)


@dataclass
class _Graph:
    """The DAG under construction and what the ordering rules need to know about its steps."""

    g: nx.DiGraph
    observed: ObservedCluster
    min_isr: int
    kraft: KRaftIds | None
    down: frozenset[int]
    quorum_done: list[str] = field(default_factory=list)  # last step of each quorum node
    broker_starts: list[str] = field(default_factory=list)
    restarts: list[tuple[ServiceChange, str]] = field(default_factory=list)
    stops: dict[str, list[str]] = field(default_factory=lambda: {"kafka": [], "zookeeper": [], "kafka-controller": []})
    removes: list[str] = field(default_factory=list)
    reassign: str | None = None
    reconfig: Step | None = None
    clear: str | None = None
    features: str | None = None
    unregister: str | None = None
    voter_steps: list[tuple[str, Step]] = field(default_factory=list)  # ("join" | "leave", step)
    access: str | None = None
    znodes: str | None = None
    volumes: list[str] = field(default_factory=list)

    def add(self, step: Step) -> str:
        if step.id not in self.g:
            self.g.add_node(step.id, step=step)
        return step.id

    def after(self, first: str | None, then: str) -> str:
        if first:
            self.g.add_edge(first, then)
        return then

    def step(self, node: str) -> Step:
        return self.g.nodes[node]["step"]

    # --- the steps of each change -------------------------------------------------------------
    def cluster_step(self, c: ClusterChange) -> None:
        """Changes of the cluster as a whole (Admin API, kazoo, Kafka's tools): one step each
        (a quorum change: one per voter)."""
        match c:
            case VoterChange():
                for what, nodes in (("join", c.voters_join), ("leave", c.voters_leave)):
                    for node in nodes:
                        kind = StepKind.ADD_VOTER if what == "join" else StepKind.REMOVE_VOTER
                        self.voter_steps.append((what, Step(
                            id=f"{kind.value}:controller.{node}", kind=kind, host=c.voter_hosts[node],
                            service="kafka-controller", address=f"controller.{node}", voter_id=node,
                            voter_dir=c.voter_dirs.get(node) if what == "leave" else None,
                            availability=VOTER_AVAILABILITY)))
            case UnregisterChange():
                self.unregister = self.add(Step(id=f"{StepKind.UNREGISTER_BROKERS.value}:kafka",
                                                kind=StepKind.UNREGISTER_BROKERS, host=c.host, service="kafka",
                                                address=c.address, unregister=c.unregister))
            case FeatureChange():
                self.features = self.add(Step(id=f"{StepKind.UPDATE_FEATURES.value}:kafka",
                                              kind=StepKind.UPDATE_FEATURES, host=c.host, service="kafka",
                                              address=c.address, feature_levels=dict(c.feature_levels),
                                              availability=FEATURES_AVAILABILITY))
            case ThrottleChange():
                self.clear = self.add(Step(id=f"{StepKind.CLEAR_THROTTLES.value}:kafka",
                                           kind=StepKind.CLEAR_THROTTLES, host=c.host, service="kafka",
                                           address=c.address, throttled_topics=c.throttled_topics,
                                           throttled_brokers=c.throttled_brokers))
            case EnsembleChange():
                self.reconfig = Step(id=f"{StepKind.ZK_RECONFIG.value}:zookeeper", kind=StepKind.ZK_RECONFIG,
                                     host=c.host, service="zookeeper", address=c.address, zk_join=c.zk_join,
                                     zk_leave=c.zk_leave, zk_update=c.zk_update,
                                     gate=Gate(kind=GateKind.ZOOKEEPER_MEMBERS),
                                     availability=UPDATE_AVAILABILITY if c.zk_update else RECONFIG_AVAILABILITY)
                self.add(self.reconfig)
            case AccessChange():
                self.access = self.add(Step(id=f"{StepKind.ACCESS.value}:kafka", kind=StepKind.ACCESS, host=c.host,
                                            service="kafka", address=c.address, access=c.access,
                                            availability=ACCESS_AVAILABILITY))
            case ZnodeAclChange():
                self.znodes = self.add(Step(id=f"{StepKind.SECURE_ZNODES.value}:kafka", kind=StepKind.SECURE_ZNODES,
                                            host=c.host, service="kafka", address=c.address, znodes=c.znodes,
                                            availability=ZNODES_AVAILABILITY))
            case VolumeChange():
                self.volumes.append(self.add(Step(
                    id=f"{StepKind.PREPARE_VOLUME.value}:{c.name}@{c.host}", kind=StepKind.PREPARE_VOLUME,
                    host=c.host, address=c.address, availability=VOLUME_AVAILABILITY,
                    volume=VolumeWork(name=c.name, device=c.device, mount=c.mount, filesystem=c.filesystem,
                                      format=c.format))))
            case ReassignChange():
                self.reassign = self.add(Step(id=f"{StepKind.REASSIGN.value}:partitions", kind=StepKind.REASSIGN,
                                              host=c.host, service="kafka", address=c.address, moves=c.moves,
                                              drain=c.drain, throttle_bytes_per_s=c.throttle_bytes_per_s,
                                              per_broker=c.per_broker, availability=REASSIGN_AVAILABILITY))
            case _:
                assert_never(c)

    def removal(self, c: ServiceChange, drained: set[int]) -> None:
        bid = int(c.key) if c.service == "kafka" and c.key.isdigit() else None
        stop = self.add(Step(id=_sid(StepKind.STOP, c.host, c.service), kind=StepKind.STOP, host=c.host,
                             service=c.service, address=c.address,
                             drain=(bid,) if bid is not None and bid in drained else ()))
        rm = self.after(stop, self.add(Step(id=_sid(StepKind.REMOVE, c.host, c.service), kind=StepKind.REMOVE,
                                            host=c.host, service=c.service, address=c.address,
                                            deletions=c.deletions)))
        self.stops[c.service].append(stop)
        self.removes.append(rm)

    def resource_chain(self, c: ServiceChange) -> None:
        """Rule 1: install Java -> install artifact -> write config -> format -> live change or
        start / restart, for one resource."""
        prev: str | None = None
        if c.install_java:
            prev = self.add(Step(id=_sid(StepKind.INSTALL_JAVA, c.host, None), kind=StepKind.INSTALL_JAVA,
                                 host=c.host, address=None))
        if c.install_artifact:
            prev = self.after(prev, self.add(Step(
                id=_sid(StepKind.INSTALL_ARTIFACT, c.host, c.service), kind=StepKind.INSTALL_ARTIFACT, host=c.host,
                service=c.service, address=c.address, artifact_id=c.install_artifact)))
        if c.configure:
            hashes = c.pinned_hashes if c.ibp_pin else c.file_hashes
            prev = self.after(prev, self.add(Step(
                id=_sid(StepKind.CONFIGURE, c.host, c.service), kind=StepKind.CONFIGURE, host=c.host,
                service=c.service, address=c.address, file_hashes=dict(hashes), ibp_pin=c.ibp_pin)))
        if c.format_storage:
            if self.kraft is None:
                raise ValueError(f"{c.address}: storage to format but no KRaft cluster id")
            initial = self.kraft.initial_controllers if c.voter and _in_initial(self.kraft, c.key) else None
            prev = self.after(prev, self.add(Step(
                id=_sid(StepKind.FORMAT_STORAGE, c.host, c.service), kind=StepKind.FORMAT_STORAGE, host=c.host,
                service=c.service, address=c.address, cluster_id=self.kraft.cluster_id,
                initial_controllers=initial, voter=c.voter)))
        if c.dynamic_keys:
            self.after(prev, self.add(Step(
                id=_sid(StepKind.ALTER_CONFIG, c.host, c.service), kind=StepKind.ALTER_CONFIG, host=c.host,
                service=c.service, address=c.address, dynamic_keys=c.dynamic_keys)))
            return
        last = prev
        if c.restart or c.start:
            kind = StepKind.RESTART if c.restart else StepKind.START
            step = Step(id=_sid(kind, c.host, c.service), kind=kind, host=c.host, service=c.service,
                        address=c.address, gate=_gate(c), voter=c.voter,
                        restart_reasons=_restart_reasons(c) if kind is StepKind.RESTART else ())
            if kind is StepKind.RESTART and c.key.isdigit():
                step = roll.with_proof(step, c, self.observed, self.min_isr, self.down)
            last = self.after(prev, self.add(step))
            if kind is StepKind.RESTART:
                self.restarts.append((c, last))
            elif c.service == "kafka":
                self.broker_starts.append(last)
        if c.service in QUORUM_SERVICES and last:
            self.quorum_done.append(last)

    # --- the ordering rules ---------------------------------------------------------------------
    def volumes_first(self) -> None:
        """Rule 11. A host's encrypted volumes are ready before anything of a service is installed,
        written or started there (the service's data dir is made on the mounted volume)."""
        for vol in self.volumes:
            host = self.step(vol).host
            for n in list(self.g.nodes):
                s = self.step(n)
                if s.host == host and s.kind in VOLUME_FIRST and not self.g.has_edge(vol, n):
                    self.g.add_edge(vol, n)

    def quorum_before_brokers(self) -> None:
        """Rule 2. A ZooKeeper membership change comes after every other ZooKeeper step (new
        servers run and follow); brokers roll onto the new zookeeper.connect after a growth, and
        before a shrink (no broker still lists a server that is about to go). A ZooKeeper-mode
        broker gives up when ZooKeeper is not there, so ZooKeeper starts first; a KRaft broker waits
        for its controllers, and a new quorum is only readable once a broker is up, so new
        controllers and brokers start together. Restarts: the quorum first."""
        broker_rolls = [s for c, s in self.restarts if c.service == "kafka"]
        done = list(self.quorum_done)
        if self.reconfig and self.reconfig.zk_update:
            # (alone in its plan) the membership lines change before any server restarts with them:
            # a server whose line still names the plaintext client port could not take the port for TLS
            # (and before the new zoo.cfg is written: a server restarted by anyone in between must not
            # find both ports on one number)
            for n in list(self.g.nodes):
                st = self.step(n)
                if st.service == "zookeeper" and st.kind in (StepKind.CONFIGURE, StepKind.RESTART):
                    self.g.add_edge(self.reconfig.id, n)
        elif self.reconfig:
            for z in done:
                self.g.add_edge(z, self.reconfig.id)
            if self.reconfig.zk_leave:
                for k in broker_rolls:
                    self.g.add_edge(k, self.reconfig.id)
            else:
                done = [self.reconfig.id]
            for s in self.stops["zookeeper"]:
                self.g.add_edge(self.reconfig.id, s)
                if self.reconfig.zk_leave:  # the server stops only once it is out of the ensemble
                    self.g.nodes[s]["step"] = self.step(s).model_copy(
                        update={"gate": Gate(kind=GateKind.LEFT_ENSEMBLE)})
        zk_only = [z for z in done if self.step(z).service == "zookeeper"]
        for k in self.broker_starts:
            for z in zk_only:
                self.g.add_edge(z, k)
        for k in broker_rolls:
            for z in done:
                self.g.add_edge(z, k)

    def one_restart_at_a_time(self, broker_racks: dict[int, str | None] | None) -> list[str]:
        """Rule 3: chain the restarts in roll order (or by rack, when asked and proven safe);
        returns the last stage of the first roll."""
        ordered = roll.order([c for c, _ in self.restarts], self.observed)
        by_addr = {c.address: s for c, s in self.restarts}
        chain = [by_addr[c.address] for c in ordered]
        racks = roll.rack_stages(ordered, self.observed, self.min_isr, broker_racks) if broker_racks else None
        if not racks:
            for a, b in zip(chain, chain[1:], strict=False):
                self.g.add_edge(a, b)
            return chain[-1:]
        stages = [[by_addr[c.address]] for c in ordered if c.service != "kafka"]
        stages += [[by_addr[a] for a in rack] for rack in racks]
        for rack in racks:
            for a in rack:
                sid = by_addr[a]
                self.g.nodes[sid]["step"] = roll.rack_proof(self.step(sid), rack, self.observed, self.min_isr)
        for prev_stage, next_stage in zip(stages, stages[1:], strict=False):
            for a in prev_stage:
                for b in next_stage:
                    self.g.add_edge(a, b)
        return stages[-1] if stages else []

    def second_roll(self, changes: Sequence[Change], first_roll_ends: list[str]) -> None:
        """Rule 3b (ZooKeeper-mode upgrades): once every broker runs the new binaries, write the
        final files (inter.broker.protocol.version raised) and roll again in the same order. A broker
        that needs nothing in the first roll (already on the new build with the pinned files, e.g.
        when an interrupted upgrade resumes) still takes part in the second."""
        second = roll.order([c for c in changes if isinstance(c, ServiceChange) and c.ibp_pin and c.service == "kafka"
                             and c.key.isdigit()], self.observed)
        ends = first_roll_ends or [n for n in self.g.nodes if self.step(n).service == "kafka"
                                   and self.step(n).kind is StepKind.START]
        prev: str | None = None
        for c in second:
            cf = self.add(Step(id=_sid(StepKind.CONFIGURE, c.host, c.service) + "#final", kind=StepKind.CONFIGURE,
                               host=c.host, service=c.service, address=c.address, file_hashes=dict(c.file_hashes)))
            for end in ends:
                self.g.add_edge(end, cf)
            rs = self.add(roll.with_proof(Step(id=_sid(StepKind.RESTART, c.host, c.service) + "#final",
                                               kind=StepKind.RESTART, host=c.host, service=c.service,
                                               address=c.address, gate=_gate(c),
                                               restart_reasons=(RestartReason.SECOND_ROLL,)),
                                          c, self.observed, self.min_isr, self.down))
            self.g.add_edge(cf, rs)
            prev = self.after(prev, rs)

    def data_moves(self) -> None:
        """Rule 5: data moves once every new or restarted broker is up (and the roll is over), and
        a broker leaving the spec stops only after the reassignment drained it."""
        if not self.reassign:
            return
        if self.clear:
            self.g.add_edge(self.clear, self.reassign)  # leftovers go before this plan's own throttles
        for n in list(self.g.nodes):
            if self.step(n).service == "kafka" and self.step(n).kind in (StepKind.START, StepKind.RESTART):
                self.g.add_edge(n, self.reassign)
        for s in self.stops["kafka"]:
            self.g.add_edge(self.reassign, s)

    def voter_changes(self) -> None:
        """Rule 8: one voter change at a time, joins before leaves; a joiner once it runs (as an
        observer), a leaver before it stops."""
        prev: str | None = None
        for what, step in self.voter_steps:
            sid = self.after(prev, self.add(step))
            prev = sid
            for n in [n for n in self.g.nodes if self.step(n).address == step.address and n != sid]:
                kind = self.step(n).kind
                if what == "join" and kind in (StepKind.START, StepKind.RESTART, StepKind.FORMAT_STORAGE,
                                               StepKind.CONFIGURE, StepKind.INSTALL_ARTIFACT):
                    self.g.add_edge(n, sid)
                elif what == "leave" and kind in (StepKind.STOP, StepKind.REMOVE):
                    self.g.add_edge(sid, n)

    def unregister_after_stop(self) -> None:
        """Rule 7: a leaving broker's registration goes once it is stopped (and drained, rule 5)."""
        if not self.unregister:
            return
        for s in self.stops["kafka"] + self.removes:
            self.g.add_edge(s, self.unregister)
        if self.features:
            self.g.add_edge(self.unregister, self.features)  # a stale registration blocks a feature upgrade

    def features_last(self) -> None:
        """Rule 6: a new metadata.version is finalized once every node has restarted onto the new build."""
        if not self.features:
            return
        before = (StepKind.START, StepKind.RESTART, StepKind.INSTALL_ARTIFACT)
        for n in list(self.g.nodes):
            if self.step(n).kind in before and n != self.features:
                self.g.add_edge(n, self.features)

    def leaders_back(self) -> None:
        """Rule 9: one preferred-leader election after the last broker restart."""
        restarts = [n for n in self.g.nodes
                    if self.step(n).kind is StepKind.RESTART and self.step(n).service == "kafka"]
        if not restarts:
            return
        elect = self.add(Step(id=f"{StepKind.ELECT_LEADERS.value}:kafka", kind=StepKind.ELECT_LEADERS,
                              host="cluster", service="kafka", availability=ELECT_AVAILABILITY))
        for n in restarts:
            self.g.add_edge(n, elect)

    def access_when_brokers_serve(self) -> None:
        """Rule 10: users and ACLs, and the ACLs of znodes made before ZooKeeper was secured, once
        every broker start and restart is done (every broker then logs in as the new config says),
        before any stop."""
        for last in (x for x in (self.access, self.znodes) if x):
            for n in list(self.g.nodes):
                if self.step(n).service == "kafka" and self.step(n).kind in (StepKind.START, StepKind.RESTART):
                    self.g.add_edge(n, last)
            for s in self.stops["kafka"]:
                self.g.add_edge(last, s)

    def removal_order(self) -> None:
        """Rule 4: brokers stop before the quorum's nodes; files go only once every leaving service
        has stopped (two Kafka services on a host share a build: its jars never go under a running JVM)."""
        for z in self.stops["zookeeper"] + self.stops["kafka-controller"]:
            for k in self.stops["kafka"]:
                self.g.add_edge(k, z)
        for rm in self.removes:
            for stop in [x for group in self.stops.values() for x in group]:
                if not self.g.has_edge(stop, rm):
                    self.g.add_edge(stop, rm)


def build_steps(changes: Sequence[Change], observed: ObservedCluster, default_min_isr: int = 1,
                broker_racks: dict[int, str | None] | None = None, kraft: KRaftIds | None = None
                ) -> tuple[list[Step], list[tuple[str, str]]]:
    if not changes:
        return [], []
    import networkx as nx  # lazily: a no-op plan (the common case) needs no graph

    b = _Graph(nx.DiGraph(), observed, default_min_isr, kraft, roll.down_voters(changes))
    drained = {d for c in changes if isinstance(c, ReassignChange) for d in c.drain}
    for c in changes:
        if not isinstance(c, ServiceChange):
            b.cluster_step(c)
        elif c.action is Action.DELETE:
            b.removal(c, drained)
        else:
            b.resource_chain(c)
    b.quorum_before_brokers()
    b.second_roll(changes, b.one_restart_at_a_time(broker_racks))
    b.data_moves()
    b.voter_changes()
    b.unregister_after_stop()
    b.features_last()
    b.leaders_back()
    b.access_when_brokers_serve()
    b.removal_order()
    b.volumes_first()
    assert nx.is_directed_acyclic_graph(b.g), "plan graph has a cycle"
    steps = [b.step(n) for gen in nx.topological_generations(b.g) for n in sorted(gen)]
    return steps, sorted(b.g.edges())


def build_plan(changes: Sequence[Change], observed: ObservedCluster, *, spec_path: str, spec_digest: str,
               destroy: bool = False, default_min_isr: int = 1, format_devices: bool = False,
               broker_racks: dict[int, str | None] | None = None, kraft: KRaftIds | None = None) -> Plan:
    steps, edges = build_steps(changes, observed, default_min_isr, broker_racks, kraft)
    return Plan(
        kafkaform_version=__version__,
        cluster=observed.cluster_name,
        spec_path=spec_path,
        spec_digest=spec_digest,
        fingerprint=observed.fingerprint(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        destroy=destroy,
        format_devices=format_devices,
        min_isr=default_min_isr,
        changes=tuple(changes),
        steps=tuple(steps),
        edges=tuple(edges),
    )
