"""Observe a whole cluster: facts from every host in parallel, plus the ZooKeeper/Kafka view.

One SSH connection and one script per host (see `script`), all hosts at once, so observe time is
about the slowest host, not the sum. A host that cannot be reached or understood becomes
`HostFacts(reachable=False, error=...)`; `collect` itself never raises for a bad host.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .facts import artifacts, cpus, dir_devices, dir_usage, files, java, memory, os_release, services, volumes
from .model import ClusterState, HostFacts, ObservedCluster
from .script import build_script, new_nonce, section, split_output
from .ssh import HostUnreachable, SshSettings, TransportFactory, default_factory

if TYPE_CHECKING:
    from reconciler.security.zookeeper import ZkTls

Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class HostTarget:
    """What to read on one host: which managed files, which units, which data dirs."""

    host: str
    files: tuple[str, ...] = ()
    services: tuple[str, ...] = ("zookeeper", "kafka-controller", "kafka")
    dirs: tuple[str, ...] = ()
    artifact_roots: tuple[str, ...] = artifacts.ROOTS  # install dirs holding <artifact id>/ARTIFACT
    volumes: tuple[tuple[str, str, str], ...] = ()  # security.volumes here: (name, device, mount)


def host_script(target: HostTarget, nonce: str) -> str:
    return build_script(
        {
            os_release.NAME: os_release.command(),
            java.NAME: java.command(),
            memory.NAME: memory.command(),
            cpus.NAME: cpus.command(),
            artifacts.NAME: artifacts.command(target.artifact_roots),
            files.NAME: files.command(target.files),
            services.NAME: services.command(target.services),
            dir_usage.NAME: dir_usage.command(target.dirs),
            dir_devices.NAME: dir_devices.command(target.dirs),
            volumes.NAME: volumes.command(target.volumes),
        },
        nonce,
    )


def parse_host(host: str, stdout: str, nonce: str) -> HostFacts:
    """Run every parser on its section. Any fact that cannot be read makes the host untrusted."""
    secs = split_output(stdout, nonce)
    parsed: dict[str, Any] = {}  # fact NAME -> what its parser returns, one type per HostFacts field
    name = ""
    try:
        for fact in _FACTS:
            name = fact.NAME
            parsed[name] = fact.parse(section(secs, name))
    except Exception as e:  # a parser bug must not take down the whole observe either
        return HostFacts(host=host, reachable=False, error=f"{host}: fact {name}: {e}")
    return HostFacts(host=host, **{field: parsed[fact.NAME] for field, fact in _FIELDS.items()})


# HostFacts field <- fact module; the order is the order the script runs them in.
_FIELDS = {
    "os": os_release, "java_version": java, "mem_total_bytes": memory, "cpus": cpus, "artifacts": artifacts,
    "files": files, "services": services, "dir_usage_bytes": dir_usage,
    "dir_devices": dir_devices, "volumes": volumes,
}
_FACTS = tuple(_FIELDS.values())


def observe_host(
    target: HostTarget, ssh: SshSettings, factory: TransportFactory, command_timeout: float
) -> HostFacts:
    """Connect, run the one fact script, parse. Never raises."""
    host = target.host
    nonce = new_nonce()
    try:
        transport = factory(host, ssh)
    except HostUnreachable as e:
        return HostFacts(host=host, reachable=False, error=f"{host}: {e.reason}")
    except Exception as e:
        return HostFacts(host=host, reachable=False, error=f"{host}: {type(e).__name__}: {e}")
    try:
        # A login other than root reads the root-owned config files through passwordless sudo.
        prefix = "" if ssh.user == "root" else "sudo -n "
        res = transport.run(prefix + "sh -c " + shlex.quote(host_script(target, nonce)), command_timeout)
    except HostUnreachable as e:
        return HostFacts(host=host, reachable=False, error=f"{host}: {e.reason}")
    except Exception as e:
        return HostFacts(host=host, reachable=False, error=f"{host}: {type(e).__name__}: {e}")
    finally:
        transport.close()
    facts = parse_host(host, res.stdout, nonce)
    if not facts.reachable and res.stderr.strip():
        facts = facts.model_copy(update={"error": f"{facts.error} (stderr: {res.stderr.strip()[:300]})"})
    return facts


def observe_cluster(zk_hosts: list[str], timeout: float, auth: list[tuple[str, str]] | None = None,
                    tls: ZkTls | None = None) -> ClusterState:
    """ZooKeeper holds registrations, controller, assignments and ISR (ZooKeeper mode). A ZooKeeper
    read either completes or reports ZooKeeper unreachable, so an empty partition list from it is
    the truth (a cluster without topics); the Admin API is asked only when ZooKeeper could not be
    read. Never raises."""
    from . import kafka_admin, zookeeper  # (kazoo and kafka-python: ZooKeeper mode only, not on KRaft's path)

    try:
        state = zookeeper.read_cluster(zk_hosts, timeout, auth, tls)
        if state.zookeeper_reachable:
            return state
        return kafka_admin.observe_kafka(state, timeout)
    except Exception as e:  # pragma: no cover - both stages already swallow their errors
        return ClusterState(zookeeper_error=f"{type(e).__name__}: {e}")


def collect(
    cluster_name: str,
    targets: list[HostTarget],
    ssh: SshSettings,
    zk_hosts: list[str],
    *,
    transport_factory: TransportFactory | None = None,
    read_cluster_state: bool = True,
    cluster_reader: Callable[[float], ClusterState] | None = None,
    progress: Progress | None = None,
    command_timeout: float = 60.0,
    cluster_timeout: float = 3.0,
    max_workers: int = 32,
) -> ObservedCluster:
    """Observe every target host and (optionally) the cluster; unreachable hosts are data, not errors.

    The ZooKeeper/Kafka read runs concurrently with the SSH fan-out, so a cluster that is down costs
    `max(ssh, cluster_timeout)` rather than the sum.
    """
    seen: set[str] = set()
    for t in targets:
        if t.host in seen:
            raise ValueError(f"host {t.host!r} listed twice")
        seen.add(t.host)
    factory = transport_factory or default_factory()
    observed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    start = time.monotonic()
    hosts: dict[str, HostFacts] = {}
    workers = max(1, min(max_workers, len(targets) + 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="observe") as ex:
        if not read_cluster_state:
            cluster_f = None
        elif cluster_reader is not None:  # KRaft: the Admin API
            cluster_f = ex.submit(cluster_reader, cluster_timeout)
        else:
            cluster_f = ex.submit(observe_cluster, zk_hosts, cluster_timeout) if zk_hosts else None
        futures = [ex.submit(observe_host, t, ssh, factory, command_timeout) for t in targets]
        for fut in as_completed(futures):
            facts = fut.result()
            hosts[facts.host] = facts
            if progress is not None:
                reason = (facts.error or "").removeprefix(f"{facts.host}: ")
                progress(facts.host, "ok" if facts.reachable else f"unreachable: {reason}")
        cluster = cluster_f.result() if cluster_f is not None else ClusterState()
    return ObservedCluster(
        cluster_name=cluster_name,
        hosts={t.host: hosts[t.host] for t in targets},
        cluster=cluster,
        observed_at=observed_at,
        duration_s=round(time.monotonic() - start, 3),
    )
