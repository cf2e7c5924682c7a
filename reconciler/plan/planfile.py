"""Saved plans: write, read back, and refuse what cannot be applied as reviewed.

A saved plan carries a format version, the path and digest of the spec it was computed from and
the fingerprint of the observed state, and is signed: an HMAC-SHA256 over its canonical JSON with
a key only this control machine's user holds (`clusters/<name>/plan.key`, 0600). So a plan file
handed from CI to an operator cannot be edited on the way — `allow_unavailable: true`, another
spec path or a recomputed fingerprint break the signature — and `apply FILE` refuses it before
anything is journaled or any host is touched. A plan is also checked as a graph (known steps,
acyclic, hosts the spec or the last applied revision knows) before it runs.

`apply FILE` re-reads the spec and re-observes: a different spec digest or fingerprint means the
plan no longer describes what would happen, so it is refused as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler import fields
from reconciler.plan.model import FORMAT_VERSION, Plan
from reconciler.spec import ClusterSpec

MAGIC = "kafkaform-plan"
SIGNATURE_PREFIX = "hmac-sha256:"
MAX_PLAN_BYTES = 256 * 2**20  # 100,000 partition moves are ~30 MiB


class PlanFileError(Exception):
    pass


class StalePlanError(PlanFileError):
    pass


class UnsignedPlanError(PlanFileError):
    """No key on this machine to check the plan with (made elsewhere, or the key was removed)."""


def spec_digest(spec: ClusterSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


# --- signing -------------------------------------------------------------------------------------


def _key_path(cluster: str) -> Path:
    from reconciler.apply.state import cluster_dir

    fields.fullmatch(fields.NAME, cluster, "a cluster name")  # it names a directory
    return cluster_dir(cluster) / "plan.key"


def signing_key(cluster: str, create: bool = True) -> bytes | None:
    """This machine's key for the cluster's plans (made once, 0600)."""
    from reconciler.apply.state import open_private

    path = _key_path(cluster)
    if not path.exists():
        if not create:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            pass  # made by a concurrent plan a moment ago
        else:
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex() + "\n")
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd) as f:
        text = f.read().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise PlanFileError(f"the plan signing key {path} is damaged; delete it and run plan again") from None
    if len(key) < 32:
        raise PlanFileError(f"the plan signing key {path} is damaged; delete it and run plan again")
    return key


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sign(doc: dict[str, Any], key: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(key, _canonical(doc), hashlib.sha256).hexdigest()


# --- files ---------------------------------------------------------------------------------------


def save(plan: Plan, path: str | Path) -> None:
    """Write the signed plan through a fresh temp file in the target dir and an atomic rename, so
    a planted file or symlink at a fixed temp name is never followed; the plan file is 0600."""
    doc: dict[str, Any] = {"magic": MAGIC, **json.loads(plan.model_dump_json())}
    key = signing_key(plan.cluster)
    assert key is not None
    doc["signature"] = _sign(doc, key)
    p = Path(path)
    if p.is_dir():
        raise PlanFileError(f"{p} is a directory; give the plan a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    except OSError as e:
        raise PlanFileError(f"cannot write the plan next to {p}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise PlanFileError(f"cannot write the plan to {p}: {e.strerror}") from None


def read_document(path: str | Path) -> dict[str, Any]:
    """The plan file as a JSON document, with clear errors for anything that is not one."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise PlanFileError(f"cannot read saved plan {p}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise PlanFileError(f"{p} is a directory, not a saved plan")
    if not stat.S_ISREG(st.st_mode):
        raise PlanFileError(f"{p} is not a regular file")
    if st.st_size > MAX_PLAN_BYTES:
        raise PlanFileError(f"{p} is {st.st_size} bytes; a saved plan is at most {MAX_PLAN_BYTES} bytes")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise PlanFileError(f"cannot read saved plan {p}: {e.strerror}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlanFileError(f"{p} is not a kafkaform plan (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise PlanFileError(f"{p} is not a kafkaform plan (not JSON: {e.msg} at line {e.lineno}; "
                            "a truncated or damaged file?)") from None
    except RecursionError:
        raise PlanFileError(f"{p} is not a kafkaform plan (nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("magic") != MAGIC:
        raise PlanFileError(f"{p} is not a kafkaform plan file")
    return doc


def load(path: str | Path, verify: bool = True) -> Plan:
    """Read a saved plan; with `verify`, refuse it unless this machine's key signed exactly it."""
    p = Path(path)
    doc = read_document(p)
    fv = doc.get("format_version")
    if fv != FORMAT_VERSION:
        raise PlanFileError(f"{p} has plan format version {fv!r}; this kafkaform reads version {FORMAT_VERSION}")
    cluster = doc.get("cluster")
    if not isinstance(cluster, str) or not fields.NAME.fullmatch(cluster) or len(cluster) > 64:
        raise PlanFileError(f"{p} is damaged: cluster: not a cluster name")
    if verify:
        check_signature(doc, p)
    body = {k: v for k, v in doc.items() if k not in ("magic", "signature")}
    try:
        return Plan.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise PlanFileError(f"{p} is damaged: {where}: {first['msg']}") from None


def check_signature(doc: dict[str, Any], p: Path) -> None:
    cluster = doc["cluster"]
    sig = doc.get("signature")
    if not isinstance(sig, str) or not sig.startswith(SIGNATURE_PREFIX):
        raise PlanFileError(f"{p} is not signed; only plans saved by `kafkaform plan -out` on this machine "
                            "can be applied")
    key = signing_key(cluster, create=False)
    if key is None:
        raise UnsignedPlanError(f"{p} cannot be verified: this machine has no plan key for cluster {cluster!r} "
                                "(it was made on another machine, or the key was removed); run plan again here")
    if not hmac.compare_digest(sig, _sign(doc, key)):
        raise PlanFileError(f"{p} was changed after it was saved (its signature does not match); "
                            "refusing it. Run plan again")


# --- checks against the spec ---------------------------------------------------------------------


def check_spec(plan: Plan, spec: ClusterSpec, spec_path: str | Path | None = None) -> None:
    """Raise StalePlanError unless the plan was made from this spec (file and content)."""
    if plan.cluster != spec.name:
        raise StalePlanError(f"saved plan is for cluster {plan.cluster!r}, the spec is {spec.name!r}")
    if spec_path is not None and str(Path(spec_path).resolve()) != plan.spec_path:
        raise StalePlanError(f"saved plan was made for the spec {plan.spec_path}, not {Path(spec_path).resolve()}")
    if plan.spec_digest != spec_digest(spec):
        raise StalePlanError(f"saved plan is stale: the spec {plan.spec_path} changed since the plan was made; "
                             "run plan again")


def check_fingerprint(plan: Plan, fingerprint: str) -> None:
    if plan.fingerprint != fingerprint:
        raise StalePlanError("saved plan is stale: the cluster's observed state changed since the plan was made "
                             f"(fingerprint {plan.fingerprint[:12]} -> {fingerprint[:12]}); run plan again")


def check_current(plan: Plan, spec: ClusterSpec, fingerprint: str) -> None:
    """Raise StalePlanError unless the plan was made from this spec and this observed state."""
    check_spec(plan, spec)
    check_fingerprint(plan, fingerprint)


def check_graph(plan: Plan, hosts: set[str] | None = None) -> None:
    """Refuse a plan that is not a runnable graph over known hosts: duplicate or unknown steps,
    a cycle, a host neither the spec nor the last applied revision names, a deletion outside what
    kafkaform may delete."""
    from reconciler.removal import deletable

    ids = [s.id for s in plan.steps]
    known = set(ids)
    if len(known) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PlanFileError(f"saved plan is damaged: step {dup!r} appears twice")
    children: dict[str, list[str]] = {i: [] for i in ids}
    indegree = dict.fromkeys(ids, 0)
    for a, b in plan.edges:
        for end in (a, b):
            if end not in known:
                raise PlanFileError(f"saved plan is damaged: an edge {a!r} -> {b!r} names a step "
                                    "the plan does not have")
        children[a].append(b)
        indegree[b] += 1
    ready = [i for i in ids if indegree[i] == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    if seen != len(ids):
        stuck = sorted(i for i in ids if indegree[i] > 0)[:3]
        raise PlanFileError(f"saved plan is damaged: its steps form a cycle (through {', '.join(stuck)})")
    for s in plan.steps:
        if hosts is not None and s.host not in hosts and s.host != "cluster":  # cluster-wide steps (Admin API)
            raise PlanFileError(f"saved plan is damaged: step {s.id} is for host {s.host!r}, which neither the "
                                "spec nor the cluster's last applied revision names")
        if s.volume is not None and s.volume.format and not plan.format_devices:
            raise PlanFileError(f"saved plan is damaged: step {s.id} formats {s.volume.device}, but the plan was "
                                "not made with --format-devices")
        for d in s.deletions:
            if not deletable(d.path):
                raise PlanFileError(f"saved plan is damaged: step {s.id} would delete {d.path!r}, "
                                    "which is not a path kafkaform deletes")
