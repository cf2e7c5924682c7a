"""Replicas moved when a broker joins: kafkaform's plan vs Kafka's own `--generate`, and the lower bound.

Per scenario (default 3 -> 4 and 6 -> 7 brokers; `python3 bench/reassign_generate.py 3` for one),
one real cluster on the lab, brokers in racks a/b/c by id: the old brokers hold 4 topics x 24
partitions, RF 3, placed by Kafka itself (created while the new broker was stopped); the new broker
runs and holds nothing, which is what a new broker looks like after it joined. Each scenario is
measured twice: with the racks, and described without racks (`--disable-rack-aware`).

* kafkaform: `kafkaform plan --json` of the 4-broker spec -> the reassignment step's moves.
* Kafka: `org.apache.kafka.tools.reassign.ReassignPartitionsCommand --generate --broker-list 1,..,new`
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
import time
from collections import Counter
from pathlib import Path

import yaml
from _common import REPO, temp_home

from reconciler import lab
from reconciler.lab.workload import create_topic
from reconciler.observe import zookeeper

BOOTSTRAP = "10.213.0.11:9092,10.213.0.12:9092,10.213.0.13:9092"
ZK = ["10.213.0.11:2181"]
TOPICS = [f"bench-{i}" for i in range(4)]
RACKS = ["rack-a", "rack-b", "rack-c"]


def balance(assignment: dict[tuple[str, int], list[int]], rack_of: dict[int, str] | None
            ) -> tuple[Counter, Counter, int]:
    replicas = Counter(b for reps in assignment.values() for b in reps)
    leaders = Counter(reps[0] for reps in assignment.values())
    spread = min(len({rack_of[b] if rack_of else b for b in reps}) for reps in assignment.values())
    return replicas, leaders, spread


def moves(before: dict, after: dict) -> int:
    return sum(len(set(after[k]) - set(before[k])) for k in after)


def generate(libs: Path, work: Path, racks: bool, brokers: str) -> dict[tuple[str, int], list[int]]:
    topics = work / "topics.json"
    topics.write_text(json.dumps({"version": 1, "topics": [{"topic": t} for t in TOPICS]}))
    p = subprocess.run(["java", "-cp", f"{libs}/*", "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
                        "--bootstrap-server", BOOTSTRAP, "--topics-to-move-json-file", str(topics),
                        "--broker-list", brokers, "--generate", *([] if racks else ["--disable-rack-aware"])],
                       text=True, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"--generate failed:\n{p.stdout}\n{p.stderr}")
    proposed = p.stdout.split("Proposed partition reassignment configuration", 1)[1].strip().splitlines()[0]
    return {(x["topic"], x["partition"]): x["replicas"] for x in json.loads(proposed)["partitions"]}


def scenario(old: int, work: Path, env: dict[str, str]) -> None:
    """`old` brokers full, broker old+1 running and empty; kafkaform's plan vs --generate, racks and none."""
    new = old + 1
    data = yaml.safe_load((REPO / "examples" / "lab-zookeeper.yaml").read_text())
    data["brokers"] = [{"id": i, "host": f"10.213.0.{10 + i}", "rack": RACKS[(i - 1) % 3]} for i in range(1, new + 1)]
    data["allow_uneven_racks"] = True
    spec = work / f"brokers-{new}.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    rack_of = {b["id"]: b["rack"] for b in data["brokers"]}
    brokers = ",".join(str(i) for i in range(1, new + 1))

    def kf(*args: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], env=env, text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"kafkaform {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    try:
        kf("lab", "up", str(spec))
        kf("apply", str(spec), "--auto-approve")  # every broker up, no topics yet
        lab.exec_in(f"kf{new}", ["systemctl", "stop", "kafka.service"], check=True)
        while new in zookeeper.read_cluster(ZK).broker_ids:
            time.sleep(0.2)
        for t in TOPICS:  # Kafka's own rack-aware placement over the old brokers
            create_topic(BOOTSTRAP, t, partitions=24, replication_factor=3, min_insync_replicas=2)
        lab.exec_in(f"kf{new}", ["systemctl", "start", "kafka.service"], check=True)
        while new not in zookeeper.read_cluster(ZK).broker_ids:
            time.sleep(0.2)
        current = {(p.topic, p.partition): list(p.replicas) for p in zookeeper.read_cluster(ZK).partitions}

        from reconciler import artifacts

        libs = artifacts.resolve_maven("kafka", data["kafka"]["version"]) / "libs"  # the same build
        print(f"\n== {old} -> {new} brokers: {len(current)} partitions x RF 3 placed by Kafka on brokers 1-{old}; "
              f"broker {new} running and empty")
        for racks in (True, False):
            spec_used = spec
            if not racks:  # the same cluster described without racks: any broker may take any replica
                norack = yaml.safe_load(spec.read_text())
                for b in norack["brokers"]:
                    b.pop("rack", None)
                spec_used = work / f"brokers-{new}-norack.yaml"
                spec_used.write_text(yaml.safe_dump(norack, sort_keys=False))
            t0 = time.monotonic()
            doc = json.loads(kf("plan", str(spec_used), "--json").stdout)
            t_plan = time.monotonic() - t0
            (step,) = [s for s in doc["steps"] if s["kind"] == "reassign"]
            ours = dict(current)
            ours.update({(m["topic"], m["partition"]): m["after"] for m in step["moves"]})
            change = next(c for c in doc["changes"] if c["address"] == "partitions")
            bound_text = next(a["after"] for a in change["attrs"] if a["name"] == "replica moves")
            bound = int(bound_text.split("lower bound ", 1)[1].split(")", 1)[0])
            t0 = time.monotonic()
            theirs = dict(current)
            theirs.update(generate(libs, work, racks, brokers))
            t_gen = time.monotonic() - t0
            m_ours, m_theirs = moves(current, ours), moves(current, theirs)
            racks_text = "/".join(rack_of[i][-1] for i in range(1, new + 1))
            print(f"{f'racks {racks_text}' if racks else 'no racks (--disable-rack-aware)'}:")
            for name, a, m, secs in (("kafkaform plan", ours, m_ours, t_plan), ("--generate", theirs, m_theirs, t_gen)):
                r, ldr, spread = balance(a, rack_of if racks else None)
                print(f"  {name:15} replica moves {m:4d}   replicas/broker {dict(sorted(r.items()))}   "
                      f"leaders/broker {dict(sorted(ldr.items()))}   min {'racks' if racks else 'brokers'}"
                      f"/partition {spread}   ({secs:.1f} s)")
            print(f"  lower bound     replica moves {bound:4d}")
            ratio = m_theirs / m_ours if m_ours else float("inf")
            print(f"  --generate moves {ratio:.2f}x as many replicas as kafkaform (goal >= 3x); "
                  f"kafkaform {'equals' if m_ours == bound else 'exceeds'} the lower bound")
    finally:
        lab.down()


def main() -> None:
    olds = [int(x) for x in sys.argv[1:]] or [3, 6]
    home = temp_home("kf-bench-reassign-")
    env = {**os.environ, "KAFKAFORM_HOME": home}
    for old in olds:
        scenario(old, Path(home), env)


if __name__ == "__main__":
    main()
