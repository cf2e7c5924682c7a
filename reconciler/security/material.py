"""Security material of a cluster on the control machine: its CA, one certificate per host (the
brokers' and controllers' own, principal `kafka-nodes`), kafkaform's admin client certificate, and
the secrets the spec refers to.

Kept in `$KAFKAFORM_HOME/clusters/<name>/tls/` (0700, every file 0600). `prepare(spec)` reads it,
makes what is missing (a new CA, a certificate for a new host) and renews what is within
`security.tls.renew_before_days` of expiry, on a host name change or after the CA changed; the
rendered files then differ from the hosts' and the plan rolls the nodes onto the new
certificates. No host is touched here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.apply.state import cluster_dir, private_dir, replace_private
from reconciler.security import secrets
from reconciler.security.spec import NODE_PRINCIPAL, ProvidedCa

if TYPE_CHECKING:
    from reconciler.security import tls
    from reconciler.spec import ClusterSpec, SpecIssue


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    key_pem: str
    info: tls.CertInfo
    why: str = ""  # set when this prepare issued it: "new", "expires in 12 days", ...


@dataclass
class Material:
    """What renderers and kafkaform's own connections need; made by `prepare`."""

    ca_pem: str  # the trusted CAs' certificates (one; two while a CA rotation trusts both)
    nodes: dict[str, Issued]  # by host
    admin: Issued
    tls_dir: Path  # admin.crt, admin.key, ca.crt for kafka-python and the tools
    users: dict[str, secrets.Secret] = field(default_factory=dict)
    # ZooKeeper mode: the digest passwords of the brokers' ZooKeeper login ("kafka") and of
    # kafkaform's own session ("super"), made by kafkaform (random) and kept with the CA
    zookeeper: dict[str, secrets.Secret] = field(default_factory=dict)
    issuing_pem: str = ""  # the CA that issues certificates now (the new one from a rotation's 2nd phase)
    rotation: str | None = None  # the CA rotation's phase: trust | reissue | drop
    volume_keys: dict[tuple[str, str], secrets.Secret] = field(default_factory=dict)  # (host, volume name)

    def node_chain(self, host: str) -> str:
        return self.nodes[host].cert_pem + (self.issuing_pem or self.ca_pem)

    @property
    def renewed(self) -> dict[str, str]:
        """Certificates this prepare issued, with why (`host` or `admin`)."""
        out = {h: c.why for h, c in self.nodes.items() if c.why}
        if self.admin.why:
            out["kafkaform admin"] = self.admin.why
        return out

    def admin_files(self) -> tuple[str, str, str]:
        """(trusted CAs file, certificate file, key file) of kafkaform's own client."""
        return str(self.tls_dir / "trust.crt"), str(self.tls_dir / "admin.crt"), str(self.tls_dir / "admin.key")


class CaChanged(Exception):
    pass


class MaterialError(Exception):
    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def tls_dir(cluster: str) -> Path:
    return private_dir(cluster_dir(cluster) / "tls")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _ca(spec: ClusterSpec, d: Path, issues: list[SpecIssue]) -> tuple[str, str] | None:
    from reconciler.security import tls  # (cryptography loads only for a secured cluster)
    from reconciler.spec import SpecIssue

    assert spec.security is not None
    ca = spec.security.tls.ca
    if isinstance(ca, ProvidedCa):
        cert = _read(Path(ca.cert).expanduser())
        if cert is None:
            issues.append(SpecIssue(path="security.tls.ca.cert", message=f"cannot read {ca.cert}: no such file"))
            return None
        try:
            key = secrets.read(ca.key, min_len=1, what="the CA key", one_line=False).reveal()
        except secrets.SecretError as e:
            issues.append(SpecIssue(path="security.tls.ca.key", message=str(e)))
            return None
        for problem in tls.ca_problems(cert, key):
            issues.append(SpecIssue(path="security.tls.ca", message=problem))
        return None if issues else (cert, key)
    kept_cert, kept_key = _read(d / "ca.crt"), _read(d / "ca.key")
    if kept_cert is not None and kept_key is not None:
        cert, key = kept_cert, kept_key
    else:
        cert, key = tls.new_ca(spec.name)
        replace_private(d / "ca.key", key)
        replace_private(d / "ca.crt", cert)
    secrets.register(key)
    problems = tls.ca_problems(cert, key)
    for problem in problems:  # (never replaced silently: nodes trusting only it would stop talking)
        issues.append(SpecIssue(path="security.tls.ca", message=f"the cluster CA kept in {d}: {problem}"))
    return None if problems else (cert, key)


