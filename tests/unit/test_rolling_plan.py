"""Rolling restarts as the operator meets them in `kafkaform plan`.

- each broker restart carries its availability proof, and the plan refuses restarts that would
  make partitions unavailable unless --allow-unavailable;
- config changes the version can make live become Admin API updates with no restart;
- an interrupted apply's owed restarts are carried into the next plan, and those that already
  happened (seen from the service's start time) are confirmed instead of repeated.

All pure: built observed states and a journal in a temporary KAFKAFORM_HOME.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

from reconciler import files as F
from reconciler import pipeline
from reconciler.apply.state import Journal, PendingRestart
from reconciler.diff import Action, ArtifactIds, Change, carry_pending_restarts, diff
from reconciler.observe.model import ObservedCluster
from reconciler.pipeline import PlanRefused, effective_min_isr
from reconciler.plan.model import Plan, Step, StepKind
from reconciler.plan.render import render_text
from reconciler.spec import ClusterSpec, parse_spec

from .builders import Observed
from .conftest import ARTS, LAB_YAML

H1, H2, H3 = "10.213.0.11", "10.213.0.12", "10.213.0.13"
HOST_OF = {1: H1, 2: H2, 3: H3}


@pytest.fixture(autouse=True)
def kafkaform_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journal, lock and revisions go to a temporary home, never ~/.kafkaform."""
    monkeypatch.setenv("KAFKAFORM_HOME", str(tmp_path))
    return tmp_path


@dataclass(frozen=True)
class _Arts:
    """Stands in for artifacts.SpecArtifacts: make_plan only reads `.ids`."""

    ids: ArtifactIds


def spec_with(**kafka_config: object) -> ClusterSpec:
    """lab.yaml with extra/overridden kafka.config keys (dots spelled with __ in the keyword)."""
    data = yaml.safe_load(LAB_YAML.read_text())
    data["kafka"]["config"].update({k.replace("__", "."): v for k, v in kafka_config.items()})
    return parse_spec(data)


def make_plan(spec: ClusterSpec, observed: ObservedCluster, *, allow_unavailable: bool = False,
              arts: ArtifactIds = ARTS) -> Plan:
    return pipeline.make_plan(spec, "/specs/lab.yaml", observed, _Arts(arts),  # type: ignore[arg-type]
                              allow_unavailable=allow_unavailable)


def orders_rf3(obs: Observed, isr: tuple[int, ...] = (1, 2, 3), n: int = 3) -> Observed:
    """n partitions of an RF 3 topic `orders` over brokers 1-3, each with ISR limited to `isr`."""
    for p in range(n):
        replicas = tuple((p + i) % 3 + 1 for i in range(3))
        obs.partition("orders", p, replicas=replicas, isr=tuple(b for b in replicas if b in isr))
    return obs


def running(spec: ClusterSpec, isr: tuple[int, ...] = (1, 2, 3), controller: int = 1) -> Observed:
    """A converged cluster (as `spec` wants it) with a controller and an RF 3 topic."""
    return orders_rf3(Observed.converged_cluster(spec, ARTS).controller(controller), isr)


def steps_of(plan: Plan, kind: StepKind, service: str | None = "kafka") -> list[Step]:
    return [s for s in plan.steps if s.kind is kind and (service is None or s.service == service)]


def by_address(changes: list[Change] | tuple[Change, ...]) -> dict[str, Change]:
    return {c.address: c for c in changes}


def restart_id(broker: int) -> str:
    return f"restart:kafka@{HOST_OF[broker]}"


# --- availability proof on broker restarts -----------------------------------------------------


