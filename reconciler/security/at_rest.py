"""Encryption at rest: `security.encryption_at_rest: required` holds only where every data dir
sits on a dm-crypt device. Pure: judged from the facts observe read (see facts.dir_devices).

kafkaform checks and refuses; it does not create LUKS volumes (formatting a device destroys what
is on it, and the key belongs to the operator's key service): the README says how to set one up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.observe.model import DirDevice, ObservedCluster
    from reconciler.spec import ClusterSpec, SpecIssue


def data_dirs(spec: ClusterSpec) -> list[tuple[str, str, str]]:
    """(host, what, dir) for every directory that holds a service's data."""
    out = [(b.host, f"broker {b.id}", d) for b in spec.brokers for d in b.data_dirs]
    out += [(c.host, f"controller {c.id}", c.metadata_dir) for c in spec.controllers]
    if spec.zookeeper is not None:
        out += [(n.host, f"zookeeper {n.myid}", spec.zookeeper.data_dir) for n in spec.zookeeper.nodes]
    return out


def data_dir_devices(spec: ClusterSpec, observed: ObservedCluster) -> list[tuple[str, str, str, DirDevice | None]]:
    """(host, what, dir, what it is stored on) for every data dir; None where observe has no facts."""
    out = []
    for host, what, d in data_dirs(spec):
        facts = observed.hosts.get(host)
        out.append((host, what, d, facts.dir_devices.get(d) if facts is not None else None))
    return out


def at_rest_issues(spec: ClusterSpec, observed: ObservedCluster) -> list[SpecIssue]:
    """One refusal per data dir that is not on dm-crypt, naming the dir, the host and what it is on."""
    from reconciler.spec import SpecIssue

    if spec.security is None or spec.security.encryption_at_rest != "required":
        return []
    issues = []
    for host, what, d, dev in data_dir_devices(spec, observed):
        if dev is None:
            why = "could not be checked (no device facts)"
        elif dev.encrypted:
            continue
        else:
            why = f"is on {dev.describe()}, not on a dm-crypt (LUKS) device"
        issues.append(SpecIssue(path="security.encryption_at_rest", message=(
            f"data dir {d} of {what} on {host} {why}: mount an encrypted volume there (see the README), "
            "or drop encryption_at_rest: required")))
    return issues
