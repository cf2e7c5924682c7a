"""Replicas moved for 3 -> 4 brokers: kafkaform's plan vs Kafka's own `--generate`, and the lower bound.

One real cluster on the lab (4 hosts, racks a/b/c/a): brokers 1-3 hold 4 topics x 24 partitions,
RF 3, placed by Kafka itself (created while broker 4 was stopped); broker 4 runs and holds
nothing, which is what a new broker looks like after it joined.

* kafkaform: `kafkaform plan --json` of the 4-broker spec -> the reassignment step's moves.
* Kafka: `org.apache.kafka.tools.reassign.ReassignPartitionsCommand --generate --broker-list 1,2,3,4`
  (the class behind kafka-reassign-partitions.sh) from the same Kafka build, on the same cluster.

Moves are replicas copied (a broker in the new replica list that was not in the old one). Balance
is replicas and preferred leaders per broker. Goal: kafkaform >= 3x fewer moves than --generate at
equal or better balance, and equal to the lower bound.

Usage (root): python3 bench/reassign_generate.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from _common import REPO

from reconciler import lab
from reconciler.observe import zookeeper
from reconciler.workload import create_topic

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
ZK = ["10.213.0.11:2181"]
TOPICS = [f"bench-{i}" for i in range(4)]
RACK = {1: "rack-a", 2: "rack-b", 3: "rack-c", 4: "rack-a"}


def balance(assignment: dict[tuple[str, int], list[int]]) -> tuple[Counter, Counter, int]:
    replicas = Counter(b for reps in assignment.values() for b in reps)
    leaders = Counter(reps[0] for reps in assignment.values())
    spread = min(len({RACK[b] for b in reps}) for reps in assignment.values())
    return replicas, leaders, spread


def moves(before: dict, after: dict) -> int:
    return sum(len(set(after[k]) - set(before[k])) for k in after)


def generate(libs: Path, work: Path) -> dict[tuple[str, int], list[int]]:
    topics = work / "topics.json"
    topics.write_text(json.dumps({"version": 1, "topics": [{"topic": t} for t in TOPICS]}))
    p = subprocess.run(["java", "-cp", f"{libs}/*", "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
                        "--bootstrap-server", BOOTSTRAP, "--topics-to-move-json-file", str(topics),
                        "--broker-list", "1,2,3,4", "--generate"], text=True, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"--generate failed:\n{p.stdout}\n{p.stderr}")
    proposed = p.stdout.split("Proposed partition reassignment configuration", 1)[1].strip().splitlines()[0]
    return {(x["topic"], x["partition"]): x["replicas"] for x in json.loads(proposed)["partitions"]}


def main() -> None:
    home = tempfile.mkdtemp(prefix="kf-bench-reassign-")
    env = {**os.environ, "KAFKAFORM_HOME": home}
    work = Path(home)
    data = yaml.safe_load((REPO / "examples" / "lab.yaml").read_text())
    data["brokers"].append({"id": 4, "host": "10.213.0.14", "rack": "rack-a"})
    data["allow_uneven_racks"] = True
    spec = work / "four.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))

    def kf(*args: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], env=env, text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"kafkaform {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    try:
        kf("lab", "up", str(spec))
        kf("apply", str(spec), "--auto-approve")  # 4 brokers, no topics yet
        lab.exec_in("kf4", ["systemctl", "stop", "kafka.service"], check=True)
        while 4 in zookeeper.read_cluster(ZK).broker_ids:
            time.sleep(0.2)
        for t in TOPICS:  # Kafka's own rack-aware placement over brokers 1-3
            create_topic(BOOTSTRAP, t, partitions=24, replication_factor=3, min_insync_replicas=2)
        lab.exec_in("kf4", ["systemctl", "start", "kafka.service"], check=True)
        while 4 not in zookeeper.read_cluster(ZK).broker_ids:
            time.sleep(0.2)
        current = {(p.topic, p.partition): list(p.replicas) for p in zookeeper.read_cluster(ZK).partitions}

        t0 = time.monotonic()
        doc = json.loads(kf("plan", str(spec), "--json").stdout)
        t_plan = time.monotonic() - t0
        (step,) = [s for s in doc["steps"] if s["kind"] == "reassign"]
        ours = dict(current)
        ours.update({(m["topic"], m["partition"]): m["after"] for m in step["moves"]})
        change = next(c for c in doc["changes"] if c["address"] == "partitions")
        bound_text = next(a["after"] for a in change["attrs"] if a["name"] == "replica moves")
        bound = int(bound_text.split("lower bound ", 1)[1].split(")", 1)[0])

        from reconciler import artifacts

        libs = artifacts.resolve_maven("kafka", data["kafka"]["version"]) / "libs"  # the same build
        t0 = time.monotonic()
        theirs = dict(current)
        theirs.update(generate(libs, work))
        t_gen = time.monotonic() - t0

        m_ours, m_theirs = moves(current, ours), moves(current, theirs)
        print(f"cluster: {len(current)} partitions x RF 3, brokers 1-3 full, broker 4 (rack-a) empty")
        for name, a, m, t in (("kafkaform plan", ours, m_ours, t_plan), ("--generate", theirs, m_theirs, t_gen)):
            r, ldr, spread = balance(a)
            print(f"{name:15} replica moves {m:4d}   replicas/broker {dict(sorted(r.items()))}   "
                  f"leaders/broker {dict(sorted(ldr.items()))}   min racks/partition {spread}   ({t:.1f} s)")
        print(f"lower bound     replica moves {bound:4d}")
        ratio = m_theirs / m_ours if m_ours else float("inf")
        print(f"--generate moves {ratio:.1f}x as many replicas as kafkaform (goal >= 3x); "
              f"kafkaform {'equals' if m_ours == bound else 'exceeds'} the lower bound")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