def test_static_change_rolls_brokers_one_at_a_time_controller_last_with_proof(lab_spec: ClusterSpec) -> None:
    plan = make_plan(spec_with(num__partitions=6), running(lab_spec, controller=1).build())
    changes = by_address(plan.changes)
    assert sorted(changes) == ["broker.1", "broker.2", "broker.3"]
    assert all(c.rolling_restart and c.dynamic_keys == () for c in changes.values())
    restarts = steps_of(plan, StepKind.RESTART)
    assert [s.address for s in restarts] == ["broker.2", "broker.3", "broker.1"]
    # chained: never two brokers down at once
    assert (restart_id(2), restart_id(3)) in plan.edges and (restart_id(3), restart_id(1)) in plan.edges
    assert plan.min_isr == 2 and plan.allow_unavailable is False
    for s in restarts:
        b = s.address.split(".")[1]  # type: ignore[union-attr]
        assert s.unavailable == ()
        assert s.availability == (f"broker {b}: safe; 3 of 3 partition(s) drop to exactly "
                                  "min.insync.replicas while it restarts")
    text = render_text(plan)
    assert "(rolling restart)" in text
    assert "availability: broker 2: safe; 3 of 3 partition(s)" in text


def test_plan_refuses_restarts_that_make_partitions_unavailable(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec, isr=(1, 2)).build()  # broker 3 out of every ISR
    with pytest.raises(PlanRefused) as exc:
        make_plan(spec_with(num__partitions=6), observed)
    issues = exc.value.issues
    # broker 3 restarting loses nobody from an ISR; brokers 1 and 2 would leave ISR 1 < 2.
    assert sorted(i.path for i in issues) == ["broker.1", "broker.2"]
    msg = str(exc.value)
    for p in ("orders-0", "orders-1", "orders-2"):
        assert f"{p} (ISR 1 of 3 left, min.insync.replicas 2)" in msg
    assert "restart refused" in msg
    assert "--allow-unavailable" in msg
    assert "Bring the missing replicas back into the ISR first" in msg


def test_allow_unavailable_keeps_the_plan_and_says_so(lab_spec: ClusterSpec) -> None:
    plan = make_plan(spec_with(num__partitions=6), running(lab_spec, isr=(1, 2)).build(),
                     allow_unavailable=True)
    assert plan.allow_unavailable is True
    risky = {s.address: s.unavailable for s in steps_of(plan, StepKind.RESTART)}
    assert risky == {"broker.1": ("orders-0", "orders-1", "orders-2"),
                     "broker.2": ("orders-0", "orders-1", "orders-2"),
                     "broker.3": ()}
    assert "stopping it makes 3 partition(s) unavailable" in render_text(plan)
    # and the flag survives the plan file round trip
    assert Plan.model_validate_json(plan.model_dump_json()).allow_unavailable is True


def test_topic_min_isr_override_refuses_a_roll_of_an_in_sync_cluster(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).topic_min_isr("orders", 3).build()
    with pytest.raises(PlanRefused) as exc:
        make_plan(spec_with(num__partitions=6), observed)
    assert sorted(i.path for i in exc.value.issues) == ["broker.1", "broker.2", "broker.3"]
    msg = str(exc.value)
    assert "min.insync.replicas 3" in msg
    assert "topics whose replication factor is <= min.insync.replicas" in msg and ": orders" in msg


def test_rf1_topic_named_as_weak_in_the_restart_proof(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).partition("scratch", 0, replicas=(2,)).build()
    plan = make_plan(spec_with(num__partitions=6), observed, allow_unavailable=True)
    steps = {s.address: s for s in steps_of(plan, StepKind.RESTART)}
    assert steps["broker.2"].unavailable == ("scratch-0",)
    assert steps["broker.2"].availability.endswith(  # type: ignore[union-attr]
        "topics whose replication factor is <= min.insync.replicas (unavailable during any restart of "
        "their brokers): scratch")
    assert steps["broker.1"].unavailable == () and "scratch" not in (steps["broker.1"].availability or "")


def test_no_restart_no_refusal_even_with_a_short_isr(lab_spec: ClusterSpec) -> None:
    """Live config changes stop nobody, so a short ISR is no reason to refuse them."""
    plan = make_plan(spec_with(log__cleaner__threads=2), running(lab_spec, isr=(1, 2)).build())
    assert steps_of(plan, StepKind.RESTART) == []
    assert len(steps_of(plan, StepKind.ALTER_CONFIG)) == 3


