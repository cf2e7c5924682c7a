"""No-op plan on the converged 3-host lab vs an idempotent rerun of playbooks/site.yml.

Baseline (same run, same hosts): `ansible-playbook playbooks/site.yml` with the inventory and
host vars kafkaform generates, on a cluster that is already converged (so Ansible changes
nothing). Goal: kafkaform's no-op `plan` takes <= 1/20 of that time. By default both labs in
turn: the KRaft lab (3 controllers + 3 brokers, Kafka 4.4.0) and the ZooKeeper-mode lab (3.9.1).

The two tools take turns (plan, Ansible, plan, ...) after the new cluster had `--settle-s` to
finish its start-up (the JVMs' JIT compilers take a core for a minute or more after create): run
back to back, the one measured first would pay for that alone.

Usage (root): python3 bench/noop_plan.py [--runs N] [--settle-s 60] [--keep] [--spec PATH ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _common import REPO, fmt, run, temp_home, timed, write_inventory

from reconciler import lab, pipeline
from reconciler.apply.inventory import host_vars, inventory
from reconciler.apply.runner import PLAYBOOKS, ansible_env
from reconciler.spec import load_spec

SPECS = [REPO / "examples" / "lab.yaml", REPO / "examples" / "lab-zookeeper.yaml"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle-s", type=float, default=60, help="idle time after create before measuring")
    ap.add_argument("--keep", action="store_true", help="leave the (last) lab up afterwards")
    ap.add_argument("--spec", type=Path, action="append", help="lab spec(s) to measure (default: both labs)")
    args = ap.parse_args()
    specs = args.spec or SPECS
    for i, path in enumerate(specs):
        measure(path, args.runs, args.settle_s, keep=args.keep and i == len(specs) - 1)


def measure(SPEC: Path, runs: int, settle_s: float, keep: bool) -> None:  # noqa: N803 - the spec this run measures
    home = temp_home("kf-bench-home-")
    env = {"KAFKAFORM_HOME": home}
    cli = [sys.executable, "-m", "reconciler.cli"]
    spec = load_spec(SPEC)
    try:
        run(cli + ["lab", "up", str(SPEC)], env)
        print("converging the lab cluster (apply) ...", flush=True)
        run(cli + ["apply", str(SPEC), "--auto-approve"], env)
        p = run(cli + ["plan", str(SPEC), "--detailed-exitcode"], env)
        assert p.returncode == 0, "cluster not converged:\n" + p.stdout

        os.environ["KAFKAFORM_HOME"] = home
        arts = pipeline.resolve_artifacts(spec)
        observed = pipeline.observe(spec)
        inv = inventory(spec, host_vars(spec, arts.kafka, arts.zookeeper, observed.hosts))
        inv_file = write_inventory(inv, Path(home) / "inventory.json")
        aenv = {**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "default"}
        pb = ["ansible-playbook", "-i", str(inv_file), str(PLAYBOOKS / "site.yml")]

        def ansible() -> None:
            out = run(pb, aenv).stdout
            recap = [line for line in out.splitlines() if "changed=" in line]
            assert recap and all("changed=0" in x and "failed=0" in x for x in recap), "\n".join(recap)

        # Ansible's first rerun after kafkaform's apply may still change something (it is reported
        # here); the measured runs are the idempotent ones after it.
        first = run(pb, aenv).stdout
        changed: set[str] = set()
        task = ""
        for line in first.splitlines():
            task = line.rstrip("* ") if line.startswith("TASK [") else task
            if line.startswith("changed:"):
                changed.add(f"{task} {line.split()[1]}")
        if changed:
            print("Ansible's first rerun after kafkaform's apply changed: " + "; ".join(sorted(changed)), flush=True)
        print(f"letting the new cluster settle for {settle_s:.0f} s ...", flush=True)
        time.sleep(settle_s)
        s_plan: list[float] = []
        s_ans: list[float] = []
        for _ in range(runs):  # in turns, so both see the same hosts
            s_plan.append(timed(lambda: run(cli + ["plan", str(SPEC), "--detailed-exitcode"], env), 1)[0])
            s_ans.append(timed(ansible, 1)[0])
        t_plan, t_ans = statistics.median(s_plan), statistics.median(s_ans)

        print(f"== {SPEC.name}: {spec.kafka.metadata_mode} mode, Kafka {spec.kafka.version}")
        print(f"kafkaform plan (no-op, 3 hosts):       median {t_plan:6.2f} s  samples {fmt(s_plan)}")
        print(f"ansible-playbook site.yml (idempotent): median {t_ans:6.2f} s  samples {fmt(s_ans)}")
        print(f"ratio plan/ansible = {t_plan / t_ans:.3f}  = 1/{t_ans / t_plan:.1f} (goal <= 1/20)")
    finally:
        if not keep:
            lab.down()


if __name__ == "__main__":
    main()
