"""Health gates: what must be true after a step before the next one may run.

Each gate polls real cluster state (ZooKeeper four-letter words, /brokers/ids, the Admin API's
ISR) until it holds or a bounded timeout passes; a gate that times out stops the apply with what
it last saw, so the cluster is never pushed further while unhealthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.observe import kafka_admin, zookeeper
from reconciler.spec import ClusterSpec


class GateFailed(Exception):
    pass


@dataclass(frozen=True)
class GateResult:
    name: str
    seconds: float
    detail: str


def _poll(name: str, check: Callable[[], tuple[bool, str]], timeout: float,
          progress: Callable[[str], None] | None, interval: float = 1.0) -> GateResult:
    start = time.monotonic()
    last = ""
    shown = 0.0
    while True:
        ok, last = check()
        waited = time.monotonic() - start
        if ok:
            return GateResult(name, waited, last)
        if waited > timeout:
            raise GateFailed(f"{name}: not healthy after {timeout:.0f}s: {last}")
        if progress and waited - shown >= 5:
            progress(f"waiting for {name}: {last} ({waited:.0f}s)")
            shown = waited
        time.sleep(interval)


def zookeeper_quorum(spec: ClusterSpec, timeout: float = 120,
                     progress: Callable[[str], None] | None = None) -> GateResult:
    """Every node of the spec's ensemble serves, with exactly one leader (or standalone for one node)."""
    nodes = [f"{n.host}:{spec.zookeeper.client_port}" for n in spec.zookeeper.nodes]

    def check() -> tuple[bool, str]:
        modes = {n: zookeeper.ensemble_mode(n, timeout=2.0) for n in nodes}
        shown = ", ".join(f"{n.split(':')[0]}={m}" for n, m in modes.items())
        if len(nodes) == 1:
            return modes[nodes[0]] == "standalone", shown
        vals = list(modes.values())
        return vals.count("leader") == 1 and vals.count("follower") == len(nodes) - 1, shown

    return _poll("ZooKeeper quorum", check, timeout, progress)


def broker_registered(spec: ClusterSpec, broker_id: int, timeout: float = 180,
                      progress: Callable[[str], None] | None = None) -> GateResult:
    zk = [f"{n.host}:{spec.zookeeper.client_port}" for n in spec.zookeeper.nodes]

    def check() -> tuple[bool, str]:
        st = zookeeper.read_cluster(zk, timeout=3.0)
        if not st.zookeeper_reachable:
            return False, f"ZooKeeper unreachable: {st.zookeeper_error}"
        ok = broker_id in st.broker_ids
        return ok, f"registered brokers {sorted(st.broker_ids)}"

    return _poll(f"broker {broker_id} registered", check, timeout, progress)


def no_under_replicated(spec: ClusterSpec, timeout: float = 300,
                        progress: Callable[[str], None] | None = None) -> GateResult:
    """Every partition's ISR holds all its replicas again (a restarted broker has caught up)."""
    bootstrap = [f"{b.host}:{spec.kafka.listeners[0].port}" for b in spec.brokers]

    def check() -> tuple[bool, str]:
        try:
            parts = kafka_admin.read_partitions(bootstrap, timeout=5.0)
        except Exception as e:  # noqa: BLE001 - any client failure means "not yet"
            return False, f"Admin API: {e}"
        under = [f"{p.topic}-{p.partition}" for p in parts if set(p.isr) != set(p.replicas)]
        return not under, (f"{len(under)} under-replicated: {', '.join(under[:5])}" if under
                           else f"{len(parts)} partitions in sync")

    return _poll("no under-replicated partitions", check, timeout, progress)