def test_up_to_date_cluster_with_a_short_isr_plans_nothing(lab_spec: ClusterSpec) -> None:
    plan = make_plan(lab_spec, running(lab_spec, isr=(1,)).build())
    assert plan.empty and plan.steps == ()


# --- effective min.insync.replicas -------------------------------------------------------------


def test_effective_min_isr_is_the_larger_of_spec_and_running_brokers(lab_spec: ClusterSpec) -> None:
    converged = running(lab_spec)
    assert effective_min_isr(lab_spec, converged.build()) == 2  # MSK default in spec and files
    # the spec lowers it to 1 while the brokers still run with 2: prove against 2
    assert effective_min_isr(spec_with(min__insync__replicas=1), converged.build()) == 2
    # one broker was hand-edited to 3: prove against 3
    edited = running(lab_spec).on(H2).edit(F.SERVER_PROPERTIES, "min.insync.replicas=2", "min.insync.replicas=3")
    assert effective_min_isr(lab_spec, edited.build()) == 3
    # nothing installed yet: the spec's value
    assert effective_min_isr(spec_with(min__insync__replicas=1), Observed.bare_cluster(lab_spec).build()) == 1


def test_running_min_isr_above_spec_drives_the_refusal(lab_spec: ClusterSpec) -> None:
    """Brokers running with min ISR 3 refuse a roll that the spec's 2 alone would allow."""
    observed = running(lab_spec)
    for h in (H1, H2, H3):
        observed.on(h).edit(F.SERVER_PROPERTIES, "min.insync.replicas=2", "min.insync.replicas=3")
    with pytest.raises(PlanRefused) as exc:
        make_plan(spec_with(num__partitions=6), observed.build())
    assert "min.insync.replicas 3" in str(exc.value)


# --- live (dynamic) broker config changes ------------------------------------------------------


def test_dynamic_key_changes_live_without_restart(lab_spec: ClusterSpec) -> None:
    plan = make_plan(spec_with(log__cleaner__threads=2), running(lab_spec).build())
    changes = by_address(plan.changes)
    assert sorted(changes) == ["broker.1", "broker.2", "broker.3"]
    for c in changes.values():
        assert c.action is Action.UPDATE
        assert c.dynamic_keys == ("log.cleaner.threads",)
        assert not c.restart and not c.start and not c.rolling_restart and c.install_artifact is None
        assert c.configure  # the file is still written, so a later restart keeps the value
        assert [(a.name, a.before, a.after) for a in c.attrs] == [("config.log.cleaner.threads", None, "2")]
        assert any("no restart" in r for r in c.reasons)
    assert steps_of(plan, StepKind.RESTART) == [] and steps_of(plan, StepKind.START) == []
    alters = steps_of(plan, StepKind.ALTER_CONFIG)
    assert [s.address for s in alters] == ["broker.1", "broker.2", "broker.3"]
    for s in alters:
        assert s.dynamic_keys == ("log.cleaner.threads",)
        assert (f"configure:kafka@{s.host}", s.id) in plan.edges  # file first, then the live change
    text = render_text(plan)
    assert "broker.1 on 10.213.0.11 will be updated in-place (no restart)" in text
    assert "broker.1: set log.cleaner.threads live (no restart)" in text
    assert "rolling restart" not in text
    assert "Plan: 0 to add, 3 to change, 0 to destroy." in text


def test_several_dynamic_keys_including_a_changed_value(lab_spec: ClusterSpec) -> None:
    before = spec_with(message__max__bytes=1048588)
    after = spec_with(message__max__bytes=2097152, log__cleaner__threads=2)
    c = by_address(make_plan(after, running(before).build()).changes)["broker.2"]
    assert c.dynamic_keys == ("log.cleaner.threads", "message.max.bytes")
    assert ("config.message.max.bytes", "1048588", "2097152") in [(a.name, a.before, a.after) for a in c.attrs]


def test_hand_edit_of_a_dynamic_key_on_one_broker_is_reverted_live(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).on(H2).edit(F.SERVER_PROPERTIES, "min.insync.replicas=2",
                                             "min.insync.replicas=1")
    plan = make_plan(lab_spec, observed.build())
    assert [(c.address, c.dynamic_keys, c.restart) for c in plan.changes] == [
        ("broker.2", ("min.insync.replicas",), False)]