def _keep_or_issue(path: Path, ca: tuple[str, str], cn: str, sans: list[str], days: int, renew_days: int,
                   org: str, now: dt.datetime, rotating_from: str | None = None) -> Issued:
    """The certificate kept at path.crt/.key if it is still good for this name, else a new one."""
    from reconciler.security import tls
    crt, keyf = Path(f"{path}.crt"), Path(f"{path}.key")  # (not with_suffix: hosts are often addresses)
    cert, key = _read(crt), _read(keyf)
    why = "new"
    if cert is not None and key is not None:
        info = tls.inspect(cert)
        left = info.days_left(now)
        if not tls.signed_by(cert, ca[0]):
            if rotating_from is None or not tls.signed_by(cert, rotating_from):
                raise CaChanged(f"{crt} was issued by another CA ({info.issuer}); to change the cluster CA, "
                                "rotate it (kafkaform rotate-ca): nodes would stop trusting each other mid-roll")
            why = "the cluster CA is being rotated (reissued by the new CA)"
        elif info.subject_cn != cn or sorted(info.sans) != sorted(sans):
            why = f"its names changed ({', '.join(info.sans) or info.subject_cn} -> {', '.join(sans) or cn})"
        elif left <= renew_days:
            why = f"it expires in {max(0.0, left):.0f} days ({info.not_after:%Y-%m-%d})"
        else:
            secrets.register(key)
            return Issued(cert, key, info)
    cert, key = tls.issue(ca[0], ca[1], cn, sans, days, organization=org, now=now)
    replace_private(keyf, key)
    replace_private(crt, cert)
    secrets.register(key)
    return Issued(cert, key, tls.inspect(cert), why)


def _user_secrets(spec: ClusterSpec, issues: list[SpecIssue]) -> dict[str, secrets.Secret]:
    from reconciler.spec import SpecIssue

    assert spec.security is not None
    users: dict[str, secrets.Secret] = {}
    for i, u in enumerate(spec.security.users):
        try:
            users[u.name] = secrets.read(u.password, what=f"the password of {u.name}")
        except secrets.SecretError as e:
            issues.append(SpecIssue(path=f"security.users[{i}].password", message=str(e)))
    return users


VOLUME_KEY_MIN = 16


def volume_keys(spec: ClusterSpec, issues: list[SpecIssue]) -> dict[tuple[str, str], secrets.Secret]:
    """(host, volume name) -> the key that opens that LUKS volume (security.volumes)."""
    from reconciler.spec import SpecIssue

    out: dict[tuple[str, str], secrets.Secret] = {}
    for i, v in enumerate(spec.security.volumes if spec.security else ()):
        try:
            out[(v.host, v.name)] = secrets.read(v.key, min_len=VOLUME_KEY_MIN, one_line=False,
                                                 what=f"the key of volume {v.name} on {v.host}")
        except secrets.SecretError as e:
            issues.append(SpecIssue(path=f"security.volumes[{i}].key", message=str(e)))
    return out


def check(spec: ClusterSpec) -> list[SpecIssue]:
    """What `prepare` would refuse, without making anything (for `validate`): every secret the
    spec refers to is readable, and a provided CA can issue certificates."""
    issues: list[SpecIssue] = []
    if spec.security is None:
        return issues
    _user_secrets(spec, issues)
    volume_keys(spec, issues)
    if isinstance(spec.security.tls.ca, ProvidedCa):
        _ca(spec, Path("/nonexistent"), issues)
    return issues


