"""Rolling config change vs its floor, and vs a cp-ansible-style parallel restart, in either mode.

All in one run on the 3-host lab, under a steady acks=all producer:

1. floor: for each node, by hand over SSH: `systemctl stop`, `systemctl start`, then wait until
   it is back (a KRaft controller: caught up with the quorum's leader; a broker: registered,
   unfenced, every partition back in sync); the floor is the sum over all nodes that roll.
2. kafkaform: `kafkaform apply` of a config change that every node takes (num.partitions: KRaft
   controllers act on it too), so the whole cluster rolls: controllers first (followers, the
   active one last), then brokers, each checked before its stop and after its start. Reported
   twice: the roll itself (first restart started -> last node back, from the journal) and the
   whole apply command (plan, config writes through Ansible, roll, leader election).
3. parallel: every node restarted at once through the same Ansible service playbook (what
   cp-ansible does by default), then waiting until all are back.

The producer used for error counting gives each message 5 s (delivery_timeout_ms) to be
acknowledged: a client that tolerates a 5 s hiccup. Goal: kafkaform roll <= 1.10 x floor (KRaft),
<= 1.15 x floor (ZooKeeper mode).

Usage (root): python3 bench/rolling.py [--spec examples/lab.yaml | examples/lab-zookeeper.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _common import REPO, temp_home

from reconciler import lab
from reconciler.lab.workload import NumberedProducer, create_topic
from reconciler.modes import mode_of
from reconciler.safety import can_restart_voter
from reconciler.spec import ClusterSpec, load_spec

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
HOSTS = {"10.213.0.11": "kf1", "10.213.0.12": "kf2", "10.213.0.13": "kf3"}


def healthy(spec: ClusterSpec, node: int | None = None) -> bool:
    st = mode_of(spec).read_cluster(spec, 2.0)
    if len(st.unfenced_brokers) != 3 or not all(set(p.isr) == set(p.replicas) for p in st.partitions):
        return False
    if spec.kraft:
        q = st.quorum
        if q is None or q.leader_id is None:
            return False
        voters = [node] if node is not None else [v.node_id for v in q.voters]
        return all(can_restart_voter(q, v).ok for v in voters if v in q.voter_ids)
    return True


def wait_healthy(spec: ClusterSpec, node: int | None = None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(spec, node):
        if time.monotonic() > deadline:
            raise SystemExit("cluster did not get back in sync")
        time.sleep(0.2)


def rolling_nodes(spec: ClusterSpec) -> list[tuple[str, str, int]]:
    """(host, unit, node id) in the order a roll takes them (controllers first)."""
    ctrl = [(c.host, "kafka-controller", c.id) for c in spec.controllers]
    return ctrl + [(b.host, "kafka", b.id) for b in spec.brokers]


def floor(spec: ClusterSpec) -> tuple[float, list[str]]:
    total = 0.0
    parts = []
    for host, unit, node in rolling_nodes(spec):
        name = HOSTS[host]
        t0 = time.monotonic()
        lab.exec_in(name, ["systemctl", "stop", f"{unit}.service"], check=True)
        t1 = time.monotonic()
        lab.exec_in(name, ["systemctl", "start", f"{unit}.service"], check=True)
        t2 = time.monotonic()
        wait_healthy(spec, node if unit == "kafka-controller" else None)
        t3 = time.monotonic()
        total += t3 - t0
        parts.append(f"{unit} {node}: stop {t1 - t0:.1f}s + start {t2 - t1:.1f}s + catch-up {t3 - t2:.1f}s")
    return total, parts


def journal_roll_seconds(journal: Path, mark: int) -> float:
    entries = [json.loads(x) for x in journal.read_text().splitlines()[mark:]]
    starts = [e["t"] for e in entries if e["event"] == "step_started" and e["step"].startswith("restart:kafka")]
    # the roll ends when the last restarted node passed its gates (back in sync), not at its restart
    ends = [e["t"] for e in entries if e["event"] == "gate_passed" and e["step"].startswith("restart:kafka")]
    return max(ends) - min(starts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", type=Path, default=REPO / "examples" / "lab.yaml")
    SPEC = ap.parse_args().spec  # noqa: N806
    spec0 = load_spec(SPEC)
    home = temp_home("kf-bench-rolling-")
    env = {**os.environ, "KAFKAFORM_HOME": home}
    cli = [sys.executable, "-m", "reconciler.cli"]

    def kf(*args: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(cli + list(args), env=env, text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"kafkaform {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    try:
        kf("lab", "up", str(SPEC))
        kf("apply", str(SPEC), "--auto-approve")
        create_topic(BOOTSTRAP, "bench-rolling", partitions=12, replication_factor=3, min_insync_replicas=2)
        wait_healthy(spec0)
        producer = NumberedProducer(BOOTSTRAP, "bench-rolling", rate_per_s=200, delivery_timeout_s=5,
                                    idempotent=False).start()
        time.sleep(3)

        a0, f0 = producer.counts()
        t_floor, parts = floor(spec0)
        a1, f1 = producer.counts()

        data = yaml.safe_load(SPEC.read_text())
        data["kafka"]["config"]["num.partitions"] = 5
        changed = Path(home) / "lab-changed.yaml"
        changed.write_text(yaml.safe_dump(data, sort_keys=False))
        journal = Path(home) / "clusters" / spec0.name / "journal.jsonl"
        mark = len(journal.read_text().splitlines()) if journal.exists() else 0
        t0 = time.monotonic()
        kf("apply", str(changed), "--auto-approve")
        t_apply = time.monotonic() - t0
        t_roll = journal_roll_seconds(journal, mark)
        a2, f2 = producer.counts()

        # cp-ansible style: every node restarted at once by the same Ansible service role
        from reconciler import pipeline
        from reconciler.apply.inventory import host_vars, inventory, svc_var
        from reconciler.apply.runner import run_playbook

        os.environ["KAFKAFORM_HOME"] = home
        spec = load_spec(changed)
        arts = pipeline.resolve_artifacts(spec)
        inv = inventory(spec, host_vars(spec, arts.kafka, arts.zookeeper, state="restarted"))
        for h in inv["all"]["hosts"].values():
            h["kf_step_services"] = [svc_var(s)[3:] for s in ("kafka-controller", "kafka")
                                     if h[svc_var(s)].get("files")]
        t0 = time.monotonic()
        res = run_playbook("service.yml", inv, list(spec.hosts()))
        assert all(r.ok for r in res.values()), res
        wait_healthy(spec)
        t_parallel = time.monotonic() - t0
        time.sleep(6)  # let the 5 s delivery timeouts of messages sent during the outage expire
        a3, f3 = producer.counts()
        producer.stop()

        goal = 1.10 if spec.kraft else 1.15
        print(f"== {SPEC.name}: {spec.kafka.metadata_mode} mode, Kafka {spec.kafka.version}, "
              f"{len(rolling_nodes(spec))} nodes roll")
        print("floor (stop + start + catch-up, per node, by hand):")
        for p in parts:
            print(f"  {p}")
        print(f"  floor total                              {t_floor:6.1f} s   acks=all failures {f1 - f0}")
        print(f"kafkaform rolling config change: roll      {t_roll:6.1f} s   ratio {t_roll / t_floor:.2f} x floor "
              f"(goal <= {goal})")
        print(f"kafkaform rolling config change: whole apply {t_apply:4.1f} s   ratio {t_apply / t_floor:.2f} x floor"
              f"   acks=all failures {f2 - f1}")
        print(f"parallel restart (cp-ansible default)      {t_parallel:6.1f} s   acks=all failures {f3 - f2}"
              f"   (acknowledged in that window: {a3 - a2})")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
