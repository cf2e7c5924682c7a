"""Health gates: what must be true before and after a step, polled from the live cluster.

Each gate polls real state until it holds or a bounded timeout passes: in ZooKeeper mode
ZooKeeper four-letter words and the znodes the controller writes (registrations, assignments,
ISR); in KRaft the Admin API (DescribeCluster with fenced brokers, DescribeQuorum, DescribeTopics).
A gate that times out stops the apply with what it last saw: the cluster is never pushed further
while unhealthy, and nothing is ever forced. The state comes from one `ClusterReader` per apply
(`readers`); unit tests put an in-memory twin there.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from reconciler.observe import zookeeper
from reconciler.observe.connect import admin_client
from reconciler.observe.model import ClusterState
from reconciler.safety import can_restart, can_restart_voter
from reconciler.spec import ClusterSpec

Progress = Callable[[str], None] | None


class GateFailed(Exception):
    pass


class GateWillNotPass(GateFailed):
    """The watch (see `watching`) ended the wait before the timeout, with its reason."""


@dataclass(frozen=True)
class GateResult:
    name: str
    seconds: float
    detail: str


TIMEOUT_SCALE = 1.0  # unit tests shrink every gate's timeout

# While a gate waits: a reason to stop waiting at once (the services just started cannot run), or None.
_watch: contextvars.ContextVar[Callable[[], str | None] | None] = contextvars.ContextVar("gate_watch", default=None)


@contextlib.contextmanager
def watching(check: Callable[[], str | None]) -> Iterator[None]:
    """Gates polled inside this block also stop when `check` gives a reason (see apply.unit_health)."""
    token = _watch.set(check)
    try:
        yield
    finally:
        _watch.reset(token)


def _poll(name: str, check: Callable[[], tuple[bool, str]], timeout: float, progress: Progress,
          interval: float = 0.2) -> GateResult:
    timeout *= TIMEOUT_SCALE
    start = time.monotonic()
    shown = 0.0
    while True:
        ok, last = check()
        waited = time.monotonic() - start
        if ok:
            return GateResult(name, waited, last)
        if waited > timeout:
            raise GateFailed(f"{name}: not reached after {timeout:.0f}s: {last}")
        watch = _watch.get()
        if watch is not None and (why := watch()):
            raise GateWillNotPass(f"{name}: not reached, and it will not be: {why}")
        if progress and waited - shown >= 5:
            progress(f"waiting for {name}: {last} ({waited:.0f}s of at most {timeout:.0f}s)")
            shown = waited
        time.sleep(interval)


def _zk(spec: ClusterSpec) -> list[str]:
    return [f"{n.host}:{spec.zookeeper.client_port}" for n in spec.zk_nodes()] if spec.zookeeper else []


class ClusterReader(Protocol):
    """The one seam gates read the cluster through: a session kept for the whole apply."""

    def read(self) -> ClusterState: ...

    def close(self) -> None: ...


readers: dict[str, ClusterReader] = {}


def reader_for(spec: ClusterSpec) -> ClusterReader:
    """ZooKeeper mode: one ZooKeeper session; KRaft: one Admin API client."""
    key = f"{spec.name}:{spec.kafka.metadata_mode}"
    if key not in readers:
        if spec.kraft:
            from reconciler.modes.kraft import quorum_endpoints
            from reconciler.observe import kraft
            from reconciler.observe.connect import admin_endpoint, controller_endpoint

            readers[key] = kraft.SessionReader(admin_endpoint(spec), controller_endpoint(spec, quorum_endpoints(spec)))
        else:
            from reconciler.security.zookeeper import zk_auth, zk_tls

            readers[key] = zookeeper.SessionReader(_zk(spec), auth=zk_auth(spec), tls=zk_tls(spec))
    return readers[key]


def cluster_state(spec: ClusterSpec) -> ClusterState:
    """The cluster now, through the apply's reader."""
    return reader_for(spec).read()


def close() -> None:
    """End the gates' sessions (the executor calls this when an apply ends)."""
    for r in readers.values():
        r.close()
    readers.clear()