@pytest.mark.parametrize("static", [{"num__partitions": 6}, {"log__retention__hours": 48}])
def test_a_static_key_in_the_mix_means_a_rolling_restart(lab_spec: ClusterSpec, static: dict[str, int]) -> None:
    plan = make_plan(spec_with(log__cleaner__threads=2, **static), running(lab_spec).build())
    for c in plan.changes:
        assert c.rolling_restart and c.dynamic_keys == ()
    assert steps_of(plan, StepKind.ALTER_CONFIG) == []
    assert [s.address for s in steps_of(plan, StepKind.RESTART)] == ["broker.2", "broker.3", "broker.1"]
    assert "(no restart)" not in render_text(plan)


def test_sensitive_keys_never_change_live(lab_spec: ClusterSpec) -> None:
    # ssl.keystore.password is dynamically updatable in Kafka, but secrets go through a restart.
    before = spec_with(ssl__keystore__password="old-secret")
    plan = make_plan(spec_with(ssl__keystore__password="new-secret"), running(before).build())
    for c in plan.changes:
        assert c.rolling_restart and c.dynamic_keys == ()
        assert ("config.ssl.keystore.password", "(sensitive)", "(sensitive)") in [
            (a.name, a.before, a.after) for a in c.attrs]
    text = render_text(plan)
    assert "old-secret" not in text and "new-secret" not in text


def test_stopped_broker_is_started_not_altered(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).on(H3).service("kafka", "inactive")
    c = by_address(make_plan(spec_with(log__cleaner__threads=2), observed.build()).changes)["broker.3"]
    assert c.start and not c.restart and c.dynamic_keys == ()


def test_other_file_drift_with_a_dynamic_key_means_restart(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).on(H1).edit(F.KAFKA_UNIT, "kafka", "kafka ")
    plan = make_plan(spec_with(log__cleaner__threads=2), observed.build())
    changes = by_address(plan.changes)
    assert changes["broker.1"].rolling_restart and changes["broker.1"].dynamic_keys == ()
    assert changes["broker.2"].dynamic_keys == ("log.cleaner.threads",)


def test_new_build_with_a_dynamic_key_means_restart(lab_spec: ClusterSpec) -> None:
    new = ArtifactIds(kafka="kafka-3.9.1-fedcba987654", zookeeper=ARTS.zookeeper)
    plan = make_plan(spec_with(log__cleaner__threads=2), running(lab_spec).build(), arts=new)
    for c in plan.changes:
        if c.service == "kafka":
            assert c.rolling_restart and c.install_artifact == new.kafka and c.dynamic_keys == ()
    assert steps_of(plan, StepKind.ALTER_CONFIG) == []


# --- interrupted apply: journal ----------------------------------------------------------------

T_APPLY = "2026-11-26T07:05:00+00:00"
T_STEP2 = "2026-11-26T07:05:40+00:00"  # the interrupted apply began restarting broker 2 here


def restarts_entry(*brokers: int) -> list[dict[str, str]]:
    return [{"step": restart_id(b), "address": f"broker.{b}", "service": "kafka", "host": HOST_OF[b]}
            for b in brokers]


def write_journal(cluster: str, *entries: dict[str, Any], tail: str = "") -> Journal:
    j = Journal(cluster)
    j.path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries) + tail)
    return j


def interrupted_in_broker2(cluster: str = "lab", tail: str = "") -> Journal:
    """Broker 1 restarted and recorded, broker 2's restart began, then the apply was killed."""
    return write_journal(
        cluster,
        {"at": T_APPLY, "event": "apply_started", "restarts": restarts_entry(2, 3, 1)},
        {"at": "2026-11-26T07:05:10+00:00", "event": "step_started", "step": restart_id(1)},
        {"at": "2026-11-26T07:05:30+00:00", "event": "step_done", "step": restart_id(1)},
        {"at": T_STEP2, "event": "step_started", "step": restart_id(2)},
        tail=tail)


