"""An in-memory twin of a running cluster for unit tests of the gates and the executor.

`ClusterTwin` is a `ClusterReader` (what gates read through) whose state the test scripts: a
restart fences a broker for a number of reads (or forever: a broker that never rejoins), a quorum
can lose its leader for a while (an election mid-roll). `FakeRun` stands in for an Ansible run: a
restart step "restarts" the service in the twin instead of on a host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.apply.runner import HostResult
from reconciler.observe.model import ClusterState, PartitionState, Quorum, QuorumMember

NOW = 1_800_000_000_000


class ClusterTwin:
    """A 3-broker KRaft cluster (controllers 101-103, one RF 3 topic) whose next reads are scripted."""

    def __init__(self, brokers: tuple[int, ...] = (1, 2, 3), voters: tuple[int, ...] = (101, 102, 103),
                 leader: int | None = 101, partitions: int = 6) -> None:
        self.brokers = list(brokers)
        self.voters = list(voters)
        self.leader = leader
        self.fenced: dict[int, int] = {}  # broker -> reads it stays fenced (-1: forever)
        self.no_leader_reads = 0  # reads without a quorum leader (an election)
        self.lagging: dict[int, int] = {}  # voter -> reads it stays behind the leader
        self.stopped: dict[int, int] = {}  # voter -> reads it is down: the leader keeps its last catch-up time
        # voter -> (listener names it announces now, reads until it announces the next ones, those)
        self.announcing: dict[int, tuple[tuple[str, ...], int, tuple[str, ...]]] = {}
        self.kraft_version = 1
        self._last_seen: dict[int, int] = {}
        self.reads = 0
        self.restarted: list[str] = []  # what the fake runs restarted, in order
        self.partitions = [PartitionState(topic="t", partition=p, replicas=tuple(brokers), isr=tuple(brokers),
                                          leader=brokers[p % len(brokers)]) for p in range(partitions)]
        self.closed = False

    # -- what tests script ------------------------------------------------------------------------
    def restart_broker(self, broker: int, fenced_reads: int = 2) -> None:
        self.restarted.append(f"broker.{broker}")
        self.fenced[broker] = fenced_reads

    def restart_voter(self, node: int, lag_reads: int = 1) -> None:
        self.restarted.append(f"controller.{node}")
        if node == self.leader:  # the leader's restart moves leadership: an election
            self.no_leader_reads = 2
            self.leader = next(v for v in self.voters if v != node)
        self.lagging[node] = lag_reads

    # -- ClusterReader ----------------------------------------------------------------------------
    def read(self) -> ClusterState:
        self.reads += 1
        fenced = tuple(sorted(b for b, n in self.fenced.items() if n != 0))
        for b, n in list(self.fenced.items()):
            if n > 0:
                self.fenced[b] = n - 1
        leader = self.leader
        if self.no_leader_reads > 0:
            self.no_leader_reads -= 1
            leader = None
        members = []
        now = NOW + 100 * self.reads  # the leader's clock moves on between reads
        for v in self.voters:
            behind = 10_000 if self.lagging.get(v, 0) else 50
            if self.lagging.get(v, 0) > 0:
                self.lagging[v] -= 1
            seen = now - (0 if v == leader else behind)
            if self.stopped.get(v, 0) > 0:
                self.stopped[v] -= 1
                seen = self._last_seen.get(v, seen)
            self._last_seen[v] = seen
            members.append(QuorumMember(node_id=v, log_end_offset=100, last_caught_up_ms=seen))
        listeners: dict[int, tuple[str, ...]] = {}
        for v, (now_names, reads, then_names) in list(self.announcing.items()):
            listeners[v] = now_names if reads > 0 else then_names
            self.announcing[v] = (now_names, reads - 1, then_names)
        quorum = Quorum(kind="kraft", leader_id=leader, leader_epoch=5, high_watermark=100, voters=tuple(members),
                        listeners=listeners)
        parts = [p.model_copy(update={"isr": tuple(b for b in p.replicas if b not in fenced)}) for p in self.partitions]
        return ClusterState(mode="kraft", kafka_reachable=True, broker_ids=tuple(self.brokers), fenced_brokers=fenced,
                            quorum=quorum, controller_id=leader, partitions=tuple(parts),
                            features={"metadata.version": 33, **({"kraft.version": 1} if self.kraft_version else {})})

    def close(self) -> None:
        self.closed = True


class FakeRun:
    """Stands in for runner.StepRun: records the run and acts on the twin for service steps."""

    runs: list[tuple[str, list[str]]] = []
    on_restart: Callable[[str, str], None] | None = None  # (host, service) of a restart

    def __init__(self, playbook: str, inventory: dict[str, Any], hosts: list[str],
                 extravars: dict[str, Any] | None = None, on_task: Any = None, cluster: str | None = None) -> None:
        self.playbook, self.inventory, self.hosts = playbook, inventory, hosts
        FakeRun.runs.append((playbook, list(hosts)))

    def go(self) -> FakeRun:
        if self.playbook == "service.yml" and FakeRun.on_restart is not None:
            for h in self.hosts:
                hv = self.inventory["all"]["hosts"][h]
                for var in hv.get("kf_step_services", []):
                    if hv[f"kf_{var}"].get("state") == "restarted":
                        FakeRun.on_restart(h, hv[f"kf_{var}"]["name"])
        return self

    def wait(self) -> dict[str, HostResult]:
        return {h: HostResult(host=h, ok=True, changed=True, seconds=0.01) for h in self.hosts}

    finish = wait

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass
