"""The executor and the health gates against an in-memory twin of a KRaft cluster (tests/unit/twin.py):
no host, no Ansible, no network. The twin fences restarted brokers for a while (or forever), lets
a restarted voter lag, and runs an election when the quorum's leader restarts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import pipeline
from reconciler.apply import executor, gates, unit_health
from reconciler.apply.executor import ApplyFailed, FailureKind, PlanMismatch
from reconciler.apply.state import Journal
from reconciler.artifacts import PackedArtifact
from reconciler.diff import ArtifactIds
from reconciler.observe.ssh import FakeTransport, HostUnreachable
from reconciler.plan.model import Plan
from reconciler.spec import ClusterSpec, parse_spec

from .builders import Observed
from .conftest import KRAFT_LAB_YAML
from .twin import ClusterTwin, FakeRun

IDS = ArtifactIds(kafka="kafka-4.4.0-0123456789ab")
KAFKA = PackedArtifact("kafka", "4.4.0", Path("/cache/kafka.tar.gz"), "0123456789ab" + "0" * 52, "1" * 64)
HOST_NODE = {"10.213.0.11": (1, 101), "10.213.0.12": (2, 102), "10.213.0.13": (3, 103)}


class _Arts:
    ids = IDS


class Hooks:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def step_started(self, steps: list[Any]) -> None:
        pass

    def host_done(self, step: Any, result: Any) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)


@pytest.fixture
def spec() -> ClusterSpec:
    data = yaml.safe_load(KRAFT_LAB_YAML.read_text())
    data["kafka"]["config"]["num.partitions"] = 4  # a setting brokers and controllers act on: both roll
    return parse_spec(data)


RUNNING = {"ActiveState": "active", "SubState": "running", "NRestarts": "0", "ExecMainCode": "0",
           "ExecMainStatus": "0"}
CRASH_LOOP = {"ActiveState": "activating", "SubState": "auto-restart", "NRestarts": "5", "ExecMainCode": "1",
              "ExecMainStatus": "200"}


@pytest.fixture
def systemd(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], dict[str, str]]:
    """What `systemctl show` says of each (host, unit) the executor asks about: running unless set."""
    units: dict[tuple[str, str], dict[str, str]] = {}

    def factory(host: str, _settings: object) -> FakeTransport:
        def show(cmd: str) -> str:
            assert cmd.startswith("systemctl show -p "), cmd
            names = re.findall(r"'?([\w-]+)\.service'?", cmd)
            return "\n\n".join("\n".join([f"Id={n}.service", *(f"{k}={v}" for k, v in
                                                                units.get((host, n), RUNNING).items())])
                                 for n in names) + "\n"
        return FakeTransport(show)

    monkeypatch.setattr(unit_health, "factory", factory)
    return units


@pytest.fixture
def twin(spec: ClusterSpec, monkeypatch: pytest.MonkeyPatch, systemd: dict[tuple[str, str], dict[str, str]]
         ) -> ClusterTwin:
    t = ClusterTwin()
    monkeypatch.setitem(gates.readers, f"{spec.name}:kraft", t)
    monkeypatch.setattr(gates, "TIMEOUT_SCALE", 0.01)
    monkeypatch.setattr(gates.time, "sleep", lambda s: None)
    monkeypatch.setattr(gates, "_accepts", lambda host, port: True)
    monkeypatch.setattr(gates, "elect_preferred_leaders", lambda spec: "stub")
    monkeypatch.setattr(executor, "StepRun", FakeRun)
    FakeRun.runs = []

    def restarted(host: str, service: str) -> None:
        broker, controller = HOST_NODE[host]
        if service == "kafka":
            t.restart_broker(broker)
        else:
            t.restart_voter(controller)

    FakeRun.on_restart = restarted
    return t


def _plan(spec: ClusterSpec, leader: int = 101) -> tuple[Plan, Any]:
    base = parse_spec(yaml.safe_load(KRAFT_LAB_YAML.read_text()))
    observed = Observed.converged_cluster(base, IDS).quorum(leader=leader).partition("t", 0, replicas=(1, 2, 3))
    observed = observed.build()
    return pipeline.make_plan(spec, "/specs/lab.yaml", observed, _Arts()), observed  # type: ignore[arg-type]


def _run(plan: Plan, spec: ClusterSpec, observed: Any) -> Hooks:
    hooks = Hooks()
    executor.execute(plan, spec, KAFKA, None, observed, hooks, Journal(spec.name))
    return hooks


def _journal(spec: ClusterSpec) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Journal(spec.name).path.read_text().splitlines()]


def test_roll_restarts_follower_controllers_then_the_leader_then_brokers(spec: ClusterSpec, twin: ClusterTwin) -> None:
    plan, observed = _plan(spec, leader=101)
    hooks = _run(plan, spec, observed)
    assert twin.restarted == ["controller.102", "controller.103", "controller.101", "broker.1", "broker.2", "broker.3"]
    passed = [e["gate"] for e in _journal(spec) if e["event"] == "gate_passed"]
    assert passed.count("controller 101 caught up") == 1 and passed.count("broker 3 registered") == 1
    assert any("controller 102 safe to stop: ok" in m for m in hooks.messages)
    assert _journal(spec)[-1]["event"] == "apply_done"


def _broker_1_stays_down(twin: ClusterTwin, systemd: dict[tuple[str, str], dict[str, str]] | None = None) -> None:
    """After its restart broker 1 stays fenced forever (with `systemd`: its unit crash-loops)."""
    original = FakeRun.on_restart

    def hook(host: str, service: str) -> None:
        assert original is not None
        original(host, service)
        if service == "kafka" and HOST_NODE[host][0] == 1:
            twin.fenced[1] = -1
            if systemd is not None:
                systemd[(host, "kafka")] = CRASH_LOOP

    FakeRun.on_restart = hook


def test_a_broker_that_never_rejoins_stops_the_apply(spec: ClusterSpec, twin: ClusterTwin) -> None:
    plan, observed = _plan(spec)
    _broker_1_stays_down(twin)
    with pytest.raises(ApplyFailed, match="broker 1 registered: not reached after .*fenced") as info:
        _run(plan, spec, observed)
    assert info.value.kind is FailureKind.RETRY and "resumes" in info.value.kind.advice
    assert [r for r in twin.restarted if r.startswith("broker")] == ["broker.1"], "the roll went on"
    events = _journal(spec)
    assert events[-1]["event"] == "apply_failed" and "broker 1 registered" in events[-1]["reason"]
    assert events[-1]["failure"] == "retry"
    assert not any(e["event"] == "step_started" and e["step"] == "restart:kafka@10.213.0.12" for e in events)


@pytest.mark.parametrize("watch_every_s", [0.0, 3600.0])
def test_a_service_that_cannot_run_stops_the_apply_naming_its_host_and_exit(
        spec: ClusterSpec, twin: ClusterTwin, systemd: dict[tuple[str, str], dict[str, str]],
        monkeypatch: pytest.MonkeyPatch, watch_every_s: float) -> None:
    """Broker 1's unit crash-loops after its restart (systemd status 200: no working directory).
    Watched (every 0 s): the gate stops at once. Not watched in time: the gate times out and its
    error adds what systemd says. Either way the roll goes no further."""
    monkeypatch.setattr(unit_health, "WATCH_EVERY_S", watch_every_s)
    plan, observed = _plan(spec)
    _broker_1_stays_down(twin, systemd)
    with pytest.raises(ApplyFailed) as info:
        _run(plan, spec, observed)
    why = ("kafka on 10.213.0.11: activating (auto-restart), after 5 automatic restart(s), its process last "
           "exited with status 200 (CHDIR: it could not enter its working directory)")
    assert why in str(info.value) and str(info.value).startswith("broker 1 registered: not reached")
    assert ("it will not be" in str(info.value)) is (watch_every_s == 0)
    assert [r for r in twin.restarted if r.startswith("broker")] == ["broker.1"], "the roll went on"
    assert why in _journal(spec)[-1]["reason"]


def test_systemd_properties_become_words() -> None:
    shown = ("Id=kafka.service\nActiveState=failed\nSubState=failed\nNRestarts=0\nExecMainCode=2\n"
             "ExecMainStatus=9\n\nId=zookeeper.service\nActiveState=active\nSubState=running\nNRestarts=4\n"
             "ExecMainCode=0\nExecMainStatus=0\n")
    units = unit_health.parse(shown)
    assert unit_health.trouble(units["kafka"]) == "failed (failed), its process was killed (signal 9)"
    assert unit_health.trouble(units["zookeeper"]) is None  # running now, whatever happened before
    assert unit_health.trouble({**CRASH_LOOP, "NRestarts": "1"}) is None  # one restart: it may still come up
    assert unit_health.trouble({**CRASH_LOOP, "ExecMainStatus": "1"}) == (
        "activating (auto-restart), after 5 automatic restart(s), its process last exited with status 1")
    assert unit_health.command(["kafka", "kafka-controller"]) == (
        "systemctl show -p Id,ActiveState,SubState,NRestarts,ExecMainCode,ExecMainStatus 'kafka.service' "
        "'kafka-controller.service'")


def test_a_host_systemd_cannot_be_asked_on_is_no_reason_to_stop_waiting(spec: ClusterSpec,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(host: str, _settings: object) -> FakeTransport:
        raise HostUnreachable(host, "connection refused")

    monkeypatch.setattr(unit_health, "factory", unreachable)
    monkeypatch.setattr(unit_health, "WATCH_EVERY_S", 0.0)
    units = {"10.213.0.11": ("kafka",)}
    assert unit_health.watcher(spec, units)() is None  # the gate goes on waiting
    assert unit_health.diagnose(spec, units) == [  # a gate that timed out says it
        "kafka on 10.213.0.11: cannot ask systemd on 10.213.0.11: connection refused "
        "(journalctl -u kafka on the host tells why)"]


def test_a_plan_the_spec_no_longer_matches_aborts_before_any_step(spec: ClusterSpec, twin: ClusterTwin) -> None:
    plan, observed = _plan(spec)
    data = yaml.safe_load(KRAFT_LAB_YAML.read_text())
    data["kafka"]["config"]["num.partitions"] = 5  # edited after the plan was made
    with pytest.raises(PlanMismatch, match="differ from the plan") as info:
        _run(plan, parse_spec(data), observed)
    assert info.value.kind is FailureKind.ABORT and "plan` again" in info.value.kind.advice
    assert FakeRun.runs == [] and twin.restarted == []
    assert not Journal(spec.name).path.exists() or "apply_started" not in Journal(spec.name).path.read_text()


def test_a_quorum_that_loses_its_leader_mid_roll_is_waited_out(spec: ClusterSpec, twin: ClusterTwin) -> None:
    plan, observed = _plan(spec, leader=101)
    reads_before = twin.reads
    _run(plan, spec, observed)
    assert twin.leader != 101, "the leader's restart moved leadership"
    assert twin.reads > reads_before
    assert _journal(spec)[-1]["event"] == "apply_done"


def test_pre_stop_check_waits_for_a_lagging_voter(spec: ClusterSpec, twin: ClusterTwin) -> None:
    twin.lagging[103] = 3  # behind the leader for three reads
    r = gates.voter_safe_to_stop(spec, 102)
    assert r.name == "controller 102 safe to stop" and "2 of the other 2" in r.detail
    assert twin.reads >= 4


def test_a_gate_that_times_out_says_what_it_last_saw(spec: ClusterSpec, twin: ClusterTwin) -> None:
    twin.lagging[103] = 10**9  # never catches up
    with pytest.raises(gates.GateFailed, match=r"controller 102 safe to stop: not reached after .*KafkaQuorumCheck"):
        gates.voter_safe_to_stop(spec, 102)


def test_min_isr_pre_stop_in_kraft(spec: ClusterSpec, twin: ClusterTwin) -> None:
    twin.fenced[3] = -1  # broker 3 is down: stopping broker 1 would leave 1 of 3 in the ISR
    with pytest.raises(gates.GateFailed, match="unavailable for acks=all writes"):
        gates.safe_to_stop(spec, [1], default_min_isr=2)


def test_a_restarted_controller_counts_as_caught_up_only_once_it_fetched_again(spec: ClusterSpec,
                                                                               twin: ClusterTwin) -> None:
    twin.read()  # the leader saw 102 a moment ago ...
    twin.stopped[102] = 4  # ... and it is down for the next reads: its last catch-up time stays
    r = gates.controller_caught_up(spec, 102)
    assert r.name == "controller 102 caught up"
    assert twin.reads >= 6, "passed on the stale catch-up time of a stopped controller"


def test_a_restarted_voter_counts_as_caught_up_once_the_quorum_has_its_new_listeners(spec: ClusterSpec,
                                                                                      twin: ClusterTwin) -> None:
    """Moving the quorum to another listener: a controller restarted with a second controller
    listener is done only once its voter endpoints name both (Kafka updates them shortly after);
    a static quorum (kraft.version 0) never updates them, so it is not waited for."""
    moving = spec.model_copy(update={"kafka": spec.kafka.model_copy(update={
        "second_controller_listener": spec.kafka.controller_listener.model_copy(
            update={"name": "CONTROLLER_TLS", "port": 9095})})})
    twin.announcing[102] = (("CONTROLLER",), 4, ("CONTROLLER", "CONTROLLER_TLS"))
    r = gates.controller_caught_up(moving, 102)
    assert r.name == "controller 102 caught up" and twin.reads >= 5, twin.reads
    twin.kraft_version = 0
    twin.announcing[102] = (("CONTROLLER",), 10**6, ("CONTROLLER",))
    start = twin.reads
    gates.controller_caught_up(moving, 102)
    assert twin.reads - start <= 3