def test_no_journal_owes_nothing() -> None:
    assert Journal("lab").pending_restarts() == []


def test_interrupted_apply_owes_restarts_not_marked_done() -> None:
    pending = interrupted_in_broker2().pending_restarts()
    assert pending == [
        PendingRestart(step=restart_id(2), address="broker.2", service="kafka", host=H2, started_at=T_STEP2),
        PendingRestart(step=restart_id(3), address="broker.3", service="kafka", host=H3, started_at=None)]


def test_finished_apply_owes_nothing() -> None:
    j = interrupted_in_broker2()
    j.record(event="apply_done", steps=9)
    assert j.pending_restarts() == []


def test_only_the_last_apply_counts() -> None:
    # an old interrupted apply, then a complete one: nothing owed
    write_journal("lab",
                  {"at": T_APPLY, "event": "apply_started", "restarts": restarts_entry(1, 2)},
                  {"at": T_APPLY, "event": "apply_started", "restarts": restarts_entry(3)},
                  {"at": T_APPLY, "event": "apply_done"})
    assert Journal("lab").pending_restarts() == []
    # a complete apply, then an interrupted one: only the second's restarts
    write_journal("lab",
                  {"at": T_APPLY, "event": "apply_started", "restarts": restarts_entry(1, 2)},
                  {"at": T_APPLY, "event": "apply_done"},
                  {"at": T_APPLY, "event": "apply_started", "restarts": restarts_entry(3)})
    assert [p.address for p in Journal("lab").pending_restarts()] == ["broker.3"]


def test_truncated_last_line_is_ignored() -> None:
    j = interrupted_in_broker2(tail='{"at": "2026-11-26T07:05:50+00:00", "event": "step_do')
    assert [p.address for p in j.pending_restarts()] == ["broker.2", "broker.3"]


def test_journal_is_per_cluster_under_kafkaform_home(kafkaform_home: Path) -> None:
    j = interrupted_in_broker2("lab")
    assert j.path == kafkaform_home / "clusters" / "lab" / "journal.jsonl"
    assert Journal("other").pending_restarts() == []


# --- interrupted apply: carrying restarts into the next plan -----------------------------------


def pending_of(j: Journal) -> list[PendingRestart]:
    return j.pending_restarts()


def test_restart_that_happened_is_confirmed_and_the_rest_carried(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).service_started(H2, "kafka", "Thu 2026-11-26 07:05:43 UTC").build()
    changes, confirmed = carry_pending_restarts([], lab_spec, observed, pending_of(interrupted_in_broker2()))
    assert [s for s, _ in confirmed] == [restart_id(2)]
    assert "runs since Thu 2026-11-26 07:05:43 UTC" in confirmed[0][1]
    assert [(c.address, c.action, c.restart, c.host) for c in changes] == [("broker.3", Action.UPDATE, True, H3)]
    assert changes[0].reasons == ("restart owed by an interrupted apply (journal)",)


def test_started_exactly_when_the_step_began_counts_as_restarted(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).service_started(H2, "kafka", "Thu 2026-11-26 07:05:40 UTC").build()
    _, confirmed = carry_pending_restarts([], lab_spec, observed, pending_of(interrupted_in_broker2()))
    assert [s for s, _ in confirmed] == [restart_id(2)]


@pytest.mark.parametrize("started", ["Thu 2026-11-26 07:05:39 UTC", None, "not a time"])
def test_restart_not_proven_is_repeated(lab_spec: ClusterSpec, started: str | None) -> None:
    observed = running(lab_spec).service_started(H2, "kafka", started).build()
    changes, confirmed = carry_pending_restarts([], lab_spec, observed, pending_of(interrupted_in_broker2()))
    assert confirmed == []
    assert [c.address for c in changes] == ["broker.2", "broker.3"]
    assert all(c.restart for c in changes)