def _member_endpoints(members: dict[int, str], client_port: int = 2181) -> dict[int, str]:
    """myid -> host:clientPort from ZooKeeper's membership lines ("host:2888:3888:participant;0.0.0.0:2181");
    a line without a client part (a TLS ensemble: its port is the static secureClientPort) gets
    `client_port`."""
    out = {}
    for myid, value in members.items():
        host = value.split(":", 1)[0]
        client = value.partition(";")[2]
        out[myid] = f"{host}:{client.rsplit(':', 1)[-1] or client_port}"
    return out


def _client_port(spec: ClusterSpec) -> int:
    return spec.zookeeper.client_port if spec.zookeeper is not None else 2181


def zookeeper_quorum(spec: ClusterSpec, timeout: float = 120, progress: Progress = None,
                     members_too: bool = False) -> GateResult:
    """Every node of the spec's ensemble serves, with exactly one leader (or standalone for one node).
    members_too: also the current members the spec no longer has (before they are reconfigured away)."""
    from reconciler.security.zookeeper import zk_tls

    nodes = _zk(spec)
    if members_too:
        nodes += [e for e in _member_endpoints(cluster_state(spec).zookeeper_members, _client_port(spec)).values()
                  if e not in nodes]
    tls = zk_tls(spec)

    def check() -> tuple[bool, str]:
        modes = {n: zookeeper.ensemble_mode(n, timeout=2.0, tls=tls) for n in nodes}
        shown = ", ".join(f"{n.split(':')[0]}={m}" for n, m in modes.items())
        if len(nodes) == 1:
            return modes[nodes[0]] == "standalone", shown
        vals = list(modes.values())
        return vals.count("leader") == 1 and vals.count("follower") == len(nodes) - 1, shown

    return _poll("ZooKeeper quorum", check, timeout, progress)


def zookeeper_members(spec: ClusterSpec, timeout: float = 60, progress: Progress = None,
                      lines: bool = False) -> GateResult:
    """ZooKeeper's membership (/zookeeper/config) is exactly the spec's servers; with `lines`, each
    member's line also as the spec renders it."""
    from reconciler.files import zk_server_line

    if spec.zookeeper is None:
        raise ValueError(f"cluster {spec.name} has no zookeeper section")
    want = sorted(n.myid for n in spec.zookeeper.nodes)
    want_lines = dict(zk_server_line(spec, n) for n in spec.zookeeper.nodes)

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        have = sorted(st.zookeeper_members)
        if lines and have == want:
            other = sorted(i for i, v in st.zookeeper_members.items() if v != want_lines[i])
            return not other, (f"lines of {other} differ from the spec's" if other else
                               f"members {have} with the spec's lines")
        return have == want, f"members {have or st.zookeeper_error}, spec {want}"

    return _poll("ZooKeeper membership", check, timeout, progress)


def zookeeper_not_member(spec: ClusterSpec, host: str, timeout: float = 60, progress: Progress = None) -> GateResult:
    """Before stopping a ZooKeeper server that leaves: it is no longer a voting member."""

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if not st.zookeeper_reachable:
            return False, f"ZooKeeper unreachable: {st.zookeeper_error}"
        mine = [i for i, v in st.zookeeper_members.items() if v.split(":", 1)[0] == host]
        if mine:
            return False, f"{host} is still member {mine[0]}"
        return True, f"{host} is not a member (members {sorted(st.zookeeper_members)})"

    return _poll(f"ZooKeeper on {host} out of the ensemble", check, timeout, progress)


def reconfigure_zookeeper(spec: ClusterSpec, join: tuple[int, ...], leave: tuple[int, ...],
                          update: tuple[int, ...] = ()) -> str:
    """Add and remove servers with one dynamic reconfiguration, through a current member; `update`:
    members whose line is rewritten as the spec renders it (lines without a client port, so the
    whole new membership goes non-incrementally, below)."""
    from kazoo.client import KazooClient

    from reconciler.files import zk_server_line

    members = cluster_state(spec).zookeeper_members
    if not members:
        raise GateFailed("cannot read ZooKeeper's membership (/zookeeper/config)")
    if spec.zookeeper is None:
        raise ValueError(f"cluster {spec.name} has no zookeeper section")
    todo_join = [n for n in spec.zookeeper.nodes if n.myid in join and n.myid not in members]
    todo_join += [n for n in spec.zookeeper.nodes if n.myid in update and n.myid in members
                  and members[n.myid] != zk_server_line(spec, n)[1]]
    todo_leave = [i for i in leave if i in members]
    if not todo_join and not todo_leave:
        return "membership already as planned"  # a resumed apply: the reconfig had committed
    joining = ",".join("server.{}={}".format(*zk_server_line(spec, n)) for n in todo_join)
    new_members = None
    if any(";" not in zk_server_line(spec, n)[1] for n in todo_join):
        # ZooKeeper's incremental reconfig takes only lines with a client port; a TLS-only server's
        # line has none (its port is the static secureClientPort): the whole new membership then
        # goes as one non-incremental reconfig (the same result)
        lines = dict(members) | dict(zk_server_line(spec, n) for n in todo_join)
        new_members = ",".join(f"server.{i}={v}" for i, v in sorted(lines.items()) if i not in todo_leave)
        joining, todo_leave = "", []
    endpoints = _member_endpoints(members, _client_port(spec))
    from reconciler.observe.zookeeper import kazoo_tls_args
    from reconciler.security.zookeeper import zk_auth, zk_tls

    client = KazooClient(hosts=",".join(endpoints[i] for i in sorted(endpoints) if i not in leave) or
                         ",".join(endpoints.values()), timeout=10, auth_data=zk_auth(spec) or None,
                         **kazoo_tls_args(zk_tls(spec)))
    client.start(timeout=15)
    try:
        data, _ = client.reconfig(joining=joining or None, leaving=",".join(map(str, todo_leave)) or None,
                                  new_members=new_members)
    finally:
        client.stop()
        client.close()
    return data.decode("utf-8") if isinstance(data, bytes) else str(data)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def broker_registered(spec: ClusterSpec, broker_id: int, timeout: float = 180, progress: Progress = None
                      ) -> GateResult:
    """The broker is registered (ZooKeeper mode: in ZooKeeper; KRaft: with the controller, and
    unfenced, i.e. caught up with the metadata) and its listener accepts connections."""
    broker = next(b for b in spec.brokers if b.id == broker_id)
    port = spec.kafka.listeners[0].port

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if not st.reachable:
            return False, f"cluster unreachable: {st.error}"
        if broker_id not in st.broker_ids:
            return False, f"registered brokers {sorted(st.broker_ids)}"
        if broker_id in st.fenced_brokers:
            return False, f"broker {broker_id} is registered but fenced (fenced: {sorted(st.fenced_brokers)})"
        if not _accepts(broker.host, port):
            return False, f"registered, but {broker.host}:{port} does not accept connections yet"
        return True, f"registered brokers {sorted(st.broker_ids)}, {broker.host}:{port} accepts connections"

    return _poll(f"broker {broker_id} registered", check, timeout, progress)


def replicas_in_sync(spec: ClusterSpec, timeout: float = 300, progress: Progress = None,
                     broker_id: int | None = None) -> GateResult:
    """No partition is under-replicated (with broker_id: progress counts that broker's replicas)."""

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if not st.reachable:
            return False, f"cluster unreachable: {st.error}"
        under = [p for p in st.partitions if set(p.isr) != set(p.replicas)]
        if broker_id is not None:
            mine = [p for p in st.partitions if broker_id in p.replicas]
            back = sum(broker_id in p.isr for p in mine)
            detail = f"broker {broker_id}: {back}/{len(mine)} replicas in ISR; {len(under)} under-replicated"
        else:
            detail = f"{len(under)} of {len(st.partitions)} partitions under-replicated"
        if under:
            detail += " (" + ", ".join(f"{p.topic}-{p.partition}" for p in under[:4]) + ")"
        return not under, detail

    name = f"broker {broker_id} back in sync" if broker_id is not None else "all replicas in sync"
    return _poll(name, check, timeout, progress)


def safe_to_stop(spec: ClusterSpec, brokers: list[int], default_min_isr: int, timeout: float = 120,
                 progress: Progress = None) -> GateResult:
    """Before stopping brokers: every partition they replicate keeps ISR >= min.insync.replicas
    without them. Waits (bounded) for lagging replicas to catch up; never forces."""

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if not st.reachable:
            return False, f"cluster unreachable: {st.error}"
        v = can_restart(st, brokers, default_min_isr)
        return v.ok, v.summary()

    who = ",".join(str(b) for b in brokers)
    return _poll(f"broker {who} safe to stop", check, timeout, progress)


