"""What removing a service deletes on a host, and what proves each path is kafkaform's to delete.

Computed at plan time from the observed host, shown in the plan, and carried out exactly by the
remove step (`playbooks/library/kf_remove.py` checks each proof on the host at that moment). A
path is never deleted because a spec or a config file on the host merely names it: a data dir goes
only when kafkaform's owner marker is in it, an artifact dir only with its ARTIFACT marker, a unit
only when it carries kafkaform's header, an install root only when it is empty.
"""

from __future__ import annotations

import posixpath
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from reconciler import fields
from reconciler import files as F
from reconciler.observe.model import HostFacts


class Proof(StrEnum):
    OWNER_MARKER = "owner_marker"  # <dir>/.kafkaform-owner exists
    ARTIFACT_MARKER = "artifact_marker"  # <dir>/ARTIFACT exists
    KAFKAFORM_HEADER = "kafkaform_header"  # the file's first line is kafkaform's header
    EMPTY = "empty"  # removed only when empty (rmdir)
    INCOMING = "incoming"  # kafkaform's upload dir inside an install root


class Deletion(BaseModel):
    model_config = ConfigDict(frozen=True)
    path: str
    proof: Proof

    def describe(self) -> str:
        return {
            Proof.OWNER_MARKER: f"{self.path} (if kafkaform's marker is in it)",
            Proof.ARTIFACT_MARKER: f"{self.path} (installed build)",
            Proof.KAFKAFORM_HEADER: f"{self.path} (if kafkaform wrote it)",
            Proof.EMPTY: f"{self.path} (if empty)",
            Proof.INCOMING: f"{self.path} (upload dir)",
        }[self.proof]


def _unit(service: str) -> str:
    return F.SERVICE_PATHS[service].unit


def _fixed_dirs(service: str) -> tuple[str, ...]:
    return (F.SERVICE_PATHS[service].etc, F.SERVICE_PATHS[service].logs)


def observed_data_dirs(service: str, facts: HostFacts) -> tuple[str, ...]:
    """Data dirs the host's own config names (what the service used), when they are paths
    kafkaform could have created; anything else is left alone."""
    seen = facts.files.get(F.SERVICE_PATHS[service].config)
    if not seen or not seen.content:
        return ()
    props = F.parse_properties(seen.content)
    raw = props.get("dataDir", "") if service == "zookeeper" else props.get("log.dirs") or props.get("log.dir") or ""
    out: list[str] = []
    for d in (x.strip() for x in raw.split(",")):
        try:
            fields.check_service_path(d)
        except ValueError:
            continue
        if d not in out:
            out.append(d)
    return tuple(out)


def deletions(service: str, facts: HostFacts, keep_artifacts: bool = False) -> tuple[Deletion, ...]:
    """Every path the removal of `service` on this host deletes, in order, each with its proof.
    `keep_artifacts`: another service on the host runs the same build (a broker beside a controller)."""
    out = [Deletion(path=_unit(service), proof=Proof.KAFKAFORM_HEADER)]
    out += [Deletion(path=d, proof=Proof.OWNER_MARKER) for d in _fixed_dirs(service)]
    roots: list[str] = []
    for a in sorted(facts.artifacts, key=lambda a: a.path):
        if a.name != F.artifact_name(service) or keep_artifacts:
            continue
        out.append(Deletion(path=a.path, proof=Proof.ARTIFACT_MARKER))
        root = posixpath.dirname(a.path)
        if root not in roots:
            roots.append(root)
    for root in roots:
        out.append(Deletion(path=f"{root}/.incoming", proof=Proof.INCOMING))
        out.append(Deletion(path=root, proof=Proof.EMPTY))
    out += [Deletion(path=d, proof=Proof.OWNER_MARKER) for d in observed_data_dirs(service, facts)]
    return tuple(out)


def deletable(path: str) -> bool:
    """Whether a path is of a kind a removal may name at all (the proofs decide on the host)."""
    if path in {p.unit for p in F.SERVICE_PATHS.values()} or path in F.FIXED_DIRS:
        return True
    base = path.removesuffix("/.incoming")
    try:
        fields.check_service_path(base)
    except ValueError:
        return False
    return True
