"""Observe N bare lab hosts (sshd only) vs `ansible all -m setup` with default forks.

kafkaform's observe: one SSH connection and one script per host, all hosts in parallel
(reconciler.observe.collect, the same facts `plan` reads). Baseline in the same run:
`ansible all -m setup` over the same hosts with Ansible's default forks (5).
Goal: observe takes <= 1/10 of the Ansible time for 30 hosts.

Usage (root): python3 bench/observe_hosts.py [--hosts 30] [--runs N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import REPO, fmt, run, temp_home, timed, write_inventory

from reconciler import lab
from reconciler.apply.runner import ansible_env
from reconciler.files import managed_paths
from reconciler.observe.collect import HostTarget, collect
from reconciler.observe.ssh import SshSettings
from reconciler.spec import load_spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    spec = load_spec(REPO / "examples" / "lab-zookeeper.yaml")
    try:
        lab.down()
        state = lab.up(args.hosts)
        hosts = [h.address for h in state.hosts]
        ssh = SshSettings(user="root", key_file=state.key_path, known_hosts="strict",
                          known_hosts_file=state.known_hosts_path)
        targets = [HostTarget(host=h, files=managed_paths(spec), dirs=("/var/lib/kafka/data",)) for h in hosts]

        def observe() -> int:
            obs = collect("bench", targets, ssh, [], read_cluster_state=False)
            bad = obs.unreachable()
            assert not bad, bad
            return len(obs.hosts)

        t_obs, s_obs, n = timed(observe, args.runs)
        inv = {"all": {"hosts": {h: {"ansible_host": h} for h in hosts},
                       "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": state.key_path,
                                "ansible_python_interpreter": "/usr/bin/python3",
                                "ansible_ssh_common_args": f"-o UserKnownHostsFile={state.known_hosts_path} "
                                                           "-o StrictHostKeyChecking=yes"}}}
        inv_file = write_inventory(inv, Path(temp_home("kf-bench-observe-")) / "inventory.json")
        env = {k: v for k, v in ansible_env().items() if k != "ANSIBLE_SSH_ARGS"}

        def setup() -> None:
            p = run(["ansible", "all", "-i", str(inv_file), "-m", "setup"], env)
            assert p.stdout.count("SUCCESS") == len(hosts), p.stdout[-2000:]

        t_ans, s_ans, _ = timed(setup, args.runs)
        print(f"kafkaform observe ({n} bare hosts):         median {t_obs:6.2f} s  samples {fmt(s_obs)}")
        print(f"ansible all -m setup (default forks=5): median {t_ans:6.2f} s  samples {fmt(s_ans)}")
        print(f"ratio observe/ansible = {t_obs / t_ans:.3f}  = 1/{t_ans / t_obs:.1f} (goal <= 1/10)")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