def broker_empty(spec: ClusterSpec, broker_id: int, timeout: float = 60, progress: Progress = None) -> GateResult:
    """Before stopping a broker that leaves the cluster: no partition lists it as a replica, so
    stopping it cannot take away an in-sync copy of anything (and it leads nothing)."""

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if not st.reachable:
            return False, f"cluster unreachable: {st.error}"
        held = [f"{p.topic}-{p.partition}" for p in st.partitions if broker_id in p.replicas]
        if held:
            return False, f"broker {broker_id} still holds {len(held)} replica(s) ({', '.join(held[:4])})"
        return True, f"broker {broker_id} holds no replicas of {len(st.partitions)} partitions"

    return _poll(f"broker {broker_id} empty", check, timeout, progress)


def elect_preferred_leaders(spec: ClusterSpec, timeout_s: float = 60) -> str:
    """Move leadership back to preferred replicas after a roll (what the roll moved away)."""
    preferred = 0  # ElectLeaders election type: 0 preferred, 1 unclean

    admin = admin_client(spec, request_timeout_ms=int(timeout_s * 1000))
    try:
        admin.elect_leaders(preferred, raise_errors=False)
    finally:
        admin.close()
    st = cluster_state(spec)
    off = [p for p in st.partitions if p.replicas and p.leader != p.replicas[0]]
    return f"{len(st.partitions) - len(off)} of {len(st.partitions)} partitions led by their preferred replica"


def alter_broker_configs(spec: ClusterSpec, broker_id: int, values: dict[str, str | None]) -> str:
    """Set (or, for None, delete) per-broker dynamic configs on a running broker: no restart.

    The same values are in server.properties already (written by the configure step), so the
    broker keeps them across later restarts either way.
    """
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = admin_client(spec)
    try:
        configs = {k: (("DELETE", None) if v is None else ("SET", v)) for k, v in values.items()}
        result = admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, str(broker_id), configs=configs)],
                                     incremental=True)
    finally:
        admin.close()
    return f"broker {broker_id}: {', '.join(sorted(values))} -> {result}"


FETCH_TIMEOUT_MS = 2000  # controller.quorum.fetch.timeout.ms (Kafka's default)


def _fetch_timeout_ms(spec: ClusterSpec) -> int:
    raw = str({**spec.kafka.config, **spec.kafka.controller_config}.get("controller.quorum.fetch.timeout.ms",
                                                                       FETCH_TIMEOUT_MS))
    return int(raw) if raw.isdigit() else FETCH_TIMEOUT_MS


def controller_caught_up(spec: ClusterSpec, node_id: int, timeout: float = 180, progress: Progress = None
                         ) -> GateResult:
    """After a KRaft controller (or combined node) starts: the quorum has a leader and this node is
    one of its voters or observers, caught up with the leader (last-caught-up time within
    controller.quorum.fetch.timeout.ms of the leader's) since the gate began: the leader keeps a
    stopped node's last catch-up time, which stays within that window for a while after the stop,
    so only a catch-up after the leader's time at the first reading proves the new process is back.
    A voter of a dynamic quorum also announces its controller listeners to the quorum (KIP-853
    voter endpoints, updated by Kafka shortly after a start with other listeners): the gate waits
    for them too, so the next node that reaches the quorum over a new listener finds it."""
    limit = _fetch_timeout_ms(spec)
    served = tuple(c.name for c in spec.kafka.controller_listeners)
    since: list[int] = []  # the leader's clock at the first reading (its own last-caught-up time is "now")

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        q = st.quorum
        if q is None:
            return False, f"quorum unreadable: {st.error}"
        members = {m.node_id: m for m in (*q.voters, *q.observers)}
        leader = members.get(q.leader_id) if q.leader_id is not None else None
        if leader is None or leader.last_caught_up_ms is None:
            return False, f"no quorum leader yet (voters {list(q.voter_ids)})"
        if not since:
            since.append(leader.last_caught_up_ms)
        me = members.get(node_id)
        if me is None:
            return False, f"node {node_id} is not in the quorum yet (voters {list(q.voter_ids)})"
        announced = q.listeners.get(node_id)
        if node_id in q.voter_ids and announced and set(announced) != set(served) \
                and st.features.get("kraft.version", 0) >= 1:
            return False, (f"voter {node_id} has announced {','.join(announced)} to the quorum, not yet "
                           f"{','.join(served)}")
        if node_id == leader.node_id:
            return True, f"node {node_id} leads the quorum (epoch {q.leader_epoch})"
        if me.last_caught_up_ms is None or me.last_caught_up_ms <= since[0]:
            return False, f"node {node_id} has not fetched from the leader {leader.node_id} since it started"
        if leader.last_caught_up_ms - me.last_caught_up_ms >= limit:
            return False, f"node {node_id} is behind the leader {leader.node_id}"
        return True, (f"node {node_id} caught up with leader {leader.node_id} (epoch {q.leader_epoch}, "
                      f"voters {list(q.voter_ids)})")

    return _poll(f"controller {node_id} caught up", check, timeout, progress)


