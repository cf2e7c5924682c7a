"""Encryption at rest: `security.encryption_at_rest: required` holds only where every data dir
sits on a dm-crypt device, or on one of `security.volumes`, the LUKS volumes kafkaform makes.
Pure: judged from the facts observe read (facts.dir_devices, facts.volumes).

A volume is made only on a device with nothing on it (no filesystem, partition table, LUKS
header or other signature), and only when the operator passed --format-devices (checked by the
pipeline: `formats`); a device that already holds kafkaform's LUKS volume is opened and mounted,
never formatted again. What cannot be done is refused here, naming the volume's field and host.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.diff import VolumeChange
    from reconciler.observe.model import DirDevice, HostFacts, ObservedCluster, VolumeState
    from reconciler.security.spec import VolumeSpec
    from reconciler.spec import ClusterSpec, SpecIssue


def data_dirs(spec: ClusterSpec) -> list[tuple[str, str, str]]:
    """(host, what, dir) for every directory that holds a service's data."""
    out = [(b.host, f"broker {b.id}", d) for b in spec.brokers for d in b.data_dirs]
    out += [(c.host, f"controller {c.id}", c.metadata_dir) for c in spec.controllers]
    if spec.zookeeper is not None:
        out += [(n.host, f"zookeeper {n.myid}", spec.zookeeper.data_dir) for n in spec.zookeeper.nodes]
    return out


def within(path: str, mount: str) -> bool:
    """Whether `path` is the mount point or beneath it."""
    return path == mount or path.startswith(mount.rstrip("/") + "/")


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
        if any(v.host == host and within(d, v.mount) for v in spec.security.volumes):
            continue  # on a volume kafkaform makes: `volume_changes` makes it or says why not
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


def _volume_refusal(v: VolumeSpec, facts: HostFacts | None, st: VolumeState | None) -> str | None:
    """Why the volume cannot be made ready on its host, or None."""
    dev = f"{v.device} on {v.host}"
    if facts is None or st is None:
        return f"{dev} could not be checked (no facts from the host)"
    if st.state == "missing":
        return f"{dev} does not exist"
    if st.state == "notblock":
        return f"{dev} is not a block device"
    if st.device_mounted_at:
        return f"{dev} is mounted at {st.device_mounted_at} itself; kafkaform does not touch a device in use"
    if st.open and st.mounted_at not in (None, v.mount):
        return f"the volume on {dev} is open and mounted at {st.mounted_at}, not at {v.mount}"
    if not st.luks and not st.blank:
        what = f"a {st.signature} signature" if st.signature else f"a {st.partition_table} partition table"
        return (f"{dev} holds {what}; kafkaform makes a LUKS volume only on a device with nothing on it. If what "
                f"is on it may be destroyed, wipe it yourself (wipefs -a {v.device}) and plan again")
    if st.mounted_at is None and st.mount_has_files:
        return (f"{v.mount} on {v.host} already holds files, which mounting the volume there would hide (a service's "
                "data): move the service onto an encrypted volume by adding a new node there and removing this one")
    if not st.open and facts.volumes.device_mapper is False:
        return (f"{v.host}'s kernel has no device-mapper (/proc/misc does not list it), so a LUKS volume cannot "
                "be opened there (load dm_crypt, or drop the volume)")
    if facts.volumes.cryptsetup is False:
        return f"cryptsetup is not installed on {v.host} (Debian: apt install cryptsetup-bin)"
    return None


def volume_states(spec: ClusterSpec, observed: ObservedCluster
                  ) -> list[tuple[VolumeSpec, HostFacts | None, VolumeState | None]]:
    """Each volume of security.volumes with its host's facts and what observe found on its device
    (None where observe has no facts)."""
    out = []
    for v in spec.security.volumes if spec.security else ():
        facts = observed.hosts.get(v.host)
        out.append((v, facts, facts.volumes.volumes.get(v.name) if facts is not None else None))
    return out


def volume_changes(spec: ClusterSpec, observed: ObservedCluster, errors: list[SpecIssue]) -> list[VolumeChange]:
    """One change per volume of security.volumes not yet open and mounted where the spec says;
    a refusal (appended to `errors`) for each one that cannot be made ready."""
    from reconciler.diff import Action, AttrDiff, VolumeChange
    from reconciler.spec import SpecIssue

    out: list[VolumeChange] = []
    for i, (v, facts, st) in enumerate(volume_states(spec, observed)):
        why = _volume_refusal(v, facts, st)
        if why:
            errors.append(SpecIssue(path=f"security.volumes[{i}]", message=why))
            continue
        assert st is not None
        if st.open and st.mounted_at == v.mount:
            continue
        todo = (["format (LUKS2) the blank device: destroys whatever is on it"] if st.blank else [])
        todo += [] if st.open else ["open it"]
        todo.append(f"mount it at {v.mount}")
        out.append(VolumeChange(
            address=f"volume.{v.host}.{v.name}", service="volume", key=v.name, host=v.host,
            action=Action.CREATE if st.blank else Action.UPDATE, reasons=("; ".join(todo),),
            attrs=(AttrDiff(name="device", before=None, after=v.device),
                   AttrDiff(name="mount", before=st.mounted_at, after=v.mount),
                   AttrDiff(name="filesystem", before=None, after=v.filesystem)),
            name=v.name, device=v.device, mount=v.mount, filesystem=v.filesystem, format=st.blank))
    return out


def formats(changes: Iterable[object]) -> list[str]:
    """The devices a plan would format ('DEVICE on HOST'): what --format-devices must allow."""
    from reconciler.diff import VolumeChange

    return [f"{c.device} on {c.host}" for c in changes if isinstance(c, VolumeChange) and c.format]