def prepare(spec: ClusterSpec, now: dt.datetime | None = None) -> Material | None:
    """Read (or make) the cluster's security material and attach it to `spec` for the renderers.
    None for a spec without a security section. Raises MaterialError naming the spec field of a
    secret or CA that cannot be used."""
    from reconciler.spec import SpecIssue

    sec = spec.security
    if sec is None:
        return None
    issues: list[SpecIssue] = []
    users = _user_secrets(spec, issues)
    keys = volume_keys(spec, issues)
    if issues:
        raise MaterialError(issues)
    d = tls_dir(spec.name)
    ca = _ca(spec, d, issues)
    if issues or ca is None:
        raise MaterialError(issues)
    now = now or dt.datetime.now(dt.UTC)
    t = sec.tls
    hosts_dir = d / "hosts"
    hosts_dir.mkdir(mode=0o700, exist_ok=True)
    phase = rotation_phase(spec.name)
    issuing, trusted, old = ca, ca[0], None
    if phase is not None:
        nxt = _read(d / "ca-next.crt"), _read(d / "ca-next.key")
        if nxt[0] is None or nxt[1] is None:
            raise MaterialError([SpecIssue(path="security.tls.ca", message=(
                f"a CA rotation is recorded ({phase}) but the new CA is missing from {d}"))])
        secrets.register(nxt[1])
        if phase == "trust":  # 1: every node trusts both CAs; certificates stay
            trusted = ca[0] + nxt[0]
        elif phase == "reissue":  # 2: every certificate is reissued by the new CA; both still trusted
            issuing, trusted, old = (nxt[0], nxt[1]), ca[0] + nxt[0], ca[0]
        else:  # 3 (drop): only the new CA is trusted
            issuing, trusted, old = (nxt[0], nxt[1]), nxt[0], ca[0]
    try:
        nodes = {h: _keep_or_issue(hosts_dir / h, issuing, NODE_PRINCIPAL, [h], t.validity_days,
                                   t.renew_before_days, spec.name, now, old) for h in spec.hosts()}
        admin = _keep_or_issue(d / "admin", issuing, sec.admin_principal, [], t.validity_days, t.renew_before_days,
                               spec.name, now, old)
    except CaChanged as e:
        raise MaterialError([SpecIssue(path="security.tls.ca", message=str(e))]) from None
    if _read(d / "ca.crt") != ca[0]:
        replace_private(d / "ca.crt", ca[0])  # (a provided CA: its certificate beside the admin's, for clients)
    if _read(d / "trust.crt") != trusted:
        replace_private(d / "trust.crt", trusted)  # what kafkaform's own client trusts
    zk = _zookeeper_secrets(d) if spec.zookeeper is not None and not spec.kraft else {}
    material = Material(ca_pem=trusted, nodes=nodes, admin=admin, tls_dir=d, users=users, zookeeper=zk,
                        issuing_pem=issuing[0], rotation=phase, volume_keys=keys)
    spec._material = material
    return material


ROTATION_PHASES = ("trust", "reissue", "drop")
ROTATION_TEXT = {"trust": "1 of 3: every node trusts the old and the new CA",
                 "reissue": "2 of 3: every certificate is reissued by the new CA (both CAs trusted)",
                 "drop": "3 of 3: the old CA is no longer trusted"}


def rotation_phase(cluster: str) -> str | None:
    import json

    text = _read(tls_dir(cluster) / "rotation.json")
    phase = json.loads(text).get("phase") if text else None
    return phase if phase in ROTATION_PHASES else None