def voter_safe_to_stop(spec: ClusterSpec, node_id: int, timeout: float = 120, progress: Progress = None
                       ) -> GateResult:
    """Before stopping a KRaft voter: the other voters keep a caught-up majority (KafkaQuorumCheck).
    Waits (bounded) for a lagging voter; never forces."""
    limit = _fetch_timeout_ms(spec)

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if st.quorum is None:
            return False, f"quorum unreadable: {st.error}"
        v = can_restart_voter(st.quorum, node_id, limit)
        return v.ok, v.summary()

    return _poll(f"controller {node_id} safe to stop", check, timeout, progress)


def update_features(spec: ClusterSpec, levels: dict[str, int], timeout: float = 60) -> str:
    """UpdateFeatures with each feature named (never a release version, which would also raise
    kraft.version): validate_only first, then for real, then wait until the levels are finalized."""
    admin = admin_client(spec)
    try:
        for validate in (True, False):
            result = admin.update_features(dict(levels), validate_only=validate)
            bad = {k: v for k, v in (result or {}).items() if v != "OK"}
            if bad:
                raise GateFailed(f"UpdateFeatures {'validation ' if validate else ''}refused: {bad}")
    finally:
        admin.close()

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        have = {k: st.features.get(k) for k in levels}
        return have == levels, f"finalized {have}, planned {levels}"

    r = _poll("feature levels finalized", check, timeout, None)
    return f"{r.name}: {r.detail}"


def brokers_unregistered(spec: ClusterSpec, brokers: tuple[int, ...], timeout: float = 60,
                         progress: Progress = None) -> GateResult:
    """DescribeCluster, fenced brokers included, no longer lists these brokers."""

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if not st.reachable:
            return False, f"cluster unreachable: {st.error}"
        left = sorted(set(brokers) & set(st.broker_ids))
        return not left, f"registered brokers {sorted(st.broker_ids)}" + (f", still {left}" if left else "")

    return _poll(f"broker(s) {', '.join(map(str, brokers))} unregistered", check, timeout, progress)


def open_znodes(spec: ClusterSpec) -> tuple[str, ...]:
    """Kafka's znodes anyone may change (ZooKeeper mode), read as observe reads them (the gates'
    session skips ACLs); raises while ZooKeeper cannot be read."""
    from reconciler.security.zookeeper import zk_auth, zk_tls

    st = zookeeper.read_cluster(_zk(spec), auth=zk_auth(spec), tls=zk_tls(spec))
    if not st.zookeeper_reachable:
        raise GateFailed(f"ZooKeeper unreadable: {st.zookeeper_error}")
    return st.open_znodes


def voters(spec: ClusterSpec) -> tuple[int, ...]:
    st = cluster_state(spec)
    return st.quorum.voter_ids if st.quorum else ()


def voter_set(spec: ClusterSpec, node: int, present: bool, timeout: float = 120, progress: Progress = None
              ) -> GateResult:
    """The quorum's voters (DescribeQuorum) include, or no longer include, this controller."""

    def check() -> tuple[bool, str]:
        st = cluster_state(spec)
        if st.quorum is None:
            return False, f"quorum unreadable: {st.error}"
        have = st.quorum.voter_ids
        return (node in have) == present, f"voters {list(have)}"

    what = "a voter" if present else "no longer a voter"
    return _poll(f"controller {node} {what}", check, timeout, progress)
