"""Rolling config change on 3 brokers vs its floor, and vs a cp-ansible-style parallel restart.

All in one run on the 3-host lab, under a steady acks=all producer:

1. floor: for each broker, by hand over SSH: `systemctl stop kafka`, `systemctl start kafka`,
   then wait until it is registered and every partition is back in sync; the floor is the sum.
2. kafkaform: `kafkaform apply` of a static config change (one broker at a time, min-ISR checked
   before each stop, back in sync after each start, controller last, preferred leaders restored).
   Reported twice: the roll itself (first restart started -> last broker back in sync, from the journal)
   and the whole apply command (plan, config writes through Ansible, roll, leader election).
3. parallel: every broker restarted at once through the same Ansible service playbook (what
   cp-ansible does by default), then waiting until all are back in sync.

The producer used for error counting gives each message 5 s (delivery_timeout_ms) to be
acknowledged: a client that tolerates a 5 s hiccup. Goal: kafkaform roll <= 1.15 x floor.

Usage (root): python3 bench/rolling.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import REPO

from reconciler import lab
from reconciler.observe import zookeeper
from reconciler.workload import NumberedProducer, create_topic

SPEC = REPO / "examples" / "lab-zookeeper.yaml"
BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
ZK = ["10.213.0.11:2181", "10.213.0.12:2181", "10.213.0.13:2181"]
HOSTS = {1: "kf1", 2: "kf2", 3: "kf3"}


def in_sync() -> bool:
    st = zookeeper.read_cluster(ZK, timeout=2)
    return len(st.broker_ids) == 3 and all(set(p.isr) == set(p.replicas) for p in st.partitions)


def wait_in_sync(timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not in_sync():
        if time.monotonic() > deadline:
            raise SystemExit("cluster did not get back in sync")
        time.sleep(0.2)


def floor() -> tuple[float, list[str]]:
    total = 0.0
    parts = []
    for bid, name in HOSTS.items():
        t0 = time.monotonic()
        lab.exec_in(name, ["systemctl", "stop", "kafka.service"], check=True)
        t1 = time.monotonic()
        lab.exec_in(name, ["systemctl", "start", "kafka.service"], check=True)
        t2 = time.monotonic()
        wait_in_sync()
        t3 = time.monotonic()
        total += t3 - t0
        parts.append(f"broker {bid}: stop {t1 - t0:.1f}s + start {t2 - t1:.1f}s + catch-up {t3 - t2:.1f}s")
    return total, parts


def journal_roll_seconds(journal: Path, mark: int) -> float:
    entries = [json.loads(x) for x in journal.read_text().splitlines()[mark:]]
    starts = [e["t"] for e in entries if e["event"] == "step_started" and e["step"].startswith("restart:kafka")]
    # the roll ends when the last restarted broker passed its gates (back in sync), not at its restart
    ends = [e["t"] for e in entries if e["event"] == "gate_passed" and e["step"].startswith("restart:kafka")]
    return max(ends) - min(starts)


def main() -> None:
    home = tempfile.mkdtemp(prefix="kf-bench-rolling-")
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
        wait_in_sync()
        producer = NumberedProducer(BOOTSTRAP, "bench-rolling", rate_per_s=200, delivery_timeout_s=5,
                                    idempotent=False).start()
        time.sleep(3)

        a0, f0 = producer.counts()
        t_floor, parts = floor()
        a1, f1 = producer.counts()

        data = yaml.safe_load(SPEC.read_text())
        data["kafka"]["config"]["num.partitions"] = 5
        changed = Path(home) / "lab-changed.yaml"
        changed.write_text(yaml.safe_dump(data, sort_keys=False))
        journal = Path(home) / "clusters" / "lab" / "journal.jsonl"
        mark = len(journal.read_text().splitlines()) if journal.exists() else 0
        t0 = time.monotonic()
        kf("apply", str(changed), "--auto-approve")
        t_apply = time.monotonic() - t0
        t_roll = journal_roll_seconds(journal, mark)
        a2, f2 = producer.counts()

        # cp-ansible style: all brokers restarted at once by the same Ansible service role
        from reconciler import pipeline
        from reconciler.apply.inventory import host_vars, inventory
        from reconciler.apply.runner import run_playbook
        from reconciler.spec import load_spec

        os.environ["KAFKAFORM_HOME"] = home
        spec = load_spec(changed)
        arts = pipeline.resolve_artifacts(spec)
        inv = inventory(spec, host_vars(spec, arts.kafka, arts.zookeeper, state="restarted"))
        for h in inv["all"]["hosts"].values():
            h["kf_step_services"] = ["kafka"]
        t0 = time.monotonic()
        res = run_playbook("service.yml", inv, list(spec.hosts()))
        assert all(r.ok for r in res.values()), res
        wait_in_sync()
        t_parallel = time.monotonic() - t0
        time.sleep(6)  # let the 5 s delivery timeouts of messages sent during the outage expire
        a3, f3 = producer.counts()
        producer.stop()

        print("floor (stop + start + catch-up, per broker, by hand):")
        for p in parts:
            print(f"  {p}")
        print(f"  floor total                              {t_floor:6.1f} s   acks=all failures {f1 - f0}")
        print(f"kafkaform rolling config change: roll      {t_roll:6.1f} s   ratio {t_roll / t_floor:.2f} x floor "
              f"(goal <= 1.15)")
        print(f"kafkaform rolling config change: whole apply {t_apply:4.1f} s   ratio {t_apply / t_floor:.2f} x floor"
              f"   acks=all failures {f2 - f1}")
        print(f"parallel restart (cp-ansible default)      {t_parallel:6.1f} s   acks=all failures {f3 - f2}"
              f"   (acknowledged in that window: {a3 - a2})")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