def start_rotation(spec: ClusterSpec) -> str:
    """`kafkaform rotate-ca`: make the next CA; the next applies roll the cluster through the three
    phases, one per apply (each a rolling restart with its availability proof)."""
    import json

    from reconciler.security import tls

    assert spec.security is not None
    if isinstance(spec.security.tls.ca, ProvidedCa):
        raise CaChanged("the cluster's CA is provided in the spec: kafkaform rotates only a CA it generated")
    phase = rotation_phase(spec.name)
    if phase is not None:
        raise CaChanged(f"a CA rotation is already under way (phase {ROTATION_TEXT[phase]})")
    d = tls_dir(spec.name)
    cert, key = tls.new_ca(spec.name)
    replace_private(d / "ca-next.key", key)
    replace_private(d / "ca-next.crt", cert)
    replace_private(d / "rotation.json", json.dumps({"phase": "trust"}))
    return ROTATION_TEXT["trust"]


def advance_rotation(cluster: str) -> str | None:
    """After an apply succeeded (the hosts have this phase's files): the next phase, or, after the
    last, the new CA becomes the cluster's CA. Returns what happened, None without a rotation."""
    import json

    phase = rotation_phase(cluster)
    if phase is None:
        return None
    d = tls_dir(cluster)
    if phase != "drop":
        nxt = ROTATION_PHASES[ROTATION_PHASES.index(phase) + 1]
        replace_private(d / "rotation.json", json.dumps({"phase": nxt}))
        done = f"CA rotation: phase {ROTATION_TEXT[phase]} done; next apply: phase {ROTATION_TEXT[nxt]}"
        if nxt == "reissue":  # from here on brokers show certificates of the new CA
            done += (". Before it, give clients the new trust (`kafkaform client-config` writes both CAs): "
                     "a client trusting only the old CA cannot connect once its broker has rolled")
        return done
    for name in ("crt", "key"):
        old = _read(d / f"ca.{name}")
        if old is not None:
            replace_private(d / f"ca-retired.{name}", old)
        replace_private(d / f"ca.{name}", _read(d / f"ca-next.{name}") or "")
        (d / f"ca-next.{name}").unlink()
    (d / "rotation.json").unlink()
    return "CA rotation done: the new CA is the cluster's CA"


def _zookeeper_secrets(d: Path) -> dict[str, secrets.Secret]:
    """The ZooKeeper digest passwords (kept in zookeeper.json, 0600; made once)."""
    import json
    import secrets as random

    path = d / "zookeeper.json"
    text = _read(path)
    doc = json.loads(text) if text else {}
    if not all(doc.get(k) for k in ("kafka", "super")):
        doc = {k: doc.get(k) or random.token_urlsafe(32) for k in ("kafka", "super")}
        replace_private(path, json.dumps(doc))
    from reconciler.security.zookeeper import super_digest

    secrets.register(super_digest(doc["super"]))
    return {k: secrets.Secret(v, f"kafkaform's ZooKeeper {k} login") for k, v in doc.items() if k in ("kafka", "super")}


def material_of(spec: ClusterSpec) -> Material:
    """The material `prepare` attached; a programming error if it was not prepared."""
    m = spec._material
    if m is None:
        raise RuntimeError(f"cluster {spec.name}: security material was not prepared before rendering")
    assert isinstance(m, Material)
    return m


def issue_client(spec: ClusterSpec, user: str) -> tuple[str, str]:
    """A client certificate for `user` (CN=user: principal User:<user>) from the cluster CA, for
    `client-config --mtls`; not kept by kafkaform."""
    from reconciler.security import tls

    m = material_of(spec)
    assert spec.security is not None
    d = tls_dir(spec.name)
    ca_key = _read(d / "ca.key")
    if isinstance(spec.security.tls.ca, ProvidedCa):
        ca_key = secrets.read(spec.security.tls.ca.key, min_len=1, one_line=False).reveal()
    assert ca_key is not None
    cert, key = tls.issue(m.ca_pem, ca_key, user, [], spec.security.tls.validity_days, organization=spec.name)
    secrets.register(key)
    return cert, key
