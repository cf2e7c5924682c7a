"""What to observe for a spec: its hosts (plus those of the last applied revision), the managed
file paths, data dirs and ZooKeeper ensemble. Kept apart from the pipeline so the CLI can start
observing before it has loaded the planning modules (start-up time overlaps SSH round trips)."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.apply.state import known_hosts_of
from reconciler.files import managed_paths
from reconciler.observe.collect import HostTarget, collect
from reconciler.observe.model import ObservedCluster
from reconciler.observe.ssh import SshSettings
from reconciler.spec import ClusterSpec


def ssh_settings(spec: ClusterSpec) -> SshSettings:
    s = spec.ssh
    return SshSettings(user=s.user, port=s.port, key_file=s.key_file, known_hosts=s.known_hosts,
                       known_hosts_file=s.known_hosts_file, connect_timeout=s.connect_timeout)


def observe(spec: ClusterSpec, progress: Callable[[str, str], None] | None = None,
            extra_hosts: list[str] | None = None) -> ObservedCluster:
    """Facts from every host the spec names (plus hosts of the last applied revision)."""
    hosts = spec.hosts() + [h for h in known_hosts_of(spec.name) + (extra_hosts or []) if h not in spec.hosts()]
    paths = managed_paths(spec)
    dirs = tuple(sorted({d for b in spec.brokers for d in b.data_dirs} | {spec.zookeeper.data_dir}))
    roots = (spec.kafka.install_dir, spec.zookeeper.install_dir)
    targets = [HostTarget(host=h, files=paths, dirs=dirs, artifact_roots=roots) for h in hosts]
    zk = [f"{n.host}:{spec.zookeeper.client_port}" for n in spec.zookeeper.nodes]
    return collect(spec.name, targets, ssh_settings(spec), zk, progress=progress)
