"""Saved plans: write, read back, and refuse what cannot be applied as reviewed.

A saved plan carries a format version, the digest of the spec it was computed from and the
fingerprint of the observed state. `apply FILE` re-reads the spec and re-observes: a different
spec digest or fingerprint means the plan no longer describes what would happen, so it is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import ValidationError

from reconciler.plan.model import FORMAT_VERSION, Plan
from reconciler.spec import ClusterSpec

MAGIC = "kafkaform-plan"


class PlanFileError(Exception):
    pass


class StalePlanError(PlanFileError):
    pass


def spec_digest(spec: ClusterSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def save(plan: Plan, path: str | Path) -> None:
    doc = {"magic": MAGIC, **json.loads(plan.model_dump_json())}
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(p)


def load(path: str | Path) -> Plan:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as e:
        raise PlanFileError(f"cannot read saved plan {p}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise PlanFileError(f"{p} is not a kafkaform plan (not JSON: {e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise PlanFileError(f"{p} is not a kafkaform plan (not UTF-8 text)") from None
    if not isinstance(doc, dict) or doc.pop("magic", None) != MAGIC:
        raise PlanFileError(f"{p} is not a kafkaform plan file")
    fv = doc.get("format_version")
    if fv != FORMAT_VERSION:
        raise PlanFileError(f"{p} has plan format version {fv!r}; this kafkaform reads version {FORMAT_VERSION}")
    try:
        return Plan.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise PlanFileError(f"{p} is damaged: {where}: {first['msg']}") from None


def check_current(plan: Plan, spec: ClusterSpec, fingerprint: str) -> None:
    """Raise StalePlanError unless the plan was made from this spec and this observed state."""
    if plan.cluster != spec.name:
        raise StalePlanError(f"saved plan is for cluster {plan.cluster!r}, the spec is {spec.name!r}")
    if plan.spec_digest != spec_digest(spec):
        raise StalePlanError(f"saved plan is stale: the spec {plan.spec_path} changed since the plan was made; "
                             "run plan again")
    if plan.fingerprint != fingerprint:
        raise StalePlanError("saved plan is stale: the cluster's observed state changed since the plan was made "
                             f"(fingerprint {plan.fingerprint[:12]} -> {fingerprint[:12]}); run plan again")