def test_local_zone_stamp_never_confirms_a_restart(lab_spec: ClusterSpec) -> None:
    """08:00 CET is 07:00 UTC, before the restart began at 07:05:40 UTC. strptime's %Z accepts the
    control machine's own zone name but ignores its offset, so on a control machine in CET this read
    as 08:00 UTC and confirmed a restart that never happened. Non-UTC stamps now mean: repeat it."""
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        observed = running(lab_spec).service_started(H2, "kafka", "Thu 2026-11-26 08:00:00 CET").build()
        changes, confirmed = carry_pending_restarts([], lab_spec, observed, pending_of(interrupted_in_broker2()))
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
    assert confirmed == []
    assert [c.address for c in changes] == ["broker.2", "broker.3"]


def test_stopped_service_is_not_confirmed_and_its_start_is_kept(lab_spec: ClusterSpec) -> None:
    observed = running(lab_spec).on(H2).service("kafka", "inactive").build()
    base = diff(lab_spec, observed, ARTS).changes
    changes, confirmed = carry_pending_restarts(base, lab_spec, observed, pending_of(interrupted_in_broker2()))
    assert confirmed == []
    c = by_address(changes)["broker.2"]
    assert c.start and not c.restart  # starting it is the restart


def test_pending_restart_turns_a_live_update_into_a_restart(lab_spec: ClusterSpec) -> None:
    spec = spec_with(log__cleaner__threads=2)
    observed = running(lab_spec).build()
    base = diff(spec, observed, ARTS).changes
    assert by_address(base)["broker.3"].dynamic_keys == ("log.cleaner.threads",)
    changes, _ = carry_pending_restarts(base, spec, observed, pending_of(interrupted_in_broker2()))
    c3 = by_address(changes)["broker.3"]
    assert c3.restart and c3.dynamic_keys == () and c3.configure
    # the file reason stays; the "no restart" reason would now be false, so it goes
    assert c3.reasons == ("/etc/kafka/server.properties differs from the spec",
                          "restart owed by an interrupted apply (journal)")
    assert any("no restart" in r for r in by_address(changes)["broker.1"].reasons)
    assert by_address(changes)["broker.1"].dynamic_keys == ("log.cleaner.threads",)  # not owed: stays live
    assert len(changes) == 3  # no duplicate change for broker.3


def test_resumed_plan_restarts_the_owed_broker_and_alters_the_others_live(lab_spec: ClusterSpec) -> None:
    interrupted_in_broker2()
    observed = running(lab_spec).service_started(H2, "kafka", "Thu 2026-11-26 07:05:43 UTC").build()
    plan = make_plan(spec_with(log__cleaner__threads=2), observed)
    assert [s.address for s in steps_of(plan, StepKind.RESTART)] == ["broker.3"]
    assert [s.address for s in steps_of(plan, StepKind.ALTER_CONFIG)] == ["broker.1", "broker.2"]
    text = render_text(plan)
    assert "broker.3 on 10.213.0.13 will be updated in-place (rolling restart)" in text
    broker3 = text.split("# broker.3", 1)[1].split("}", 1)[0]
    assert "no restart" not in broker3


def test_pending_restart_of_a_resource_no_longer_in_the_spec_is_ignored(lab_spec: ClusterSpec) -> None:
    pending = [
        PendingRestart(step="restart:kafka@10.213.0.14", address="broker.4", service="kafka",
                       host="10.213.0.14", started_at=T_STEP2),
        PendingRestart(step="restart:kafka@10.213.0.99", address="broker.2", service="kafka",
                       host="10.213.0.99", started_at=None),  # broker 2 moved hosts since
    ]
    changes, confirmed = carry_pending_restarts([], lab_spec, running(lab_spec).build(), pending)
    assert changes == [] and confirmed == []


def test_pending_zookeeper_restart_is_carried(lab_spec: ClusterSpec) -> None:
    pending = [PendingRestart(step=f"restart:zookeeper@{H1}", address="zookeeper.1", service="zookeeper",
                              host=H1, started_at=None)]
    changes, _ = carry_pending_restarts([], lab_spec, running(lab_spec).build(), pending)
    assert [(c.address, c.service, c.key, c.restart) for c in changes] == [("zookeeper.1", "zookeeper", "1", True)]


