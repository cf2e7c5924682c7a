"""What to observe for a spec: its hosts (plus those of the last applied revision), the managed
file paths, data dirs and ZooKeeper ensemble. Kept apart from the pipeline so the CLI can start
observing before it has loaded the planning modules (start-up time overlaps SSH round trips)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

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
    data = {d for b in spec.brokers for d in b.data_dirs} | {c.metadata_dir for c in spec.controllers}
    roots: tuple[str, ...] = (spec.kafka.install_dir,)
    zk: list[str] = []
    if spec.zookeeper is not None:
        data.add(spec.zookeeper.data_dir)
        roots += (spec.zookeeper.install_dir,)
        zk = [f"{n.host}:{spec.zookeeper.client_port}" for n in spec.zookeeper.nodes]
    vols = spec.security.volumes if spec.security else ()
    targets = [HostTarget(host=h, files=paths, dirs=tuple(sorted(data)), artifact_roots=roots,
                          volumes=tuple((v.name, v.device, v.mount) for v in vols if v.host == h)) for h in hosts]
    reader = None
    if spec.kraft or spec.security is not None:  # (ZooKeeper mode, secured: the reads log in)
        from reconciler.modes import mode_of

        reader = partial(mode_of(spec).read_cluster, spec)
    return collect(spec.name, targets, ssh_settings(spec), zk, progress=progress, cluster_reader=reader)
