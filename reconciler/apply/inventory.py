"""Ansible inventory and host vars for a cluster: the values playbooks write, computed in Python."""

from __future__ import annotations

import base64
import shlex
from pathlib import Path
from typing import Any

from reconciler import fields
from reconciler import files as F
from reconciler.artifacts import PackedArtifact as ArtifactRef
from reconciler.observe.model import HostFacts
from reconciler.spec import ClusterSpec

JAVA_PACKAGE = "openjdk-17-jre-headless"


def file_var(path: str, content: str, owner: str, mode: str) -> dict[str, str]:
    """A file for the kf_files module: its content base64-encoded, so Ansible sees no template."""
    return {"path": path, "content_b64": base64.b64encode(content.encode("utf-8")).decode("ascii"),
            "owner": owner, "mode": mode}


def svc_var(service: str) -> str:
    """The host variable holding a service's values (kafka-controller -> kf_kafka_controller)."""
    return "kf_" + service.replace("-", "_")


def _svc_vars(desired: F.ServiceDesired, art: ArtifactRef, install_dir: str, state: str) -> dict[str, Any]:
    return {
        "name": desired.service,
        "user": desired.account,
        "install_dir": install_dir,
        "artifact": {
            "id": art.artifact_id,
            "src": str(art.tarball),
            "sha256": art.tarball_sha256,
            "dest": f"{install_dir}/{art.artifact_id}",
            "marker": {"name": art.name, "version": art.version, "sha256": art.sha256},
        },
        "dirs": [{"path": d.path, "owner": d.owner, "mode": d.mode} for d in desired.dirs],
        "files": [file_var(f.path, f.content, f.owner, f.mode) for f in desired.files],
        "state": state,
        "port": desired.port,
        "listen_host": desired.host,
        "deletions": [],  # set per remove step from the plan (executor), never computed here
    }


def host_vars(spec: ClusterSpec, kafka: ArtifactRef, zookeeper: ArtifactRef | None,
              facts: dict[str, HostFacts] | None = None, state: str = "started",
              zk_members: dict[int, str] | None = None) -> dict[str, dict[str, Any]]:
    """Per-host vars for every host the spec or the observation names. `zk_members`: the running
    ensemble's membership, the seed a new ZooKeeper server joins with."""
    from reconciler.diff import ArtifactIds
    from reconciler.modes import mode_of

    facts = facts or {}
    out: dict[str, dict[str, Any]] = {}
    for host in list(spec.hosts()) + [h for h in facts if h not in spec.hosts()]:
        out[host] = {"kf_java_package": JAVA_PACKAGE}
        for svc in F.SERVICES:
            out[host][svc_var(svc)] = {"name": svc, "deletions": []}
    ids = ArtifactIds(kafka=kafka.artifact_id, zookeeper=zookeeper.artifact_id if zookeeper else None)
    for d in mode_of(spec).services(spec, ids):
        if d.service == "zookeeper":
            assert zookeeper is not None and spec.zookeeper is not None
            out[d.host][svc_var(d.service)] = _svc_vars(d, zookeeper, spec.zookeeper.install_dir, state)
            # written only where absent: once ZooKeeper has started, it keeps its membership itself
            node = next(n for n in spec.zookeeper.nodes if str(n.myid) == d.key)
            out[d.host]["kf_zookeeper"]["seed_files"] = [
                file_var(F.ZK_SEED, F.zk_seed(spec, node, zk_members), "root", "0644")]
        else:
            out[d.host][svc_var(d.service)] = _svc_vars(d, kafka, spec.kafka.install_dir, state)
    return out


def ssh_common_args(spec: ClusterSpec) -> str:
    """ssh options from an allow-list; the only spec values in them are paths (checked for their
    field, then quoted), so no spec value can add an option such as ProxyCommand."""
    ssh = spec.ssh
    args = [f"-o ConnectTimeout={int(ssh.connect_timeout)}"]
    if ssh.known_hosts == "strict":
        args.append("-o StrictHostKeyChecking=yes")
    elif ssh.known_hosts == "accept-new":
        args.append("-o StrictHostKeyChecking=accept-new")
    else:
        args += ["-o StrictHostKeyChecking=no", "-o UserKnownHostsFile=/dev/null"]
    if ssh.known_hosts_file and ssh.known_hosts != "ignore":
        path = str(Path(fields.check_local_option_path(ssh.known_hosts_file)).expanduser())
        args.append("-o " + shlex.quote(f"UserKnownHostsFile={path}"))
    return " ".join(args)


def inventory(spec: ClusterSpec, hv: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Inventory dict for ansible-runner / a YAML file for ansible-playbook."""
    ssh = spec.ssh
    common: dict[str, Any] = {"ansible_user": ssh.user, "ansible_port": ssh.port,
                              "ansible_python_interpreter": "/usr/bin/python3",
                              "ansible_become": ssh.user != "root"}  # other logins act through sudo
    if ssh.key_file:
        common["ansible_ssh_private_key_file"] = str(Path(fields.check_local_option_path(ssh.key_file)).expanduser())
    common["ansible_ssh_common_args"] = ssh_common_args(spec)
    hosts = {h: {"ansible_host": h, **v} for h, v in hv.items()}
    return {
        "all": {
            "vars": common,
            "hosts": hosts,
            "children": {
                "zookeeper": {"hosts": {n.host: {} for n in spec.zk_nodes()}},
                "kafka_controller": {"hosts": {c.host: {} for c in spec.controllers}},
                "kafka": {"hosts": {b.host: {} for b in spec.brokers}},
            },
        }
    }