def test_resumed_plan_end_to_end(lab_spec: ClusterSpec) -> None:
    interrupted_in_broker2()
    observed = running(lab_spec).service_started(H2, "kafka", "Thu 2026-11-26 07:05:43 UTC").build()
    plan = make_plan(lab_spec, observed)
    assert [s for s, _ in plan.confirmed_restarts] == [restart_id(2)]
    assert [s.address for s in steps_of(plan, StepKind.RESTART)] == ["broker.3"]
    assert steps_of(plan, StepKind.RESTART)[0].availability  # the owed restart has its proof too
    text = render_text(plan)
    assert "Resuming an interrupted apply; these restarts already happened and are not repeated:" in text
    assert f"- {restart_id(2)}: kafka on {H2} runs since" in text
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in text


def test_owed_restart_is_refused_like_any_other_when_unsafe(lab_spec: ClusterSpec) -> None:
    interrupted_in_broker2()
    observed = running(lab_spec, isr=(1, 2)).build()  # broker 2's restart would leave ISR 1
    with pytest.raises(PlanRefused) as exc:
        make_plan(lab_spec, observed)
    assert [i.path for i in exc.value.issues] == ["broker.2"]


def test_finished_apply_resumes_nothing(lab_spec: ClusterSpec) -> None:
    interrupted_in_broker2().record(event="apply_done")
    plan = make_plan(lab_spec, running(lab_spec).build())
    assert plan.empty and plan.confirmed_restarts == ()


# --- rack-at-a-time rolls ----------------------------------------------------------------------


def _six_broker_spec() -> ClusterSpec:
    data = yaml.safe_load(LAB_YAML.read_text())
    data["brokers"] = [{"id": i, "host": f"10.213.0.{10 + i}", "rack": f"rack-{'abc'[(i - 1) % 3]}"}
                       for i in range(1, 7)]
    return parse_spec(data)


def _rack_plan(spec: ClusterSpec, replicas: list[tuple[int, ...]], controller: int = 6) -> Plan:
    from reconciler.plan.build import build_plan

    changed = spec.model_copy(update={"kafka": spec.kafka.model_copy(
        update={"config": {**spec.kafka.config, "num.partitions": 9}})})
    obs = Observed.converged_cluster(spec, ARTS).controller(controller)
    for i, reps in enumerate(replicas):
        obs = obs.partition("t", i, reps, reps)
    observed = obs.build()
    result = diff(changed, observed, ARTS)
    return build_plan(result.changes, observed, spec_path="x", spec_digest="y", default_min_isr=2,
                      broker_racks={b.id: b.rack for b in changed.brokers})


def test_rack_roll_restarts_a_rack_together_when_every_partition_spans_three_racks() -> None:
    spec = _six_broker_spec()
    # racks: a = {1, 4}, b = {2, 5}, c = {3, 6}; every partition has one replica per rack
    plan = _rack_plan(spec, [(1, 2, 3), (4, 5, 6), (1, 5, 6), (4, 2, 3)])
    restarts = [s for s in plan.steps if s.kind is StepKind.RESTART]
    stages: dict[int, set[int]] = {}
    gens = {n: i for i, gen in enumerate(nx.topological_generations(plan.graph())) for n in gen}
    for s in restarts:
        stages.setdefault(gens[s.id], set()).add(int(s.address.split(".")[1]))
    assert sorted(map(sorted, stages.values())) == [[1, 4], [2, 5], [3, 6]]
    last = stages[max(stages)]
    assert 6 in last, "the controller's rack restarts last"
    assert all(s.restart_group and "rack of brokers" in (s.availability or "") for s in restarts)


def test_rack_roll_falls_back_to_one_at_a_time_when_a_rack_holds_two_replicas() -> None:
    spec = _six_broker_spec()
    plan = _rack_plan(spec, [(1, 4, 2)])  # brokers 1 and 4 share rack a
    restarts = [s for s in plan.steps if s.kind is StepKind.RESTART]
    gens = {n: i for i, gen in enumerate(nx.topological_generations(plan.graph())) for n in gen}
    assert len({gens[s.id] for s in restarts}) == 6
    assert not any(s.restart_group for s in restarts)
