"""Changes -> a DAG of steps. Pure; the graph is built from the changes only.

Ordering rules, each one edge family below:
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
   voter once it runs, a leaving one stops only once it no longer votes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler import __version__
from reconciler.diff import Action, Change
from reconciler.observe.model import ObservedCluster
from reconciler.plan.model import Plan, Step, StepKind
from reconciler.safety import can_restart, can_restart_voter, can_restart_zookeeper, rack_groups, restart_order

QUORUM_SERVICES = ("zookeeper", "kafka-controller")


@dataclass(frozen=True)
class KRaftIds:
    """What formatting KRaft storage needs: the cluster id, and for a new quorum the initial
    controllers (`id@host:port:directory-id,...`) every initial voter is formatted with."""

    cluster_id: str
    initial_controllers: str | None  # None: the quorum exists already

RECONFIG_AVAILABILITY = ("ZooKeeper keeps its quorum: the new membership commits through the current quorum "
                         "and needs a quorum of the new ensemble serving; no server restarts")
VOTER_AVAILABILITY = ("the quorum keeps a majority throughout: one voter is added or removed at a time, through "
                      "the current quorum; no running controller restarts")
FEATURES_AVAILABILITY = ("no restart: the controller checks that every registered broker and controller supports "
                         "the level (validated first), then finalizes it")
REASSIGN_AVAILABILITY = ("no partition loses an in-sync replica: Kafka adds the new replicas and drops the old "
                         "ones only once the new ones are in sync")


def _sid(kind: StepKind, host: str, service: str | None) -> str:
    return f"{kind.value}:{service or 'host'}@{host}"


def _in_initial(kraft: KRaftIds, node: str) -> bool:
    """Whether the node is one of the quorum's initial voters (a voter added later joins as an
    observer: formatted without initial controllers, then added)."""
    return any(v.split("@", 1)[0] == node for v in (kraft.initial_controllers or "").split(",") if v)


def _restart_order(changes: Iterable[Change], observed: ObservedCluster) -> list[Change]:
    """The quorum first (ZooKeeper followers before the leader, then KRaft controllers with the
    active controller last), then brokers in safety.restart_order (the active controller last: a
    combined node that leads the quorum)."""
    changes = list(changes)
    modes = observed.cluster.zookeeper_modes
    zk = sorted((c for c in changes if c.service == "zookeeper"),
                key=lambda c: (modes.get(c.host) == "leader", int(c.key)))
    leader = observed.cluster.quorum.leader_id if observed.cluster.quorum else None
    ctrl = sorted((c for c in changes if c.service == "kafka-controller"),
                  key=lambda c: (int(c.key) == leader, int(c.key)))
    brokers = {int(c.key): c for c in changes if c.service == "kafka"}
    return zk + ctrl + [brokers[i] for i in restart_order(brokers, observed.cluster.controller_id)]


def _with_proof(step: Step, c: Change, observed: ObservedCluster, default_min_isr: int,
                down: frozenset[int] = frozenset()) -> Step:
    """Attach the availability proof to a restart: the min-ISR proof for a broker (from the
    observed ISR), the quorum proof (KafkaQuorumCheck) for a KRaft voter; a combined node needs both."""
    node = int(c.key)
    texts: list[str] = []
    unavailable: list[str] = []
    if c.service == "zookeeper":
        modes = observed.cluster.zookeeper_modes
        z = can_restart_zookeeper(modes, c.host, max(len(modes), 1))
        if not z.ok:
            unavailable.append("the metadata quorum")
        return step.model_copy(update={"availability": f"zookeeper on {c.host}: {z.reason}",
                                       "unavailable": tuple(unavailable)})
    if c.service == "kafka":
        v = can_restart(observed.cluster, [node], default_min_isr)
        texts.append(v.summary())
        if v.rf_at_or_below_min_isr:
            texts[-1] += ("; topics whose replication factor is <= min.insync.replicas (unavailable during any "
                          f"restart of their brokers): {', '.join(v.rf_at_or_below_min_isr)}")
        unavailable += [r.name for r in v.unavailable]
    if c.voter:
        q = can_restart_voter(observed.cluster.quorum, node, fetch_timeout_ms=None, down=down)
        texts.append(q.summary())
        if not q.ok:
            unavailable.append("the metadata quorum")
    return step.model_copy(update={"availability": "; ".join(texts), "unavailable": tuple(unavailable)})


def _rack_stages(ordered: list[Change], observed: ObservedCluster, default_min_isr: int,
                 broker_racks: dict[int, str | None]) -> list[list[str]] | None:
    """Broker restarts grouped by rack (controller's rack last), or None when a rack cannot go down
    together without making a partition unavailable (then the roll stays one broker at a time)."""
    brokers = [c for c in ordered if c.service == "kafka" and c.key.isdigit()]
    if not brokers or any(c.ibp_pin for c in brokers):
        return None
    racks = {int(c.key): broker_racks.get(int(c.key)) for c in brokers}
    if rack_groups(racks, observed.cluster, default_min_isr) is None:
        return None
    order: list[str] = []
    for c in brokers:  # keeps the safe order: the controller's rack comes last
        r = racks[int(c.key)]
        if r in order:
            order.remove(r)
        order.append(r)  # type: ignore[arg-type]
    return [[c.address for c in brokers if racks[int(c.key)] == r] for r in order]


def build_steps(changes: list[Change], observed: ObservedCluster, default_min_isr: int = 1,
                broker_racks: dict[int, str | None] | None = None, kraft: KRaftIds | None = None
                ) -> tuple[list[Step], list[tuple[str, str]]]:
    if not changes:
        return [], []
    import networkx as nx  # lazily: a no-op plan (the common case) needs no graph

    g = nx.DiGraph()

    def add(step: Step) -> str:
        if step.id not in g:
            g.add_node(step.id, step=step)
        return step.id

    zk_done: list[str] = []  # last step of each ZooKeeper resource
    kafka_starts: list[str] = []
    restarts: list[tuple[Change, str]] = []
    stops: dict[str, list[str]] = {"kafka": [], "zookeeper": [], "kafka-controller": []}
    removes: list[str] = []

    reassign: str | None = None
    reconfig: Step | None = None
    drained = {d for c in changes for d in c.drain}
    # voters whose service is not running now (stopped by hand, crashed): never part of a majority
    down_voters = frozenset(int(c.key) for c in changes if c.voter and c.start and c.key.isdigit())
    clear: str | None = None
    features: str | None = None
    unregister: str | None = None
    voter_steps: list[tuple[str, Step]] = []  # ("join" | "leave", step)
    for c in changes:
        if c.voters_join or c.voters_leave:
            for node in c.voters_join:
                voter_steps.append(("join", Step(id=f"{StepKind.ADD_VOTER.value}:controller.{node}",
                                                 kind=StepKind.ADD_VOTER, host=c.voter_hosts[node],
                                                 service="kafka-controller", address=f"controller.{node}",
                                                 voter_id=node, availability=VOTER_AVAILABILITY)))
            for node in c.voters_leave:
                voter_steps.append(("leave", Step(id=f"{StepKind.REMOVE_VOTER.value}:controller.{node}",
                                                  kind=StepKind.REMOVE_VOTER, host=c.voter_hosts[node],
                                                  service="kafka-controller", address=f"controller.{node}",
                                                  voter_id=node, voter_dir=c.voter_dirs.get(node),
                                                  availability=VOTER_AVAILABILITY)))
            continue
        if c.unregister:
            unregister = add(Step(id=f"{StepKind.UNREGISTER_BROKERS.value}:kafka", kind=StepKind.UNREGISTER_BROKERS,
                                  host=c.host, service="kafka", address=c.address, unregister=c.unregister))
            continue
        if c.feature_levels:
            features = add(Step(id=f"{StepKind.UPDATE_FEATURES.value}:kafka", kind=StepKind.UPDATE_FEATURES,
                                host=c.host, service="kafka", address=c.address, feature_levels=dict(c.feature_levels),
                                availability=FEATURES_AVAILABILITY))
            continue
        if c.throttled_topics or c.throttled_brokers:
            clear = add(Step(id=f"{StepKind.CLEAR_THROTTLES.value}:kafka", kind=StepKind.CLEAR_THROTTLES,
                             host=c.host, service="kafka", address=c.address, throttled_topics=c.throttled_topics,
                             throttled_brokers=c.throttled_brokers))
            continue
        if c.zk_join or c.zk_leave:
            reconfig = Step(id=f"{StepKind.ZK_RECONFIG.value}:zookeeper", kind=StepKind.ZK_RECONFIG, host=c.host,
                            service="zookeeper", address=c.address, zk_join=c.zk_join, zk_leave=c.zk_leave,
                            gate="zookeeper_members", availability=RECONFIG_AVAILABILITY)
            add(reconfig)
            continue
        if c.moves:
            reassign = add(Step(id=f"{StepKind.REASSIGN.value}:partitions", kind=StepKind.REASSIGN, host=c.host,
                                service="kafka", address=c.address, moves=c.moves, drain=c.drain,
                                throttle_bytes_per_s=c.throttle_bytes_per_s, per_broker=c.per_broker,
                                availability=REASSIGN_AVAILABILITY))
            continue
        if c.action is Action.DELETE:
            bid = int(c.key) if c.service == "kafka" and c.key.isdigit() else None
            stop = add(Step(id=_sid(StepKind.STOP, c.host, c.service), kind=StepKind.STOP, host=c.host,
                            service=c.service, address=c.address,
                            drain=(bid,) if bid is not None and bid in drained else ()))
            rm = add(Step(id=_sid(StepKind.REMOVE, c.host, c.service), kind=StepKind.REMOVE, host=c.host,
                          service=c.service, address=c.address, deletions=c.deletions))
            g.add_edge(stop, rm)
            stops[c.service].append(stop)
            removes.append(rm)
            continue
        prev: str | None = None
        if c.install_java:
            prev = add(Step(id=_sid(StepKind.INSTALL_JAVA, c.host, None), kind=StepKind.INSTALL_JAVA,
                            host=c.host, address=None))
        if c.install_artifact:
            s = add(Step(id=_sid(StepKind.INSTALL_ARTIFACT, c.host, c.service), kind=StepKind.INSTALL_ARTIFACT,
                         host=c.host, service=c.service, address=c.address, artifact_id=c.install_artifact))
            if prev:
                g.add_edge(prev, s)
            prev = s
        if c.configure:
            hashes = c.pinned_hashes if c.ibp_pin else c.file_hashes
            s = add(Step(id=_sid(StepKind.CONFIGURE, c.host, c.service), kind=StepKind.CONFIGURE, host=c.host,
                         service=c.service, address=c.address, file_hashes=dict(hashes), ibp_pin=c.ibp_pin))
            if prev:
                g.add_edge(prev, s)
            prev = s
        if c.format_storage:
            if kraft is None:
                raise ValueError(f"{c.address}: storage to format but no KRaft cluster id")
            initial = kraft.initial_controllers if c.voter and _in_initial(kraft, c.key) else None
            s = add(Step(id=_sid(StepKind.FORMAT_STORAGE, c.host, c.service), kind=StepKind.FORMAT_STORAGE,
                         host=c.host, service=c.service, address=c.address, cluster_id=kraft.cluster_id,
                         initial_controllers=initial, voter=c.voter))
            if prev:
                g.add_edge(prev, s)
            prev = s
        if c.dynamic_keys:
            s = add(Step(id=_sid(StepKind.ALTER_CONFIG, c.host, c.service), kind=StepKind.ALTER_CONFIG,
                         host=c.host, service=c.service, address=c.address, dynamic_keys=c.dynamic_keys))
            if prev:
                g.add_edge(prev, s)
            continue
        gate = {"kafka": f"broker_registered:{c.key}", "kafka-controller": f"controller_caught_up:{c.key}"}.get(
            c.service, "zookeeper_quorum")
        last = prev
        if c.restart or c.start:
            kind = StepKind.RESTART if c.restart else StepKind.START
            step = Step(id=_sid(kind, c.host, c.service), kind=kind, host=c.host, service=c.service,
                        address=c.address, gate=gate, voter=c.voter)
            if kind is StepKind.RESTART and c.key.isdigit():
                step = _with_proof(step, c, observed, default_min_isr, down_voters)
            s = add(step)
            if prev:
                g.add_edge(prev, s)
            last = s
            if kind is StepKind.RESTART:
                restarts.append((c, s))
            elif c.service == "kafka":
                kafka_starts.append(s)
        if c.service in QUORUM_SERVICES and last:
            zk_done.append(last)

    # 2. ZooKeeper before Kafka. A membership change comes after every other ZooKeeper step (new
    #    servers run and follow); brokers roll onto the new zookeeper.connect after a growth, and
    #    before a shrink (so no broker still lists a server that is about to go).
    kafka_rolls = [s for c, s in restarts if c.service == "kafka"]
    if reconfig:
        for z in zk_done:
            g.add_edge(z, reconfig.id)
        if reconfig.zk_leave:
            for k in kafka_rolls:
                g.add_edge(k, reconfig.id)
        else:
            zk_done = [reconfig.id]
        for s in stops["zookeeper"]:
            g.add_edge(reconfig.id, s)
            if reconfig.zk_leave:  # the server stops only once it is out of the ensemble
                g.nodes[s]["step"] = g.nodes[s]["step"].model_copy(update={"gate": "left_ensemble"})
    # A ZooKeeper-mode broker gives up when ZooKeeper is not there, so ZooKeeper starts first; a
    # KRaft broker waits for its controllers, and a new quorum is only readable (Admin API) once a
    # broker is up, so new controllers and brokers start together. Restarts: the quorum first.
    zk_only = [z for z in zk_done if g.nodes[z]["step"].service == "zookeeper"]
    for k in kafka_starts:
        for z in zk_only:
            g.add_edge(z, k)
    for k in kafka_rolls:
        for z in zk_done:
            g.add_edge(z, k)
    # 3. One restart at a time, in safe order (or one rack at a time when asked and proven safe).
    ordered = _restart_order([c for c, _ in restarts], observed)
    by_addr = {c.address: s for c, s in restarts}
    chain = [by_addr[c.address] for c in ordered]
    racks = _rack_stages(ordered, observed, default_min_isr, broker_racks) if broker_racks else None
    if racks:
        stages = [[by_addr[c.address] for c in ordered if c.service == "zookeeper"]]
        stages = [[x] for x in stages[0]] + [[by_addr[a] for a in rack] for rack in racks]
        for stage in stages:
            for sid in stage:
                step = g.nodes[sid]["step"]
                if step.service == "kafka":
                    members = next(r for r in racks if step.address in r)
                    ids = [int(a.split(".", 1)[1]) for a in members]
                    v = can_restart(observed.cluster, ids, default_min_isr)
                    g.nodes[sid]["step"] = step.model_copy(update={
                        "availability": f"rack of brokers {','.join(map(str, ids))} together: " + v.summary(),
                        "unavailable": tuple(r.name for r in v.unavailable), "restart_group": tuple(ids)})
        for prev_stage, next_stage in zip(stages, stages[1:], strict=False):
            for a in prev_stage:
                for b in next_stage:
                    g.add_edge(a, b)
        chain = stages[-1] if stages else []
    else:
        for a, b in zip(chain, chain[1:], strict=False):
            g.add_edge(a, b)
    # 3b. Upgrades: once every broker runs the new binaries (the whole first roll is done), write
    #     the final files (inter.broker.protocol.version raised) and roll again in the same order.
    #     A broker that needs nothing in the first roll (already on the new build with the pinned
    #     files, e.g. when an interrupted upgrade resumes) still takes part in the second.
    second = _restart_order([c for c in changes if c.ibp_pin and c.service == "kafka" and c.key.isdigit()],
                            observed)
    first_roll_ends = chain[-1:] or [n for n in g.nodes if g.nodes[n]["step"].service == "kafka"
                                     and g.nodes[n]["step"].kind is StepKind.START]
    prev_final: str | None = None
    for c in second:
        gate = f"broker_registered:{c.key}"
        cf = add(Step(id=_sid(StepKind.CONFIGURE, c.host, c.service) + "#final", kind=StepKind.CONFIGURE,
                      host=c.host, service=c.service, address=c.address, file_hashes=dict(c.file_hashes)))
        for end in first_roll_ends:
            g.add_edge(end, cf)
        rs = add(_with_proof(Step(id=_sid(StepKind.RESTART, c.host, c.service) + "#final", kind=StepKind.RESTART,
                                  host=c.host, service=c.service, address=c.address, gate=gate),
                             c, observed, default_min_isr, down_voters))
        g.add_edge(cf, rs)
        if prev_final:
            g.add_edge(prev_final, rs)
        prev_final = rs
    # 5. Data moves once every new or restarted broker is up (and the roll is over), and a broker
    #    leaving the spec stops only after the reassignment drained it.
    if reassign and clear:
        g.add_edge(clear, reassign)  # leftovers go before this plan's own reassignment sets throttles
    if reassign:
        for n in list(g.nodes):
            step = g.nodes[n]["step"]
            if step.service == "kafka" and step.kind in (StepKind.START, StepKind.RESTART):
                g.add_edge(n, reassign)
        for s in stops["kafka"]:
            g.add_edge(reassign, s)
    # 8. KRaft quorum membership: one voter change at a time, joins before leaves; a joiner once it
    #    runs (as an observer), a leaver before it stops.
    prev_voter: str | None = None
    for what, step in voter_steps:
        sid = add(step)
        if prev_voter:
            g.add_edge(prev_voter, sid)
        prev_voter = sid
        node_steps = [n for n in g.nodes if g.nodes[n]["step"].address == step.address and n != sid]
        for n in node_steps:
            kind = g.nodes[n]["step"].kind
            if what == "join" and kind in (StepKind.START, StepKind.RESTART, StepKind.FORMAT_STORAGE,
                                           StepKind.CONFIGURE, StepKind.INSTALL_ARTIFACT):
                g.add_edge(n, sid)
            elif what == "leave" and kind in (StepKind.STOP, StepKind.REMOVE):
                g.add_edge(sid, n)
    # 7. KRaft: a leaving broker's registration goes once it is stopped (and drained, rule 5).
    if unregister:
        for s in stops["kafka"] + removes:
            g.add_edge(s, unregister)
        if features:
            g.add_edge(unregister, features)  # a stale registration blocks a feature upgrade
    # 6. A new metadata.version is finalized once every node has restarted onto the new build.
    if features:
        for n in list(g.nodes):
            step = g.nodes[n]["step"]
            if step.kind in (StepKind.START, StepKind.RESTART, StepKind.INSTALL_ARTIFACT) and n != features:
                g.add_edge(n, features)
    # 4. Brokers stop before ZooKeeper does.
    for z in stops["zookeeper"] + stops["kafka-controller"]:
        for k in stops["kafka"]:
            g.add_edge(k, z)
    # 4b. Files go only once every leaving service has stopped (two Kafka services on a host share
    #     a build: its jars are never deleted under a running JVM).
    for rm in removes:
        for stop in [x for group in stops.values() for x in group]:
            if not g.has_edge(stop, rm):
                g.add_edge(stop, rm)

    assert nx.is_directed_acyclic_graph(g), "plan graph has a cycle"
    steps = [g.nodes[n]["step"] for gen in nx.topological_generations(g) for n in sorted(gen)]
    return steps, sorted(g.edges())


def build_plan(changes: list[Change], observed: ObservedCluster, *, spec_path: str, spec_digest: str,
               destroy: bool = False, default_min_isr: int = 1,
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
        min_isr=default_min_isr,
        changes=tuple(changes),
        steps=tuple(steps),
        edges=tuple(edges),
    )
