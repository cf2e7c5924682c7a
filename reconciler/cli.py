"""kafkaform command line: parse options, call the stages, pick a renderer. No decisions here.

Exit codes: 0 success (plan --detailed-exitcode: no changes), 1 error, 2 changes present
(plan --detailed-exitcode only).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from reconciler import artifacts
from reconciler.artifacts import ArtifactError
from reconciler.spec import ClusterSpec, SpecError, SpecIssue, load_spec
from reconciler.ui import Printer

# The planning and apply stacks are imported inside the commands: `plan` starts observing the
# hosts first and loads them while the SSH round trips are in flight (a no-op plan is mostly
# start-up time otherwise).
if TYPE_CHECKING:
    from reconciler.plan.model import Plan

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="kafkaform: plan and apply Apache Kafka + ZooKeeper clusters on your own hosts.")
lab_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Local lab hosts (systemd-nspawn).")
app.add_typer(lab_app, name="lab")

DEFAULT_LAB_SPEC = Path(__file__).resolve().parents[1] / "examples" / "lab.yaml"
JsonOpt = typer.Option(False, "--json", help="Machine-readable output on stdout.")
RackOpt = typer.Option(
    False, "--roll-by-rack",
    help="Restart one rack of brokers at a time when the plan proves every partition stays writable.")
FormatDevicesOpt = typer.Option(
    False, "--format-devices",
    help="Allow formatting the blank devices security.volumes names (LUKS2; destroys what is on them).")
AllowUnavailableOpt = typer.Option(
    False, "--allow-unavailable",
    help="Accept restarts that make partitions unavailable for acks=all writes (otherwise refused).")


def _emit(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _fail(message: str, json_mode: bool, code: int = 1, **extra: Any) -> typer.Exit:
    if json_mode:
        _emit({"ok": False, "error": message, **extra})
    else:
        print(f"Error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _refuse(headline: str, issues: list[SpecIssue], json_mode: bool, **extra: Any) -> typer.Exit:
    """A refusal with its list of issues (each naming its field), as JSON or as lines on stderr."""
    if json_mode:
        _emit({"ok": False, **extra, "issues": [{"path": i.path, "message": i.message} for i in issues]})
    else:
        print(f"Error: {headline}:", file=sys.stderr)
        for i in issues:
            print(f"  - {i}", file=sys.stderr)
    return typer.Exit(1)


def _load(path: Path, json_mode: bool, prepare: bool = True) -> ClusterSpec:
    """The spec, validated; with `prepare`, its security material read (or made) on this machine:
    the CA, the hosts' certificates and every secret it refers to."""
    from reconciler.security import material

    try:
        spec = load_spec(path)
        issues = material.check(spec) if not prepare else []
        if issues:
            raise SpecError(issues, str(path))
        if prepare:
            try:
                material.prepare(spec)
            except material.MaterialError as e:
                raise SpecError(e.issues, str(path)) from None
        return spec
    except SpecError as e:
        raise _refuse(f"{e.source} is not a valid cluster spec", e.issues, json_mode, source=e.source) from None


def _resolve(spec: ClusterSpec, out: Printer, json_mode: bool, full_verify: bool = False) -> artifacts.SpecArtifacts:
    try:
        return artifacts.resolve_for_spec(spec, progress=out.message, full_verify=full_verify)
    except ArtifactError as e:
        raise _fail(f"artifact: {e}", json_mode) from None


def _plan(spec: ClusterSpec, spec_path: Path, out: Printer, json_mode: bool, destroy: bool = False,
          for_apply: bool = False, allow_unavailable: bool = False, roll_by_rack: bool = False,
          format_devices: bool = False) -> tuple[Plan, artifacts.SpecArtifacts, Any]:
    arts = _resolve(spec, out, json_mode, full_verify=for_apply)
    from reconciler.observe.targets import observe

    with ThreadPoolExecutor(max_workers=1) as ex:
        observing = ex.submit(observe, spec, out.host_observed)
        from reconciler import pipeline  # loads diff/plan while the hosts answer

        observed = observing.result()
    if spec.security is not None and not destroy:
        from reconciler.security.material import material_of

        m = material_of(spec)
        for what, why in m.renewed.items():
            out.message(f"certificate of {what}: issued ({why})")
        if m.rotation:
            from reconciler.security.material import ROTATION_TEXT

            out.message(f"CA rotation under way, this plan: phase {ROTATION_TEXT[m.rotation]}")
    try:
        plan = pipeline.make_plan(spec, str(spec_path), observed, arts, destroy=destroy,
                                  allow_unavailable=allow_unavailable, roll_by_rack=roll_by_rack,
                                  format_devices=format_devices)
    except pipeline.PlanRefused as e:
        raise _refuse("cannot plan", e.issues, json_mode) from None
    return plan, arts, observed


@app.command()
def validate(spec: Path = typer.Argument(..., help="Cluster spec (YAML)."), json_out: bool = JsonOpt) -> None:
    """Check a spec without touching any host."""
    s = _load(spec, json_out, prepare=False)
    quorum = (f"{len(s.voters())} KRaft controller(s)" if s.kraft else f"{len(s.zk_nodes())} ZooKeeper nodes")
    if json_out:
        _emit({"ok": True, "cluster": s.name, "metadata_mode": s.kafka.metadata_mode, "brokers": len(s.brokers),
               "controllers": len(s.voters()), "zookeeper_nodes": len(s.zk_nodes()), "kafka_version": s.kafka.version})
    else:
        print(f"The spec is valid: cluster {s.name!r}, {len(s.brokers)} brokers, {quorum}, "
              f"Kafka {s.kafka.version} ({s.kafka.metadata_mode} mode).")


@app.command()
def plan(
    spec: Path = typer.Argument(..., help="Cluster spec (YAML)."),
    out_file: Path | None = typer.Option(None, "-out", "--out", help="Save the plan to this file for apply."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode",
                                           help="Exit 0 when there are no changes, 2 when there are."),
    destroy: bool = typer.Option(False, "--destroy", help="Plan the removal of everything."),
    allow_unavailable: bool = AllowUnavailableOpt,
    roll_by_rack: bool = RackOpt,
    format_devices: bool = FormatDevicesOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Observe the hosts and show what apply would change."""
    s = _load(spec, json_out)
    out = Printer(json_out)
    p, _, _ = _plan(s, spec, out, json_out, destroy, allow_unavailable=allow_unavailable,
                    roll_by_rack=roll_by_rack, format_devices=format_devices)
    from reconciler.plan import planfile, render  # (after the hosts were asked: off the critical path)

    if out_file:
        try:
            planfile.save(p, out_file)
        except planfile.PlanFileError as e:
            raise _fail(str(e), json_out) from None
    if json_out:
        _emit(render.render_json(p))
    else:
        _print_plan(render.render_text(p))
        if out_file and not p.empty:
            print(f"Saved the plan to {out_file}. To perform exactly these actions, run: kafkaform apply {out_file}")
    if detailed_exitcode and not p.empty:
        raise typer.Exit(2)


@app.command()
def show(plan_file: Path = typer.Argument(..., help="A plan saved with plan -out."), json_out: bool = JsonOpt) -> None:
    """Show a saved plan."""
    from reconciler.plan import planfile, render

    unverified: str | None = None
    try:
        p = planfile.load(plan_file)
    except planfile.UnsignedPlanError as e:
        unverified = str(e)
        p = _load_plan(plan_file, json_out, verify=False)
    except planfile.PlanFileError as e:
        raise _fail(str(e), json_out) from None
    try:
        planfile.check_graph(p)
    except planfile.PlanFileError as e:
        raise _fail(str(e), json_out) from None
    if json_out:
        _emit({**render.render_json(p), "signature_verified": unverified is None})
    else:
        if unverified:
            _print_plan(f"{render.WARNING} {unverified}\n")
        print(f"Saved plan for cluster {p.cluster!r}, made {p.created_at} from {p.spec_path}\n")
        _print_plan(render.render_text(p))


def _load_plan(path: Path, json_out: bool, verify: bool = True) -> Plan:
    from reconciler.plan import planfile

    try:
        return planfile.load(path, verify=verify)
    except planfile.PlanFileError as e:
        raise _fail(str(e), json_out) from None


def _color() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or sys.stdout.isatty()


def _print_plan(text: str) -> None:
    """Plan text for people; lines that weaken a check are red on a terminal."""
    from reconciler.plan.render import WARNING

    if _color():
        text = "\n".join(f"\x1b[1;31m{line}\x1b[0m" if line.lstrip().startswith(WARNING) else line
                         for line in text.split("\n"))
    print(text, end="")


def _confirm(p: Plan, auto_approve: bool, what: str) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        print(f"Error: {what} needs confirmation; no terminal to ask on. Use --auto-approve.", file=sys.stderr)
        raise typer.Exit(1)
    answer = input(f"Do you want to perform these actions on cluster {p.cluster!r}? Only 'yes' will be accepted: ")
    if answer.strip() != "yes":
        print(f"{what.capitalize()} cancelled.")
        raise typer.Exit(1)


def _run_apply(p: Plan, s: ClusterSpec, arts: artifacts.SpecArtifacts, observed: Any, out: Printer,
               json_out: bool) -> None:
    from reconciler import pipeline
    from reconciler.apply.executor import ApplyFailed

    try:
        result = pipeline.apply_plan(p, s, arts, observed, out)
    except ApplyFailed as e:
        if json_out:
            raise _fail(f"apply failed: {e}", json_out, events=out.events, failure=e.kind.value,
                        advice=e.kind.advice) from None
        raise _fail(f"apply failed: {e}\n  {e.kind.advice}", json_out) from None
    counts = p.counts()
    verb = "Destroy" if p.destroy else "Apply"
    summary = (f"{verb} complete! Resources: {counts['add']} added, {counts['change']} changed, "
               f"{counts['destroy']} destroyed ({result.steps_done} steps in {result.seconds:.1f}s).")
    if json_out:
        _emit({"ok": True, "summary": counts, "steps_done": result.steps_done,
               "seconds": round(result.seconds, 1), "events": out.events})
    else:
        print(summary)


@app.command()
def apply(
    target: Path = typer.Argument(..., help="A cluster spec (plans, shows, asks) or a plan file saved by plan -out."),
    spec_opt: Path | None = typer.Option(None, "--spec", help="With a saved plan: the spec it must have been made "
                                         "from (refused otherwise)."),
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
    allow_unavailable: bool = AllowUnavailableOpt,
    roll_by_rack: bool = RackOpt,
    format_devices: bool = FormatDevicesOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Carry out a plan: the one computed now from a spec, or exactly a saved one."""
    from reconciler import pipeline
    from reconciler.apply.state import known_hosts_of
    from reconciler.plan import planfile, render

    out = Printer(json_out)
    saved: Plan | None = None
    if _is_planfile(target):
        if allow_unavailable or roll_by_rack or format_devices:
            raise _fail("--allow-unavailable, --roll-by-rack and --format-devices are chosen when the plan is made "
                        "(kafkaform plan ... -out FILE), not when a saved plan is applied", json_out)
        saved = _load_plan(target, json_out)
        spec_path = Path(saved.spec_path)
    else:
        if spec_opt is not None:
            raise _fail("--spec goes with a saved plan; to apply a spec, give it as the argument", json_out)
        spec_path = target
    s = _load(spec_path, json_out)
    if saved is not None:
        try:  # all checks that need no host come before the lock, the journal and any connection
            planfile.check_spec(saved, s, spec_opt)
            planfile.check_graph(saved, set(s.hosts()) | set(known_hosts_of(s.name)))
        except planfile.PlanFileError as e:
            raise _fail(str(e), json_out) from None
        if not json_out:
            print(f"Applying the saved plan {target} (cluster {saved.cluster!r}, spec {saved.spec_path}, "
                  f"made {saved.created_at}).")
            for w in render.warnings(saved):
                _print_plan(w + "\n")
    with _cluster_lock(s.name, json_out):
        if saved is not None:
            arts = _resolve(s, out, json_out, full_verify=True)
            observed = pipeline.observe(s, progress=out.host_observed)
            try:
                planfile.check_fingerprint(saved, observed.fingerprint())
            except planfile.StalePlanError as e:
                raise _fail(str(e), json_out) from None
            p = saved
        else:
            p, arts, observed = _plan(s, spec_path, out, json_out, for_apply=True,
                                      allow_unavailable=allow_unavailable, roll_by_rack=roll_by_rack,
                                      format_devices=format_devices)
            if not json_out:
                _print_plan(render.render_text(p))
        if p.empty and not p.confirmed_restarts:  # (confirmed restarts alone are journal bookkeeping)
            if json_out:
                _emit({"ok": True, "summary": p.counts(), "no_changes": True})
            elif saved is not None:
                print(render.NO_CHANGES)
            return
        if saved is None and not p.empty:
            _confirm(p, auto_approve, "apply")
        _run_apply(p, s, arts, observed, out, json_out)


@contextlib.contextmanager
def _cluster_lock(cluster: str, json_mode: bool) -> Iterator[None]:
    """Hold the cluster's apply lock; a second holder gets a clear refusal and exit 1."""
    from reconciler.apply.state import ApplyLock, LockHeld

    try:
        lock = ApplyLock(cluster).__enter__()
    except LockHeld as e:
        raise _fail(str(e), json_mode) from None
    try:
        _wait_for_orphans(cluster, json_mode)
        yield
    finally:
        lock.__exit__(None, None, None)


def _wait_for_orphans(cluster: str, json_mode: bool) -> None:
    """A killed apply's Ansible run may still be finishing its step (a restart): the hosts are read
    only once it ended, so what it did counts as done instead of being done again."""
    from reconciler.apply.runner import OrphanedRunStillRunning, wait_for_orphans

    try:
        wait_for_orphans(cluster, progress=Printer(json_mode).message)
    except OrphanedRunStillRunning as e:
        raise _fail(str(e), json_mode) from None


def _is_planfile(path: Path) -> bool:
    """A saved plan carries the plan magic near its start; anything else is taken as a spec (and a
    damaged plan is then reported by the plan reader, not as a bad spec)."""
    from reconciler.plan import planfile

    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return f'"magic": "{planfile.MAGIC}"'.encode() in head or f'"magic":"{planfile.MAGIC}"'.encode() in head


@app.command()
def destroy(
    spec: Path = typer.Argument(..., help="Cluster spec (YAML)."),
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
    json_out: bool = JsonOpt,
) -> None:
    """Stop and remove every broker, KRaft controller and ZooKeeper node of the cluster, data included."""
    from reconciler.plan import render

    s = _load(spec, json_out)
    out = Printer(json_out)
    with _cluster_lock(s.name, json_out):
        p, arts, observed = _plan(s, spec, out, json_out, destroy=True, for_apply=True)
        if not json_out:
            _print_plan(render.render_text(p))
        if p.empty:
            if json_out:
                _emit({"ok": True, "no_changes": True})
            return
        _confirm(p, auto_approve, "destroy")
        _run_apply(p, s, arts, observed, out, json_out)


@app.command("get-bootstrap-brokers")
def get_bootstrap_brokers(spec: Path = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """The host:port list clients use (one per listener kind, as MSK names them)."""
    s = _load(spec, json_out, prepare=False)
    doc = bootstrap_strings(s)
    if json_out:
        _emit(doc)
    elif len(doc) == 1:
        print(next(iter(doc.values())))
    else:
        for k, v in doc.items():
            print(f"{k}: {v}")


def bootstrap_strings(s: ClusterSpec) -> dict[str, str]:
    """MSK's names: BootstrapBrokerString (PLAINTEXT), ...Tls (SSL), ...SaslScram (SASL_SSL); the
    first listener of each kind."""
    names = {"PLAINTEXT": "BootstrapBrokerString", "SSL": "BootstrapBrokerStringTls",
             "SASL_SSL": "BootstrapBrokerStringSaslScram", "SASL_PLAINTEXT": "BootstrapBrokerStringSaslScramPlaintext"}
    out: dict[str, str] = {}
    for lst in s.kafka.listeners:
        out.setdefault(names[lst.protocol], ",".join(f"{b.host}:{lst.port}" for b in s.brokers))
    return out


@app.command("rotate-ca")
def rotate_ca(spec: Path = typer.Argument(..., help="Cluster spec (YAML)."), json_out: bool = JsonOpt) -> None:
    """Start rotating the cluster CA kafkaform generated: a new CA is made here, and the next three
    applies roll the cluster through it (trust both CAs; reissue every certificate; drop the old)."""
    from reconciler.security import material

    s = _load(spec, json_out)
    if s.security is None:
        raise _fail(f"cluster {s.name!r} has no security section, so no CA", json_out)
    try:
        first = material.start_rotation(s)
    except material.CaChanged as e:
        raise _fail(str(e), json_out) from None
    if json_out:
        _emit({"ok": True, "phase": "trust", "phases": list(material.ROTATION_PHASES)})
    else:
        print(f"CA rotation started. Run plan/apply three times; the first: phase {first}.")


@app.command("client-config")
def client_config(
    spec: Path = typer.Argument(..., help="Cluster spec (YAML)."),
    user: str = typer.Option(..., "--user", help="A SCRAM user of the spec (security.users), or any user name "
                             "with --mtls."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the client properties (created 0600)."),
    mtls: bool = typer.Option(False, "--mtls", help="Issue the user a client certificate from the cluster CA "
                              "instead of a SCRAM login."),
    listener: str | None = typer.Option(None, "--listener", help="Listener name (default: the first that fits)."),
    force: bool = typer.Option(False, "--force", help="Replace the file if it exists."),
    json_out: bool = JsonOpt,
) -> None:
    """Write a client.properties to connect as USER: bootstrap, protocol, truststore, and the
    SCRAM login or a client certificate. The file holds the secret: it is never printed."""
    from reconciler.security import client_config as cc
    from reconciler.security.material import issue_client, material_of
    from reconciler.security.spec import USER_NAME

    s = _load(spec, json_out)
    if s.security is None:
        raise _fail(f"cluster {s.name!r} has no security section: clients connect without credentials to "
                    + ",".join(bootstrap_strings(s).values()), json_out)
    if not USER_NAME.fullmatch(user):
        raise _fail(f"--user {user[:80]!r} is not a user name (letters, digits, '.', '_', '-')", json_out)
    m = material_of(s)
    try:
        if mtls:
            lst = cc.pick_listener(s, "mtls", listener)
            cert, key = issue_client(s, user)
            text = cc.mtls_config(s, m, user, lst, cert, key)
        else:
            lst = cc.pick_listener(s, "scram-sha-512", listener)
            text = cc.scram_config(s, m, user, lst)
    except cc.ClientConfigError as e:
        raise _fail(str(e), json_out) from None
    try:
        _write_private(out_file, text, force)
    except OSError as e:
        raise _fail(f"cannot write {out_file}: {e.strerror or e}", json_out) from None
    doc = {"ok": True, "file": str(out_file), "user": user, "listener": lst.name, "protocol": lst.protocol,
           "authentication": "mtls" if mtls else "scram-sha-512",
           "bootstrap": ",".join(f"{b.host}:{lst.port}" for b in s.brokers)}
    if json_out:
        _emit(doc)
    else:
        print(f"Wrote {out_file} (0600): user {user} on listener {lst.name} ({lst.protocol}, "
              f"{doc['authentication']}), bootstrap {doc['bootstrap']}.")


def _write_private(path: Path, text: str, force: bool) -> None:
    """A new 0600 file (O_EXCL unless --force; a symlink is never followed)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise OSError(f"{path} exists (use --force to replace it)") from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


@app.command("describe-cluster")
def describe_cluster(spec: Path = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """State, version, configuration revision, brokers, and the ZooKeeper connect string or the KRaft quorum."""
    from reconciler import pipeline
    from reconciler.apply.state import revisions
    from reconciler.versions import metadata_version_name

    s = _load(spec, json_out)
    out = Printer(json_out)
    observed = pipeline.observe(s, progress=out.host_observed)
    registered = set(observed.cluster.unfenced_brokers)
    want = {b.id for b in s.brokers}
    if observed.unreachable():
        state = "MAINTENANCE" if registered else "FAILED"
    elif want <= registered:
        state = "ACTIVE"
    elif registered:
        state = "HEALING"
    else:
        state = "CREATING" if not revisions(s.name) else "FAILED"
    revs = revisions(s.name)
    doc = {
        "ClusterName": s.name,
        "State": state,
        "KafkaVersion": s.kafka.version,
        "CurrentVersion": revs[-1]["revision"] if revs else 0,
        "NumberOfBrokerNodes": len(s.brokers),
        "RegisteredBrokers": sorted(registered),
        "ControllerId": observed.cluster.controller_id,
        "MetadataMode": s.kafka.metadata_mode.upper(),
        "ZookeeperConnectString": s.zookeeper_connect() or None,
        "BootstrapBrokerString": s.bootstrap_brokers(),
        "StorageUsedBytes": {h: sum(f.dir_usage_bytes.values()) for h, f in observed.hosts.items()},
        "EncryptionInTransit": _encryption_in_transit(s),
        "ClientAuthentication": _client_authentication(s),
        "EncryptionAtRest": _encryption_at_rest(s, observed),
        "Tags": dict(s.tags),
        "UnreachableHosts": observed.unreachable(),
    }
    if s.security is not None:
        from reconciler.security import tls
        from reconciler.security.material import material_of

        m = material_of(s)
        ca = tls.inspect(m.issuing_pem or m.ca_pem)
        doc["CertificateAuthority"] = {"Subject": ca.issuer, "NotAfter": ca.not_after.isoformat(),
                                       "Trusted": m.ca_pem.count("BEGIN CERTIFICATE"), "Rotation": m.rotation}
        doc["Certificates"] = {
            **{h: {"NotAfter": c.info.not_after.isoformat(), "DaysLeft": round(c.info.days_left(), 1)}
               for h, c in sorted(m.nodes.items())},
            "kafkaform-admin": {"NotAfter": m.admin.info.not_after.isoformat(),
                                "DaysLeft": round(m.admin.info.days_left(), 1)}}
    cl = observed.cluster
    if s.kraft:
        q = cl.quorum
        doc.update({
            "ClusterId": cl.cluster_id,
            "FencedBrokers": list(cl.fenced_brokers),
            "Quorum": None if q is None else {
                "LeaderId": q.leader_id, "LeaderEpoch": q.leader_epoch, "HighWatermark": q.high_watermark,
                "Voters": [{"Id": v.node_id, "DirectoryId": v.directory_id, "LogEndOffset": v.log_end_offset,
                            "LastCaughtUpMs": v.last_caught_up_ms, "Endpoint": q.endpoints.get(v.node_id)}
                           for v in q.voters],
                "Observers": [{"Id": v.node_id, "LogEndOffset": v.log_end_offset} for v in q.observers]},
            "MetadataVersion": cl.features.get("metadata.version"),
            "MetadataVersionName": (metadata_version_name(cl.features["metadata.version"])
                                    if "metadata.version" in cl.features else None),
            "FinalizedFeatures": dict(sorted(cl.features.items())),
            "ControllerQuorumBootstrapServers": s.quorum_bootstrap(),
        })
        del doc["ZookeeperConnectString"]
    if json_out:
        _emit(doc)
    else:
        for k, v in doc.items():
            print(f"{k}: {v}")


def _encryption_in_transit(s: ClusterSpec) -> dict[str, Any]:
    """MSK's shape: ClientBroker TLS | TLS_PLAINTEXT | PLAINTEXT, InCluster (brokers and controllers)."""
    tls = [lst.tls for lst in s.kafka.listeners]
    client = "TLS" if all(tls) else "TLS_PLAINTEXT" if any(tls) else "PLAINTEXT"
    internal = s.kafka.inter_broker.tls and (not s.kraft or all(c.tls for c in s.kafka.controller_listeners))
    return {"ClientBroker": client, "InCluster": internal}


def _encryption_at_rest(s: ClusterSpec, observed: Any) -> dict[str, Any]:
    """Whether the spec requires it, and the data dirs (host:dir) found on dm-crypt and not."""
    from reconciler.security.at_rest import data_dir_devices, volume_states

    found: dict[str, list[str]] = {"Encrypted": [], "Unencrypted": [], "Unknown": []}
    for host, _, d, dev in data_dir_devices(s, observed):
        found["Unknown" if dev is None else "Encrypted" if dev.encrypted else "Unencrypted"].append(f"{host}:{d}")
    volumes = [{"Host": v.host, "Name": v.name, "Device": v.device, "Mount": v.mount,
                "State": "unknown" if st is None else st.describe(v.mount)} for v, _, st in volume_states(s, observed)]
    return {"Required": s.security is not None and s.security.encryption_at_rest == "required",
            "DataDirs": {k: sorted(set(v)) for k, v in found.items()}, "Volumes": volumes}


def _client_authentication(s: ClusterSpec) -> dict[str, Any]:
    auths = {lst.auth for lst in s.kafka.listeners}
    return {"Sasl": {"Scram": {"Enabled": "scram-sha-512" in auths}}, "Tls": {"Enabled": "mtls" in auths},
            "Unauthenticated": {"Enabled": "none" in auths}}


# --- rebalance -----------------------------------------------------------------------------------

reassign_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Partition reassignments.")
app.add_typer(reassign_app, name="reassignment")


def _bootstrap(s: ClusterSpec) -> Any:
    from reconciler.observe.connect import admin_endpoint

    return admin_endpoint(s)


@app.command()
def rebalance(
    spec: Path = typer.Argument(..., help="Cluster spec (YAML)."),
    out_file: Path | None = typer.Option(None, "-out", "--out", help="Save the plan to this file for apply."),
    max_moves: int | None = typer.Option(None, "--max-moves", min=0, help="Move at most this many replicas."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan only."),
    throttle_mib: float | None = typer.Option(None, "--throttle", min=0.1, help="Replication throttle in MiB/s "
                                              "(default: the spec's kafka.reassignment.throttle_mib_per_s)."),
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
    json_out: bool = JsonOpt,
) -> None:
    """Even out replicas and leaders over the spec's brokers with the fewest replica moves: an
    ordinary plan, shown, saved with -out (then `kafkaform apply FILE`) or applied here."""
    from reconciler.plan import planfile, render

    s = _load(spec, json_out)
    out = Printer(json_out)

    def make(for_apply: bool) -> tuple[Plan, dict[str, Any], artifacts.SpecArtifacts, Any]:
        from reconciler import pipeline

        arts = _resolve(s, out, json_out, full_verify=for_apply)
        observed = pipeline.observe(s, progress=out.host_observed)
        try:
            p, doc = pipeline.make_rebalance_plan(s, str(spec), observed, arts, max_moves=max_moves,
                                                  throttle_mib_per_s=throttle_mib, progress=out.message)
        except pipeline.PlanRefused as e:
            raise _refuse("cannot rebalance", e.issues, json_out) from None
        return p, doc, arts, observed

    def show(p: Plan, doc: dict[str, Any]) -> None:
        if json_out:
            _emit({**doc, "plan": render.render_json(p)})
        elif p.empty:
            print("No changes. Replicas and leaders are balanced.")
        else:
            _print_plan(render.render_text(p))

    if dry_run or out_file:
        p, doc, _, _ = make(for_apply=False)
        if out_file:
            try:
                planfile.save(p, out_file)
            except planfile.PlanFileError as e:
                raise _fail(str(e), json_out) from None
        show(p, doc)
        if out_file and not p.empty and not json_out:
            print(f"Saved the plan to {out_file}. To perform exactly these actions, run: kafkaform apply {out_file}")
        return
    with _cluster_lock(s.name, json_out):
        p, doc, arts, observed = make(for_apply=True)
        if p.empty or not json_out:
            show(p, doc)
        if p.empty:
            return
        _confirm(p, auto_approve, "rebalance")
        _run_apply(p, s, arts, observed, out, json_out)


@reassign_app.command("status")
def reassignment_status(spec: Path = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """Partition reassignments in progress."""
    from reconciler.apply import reassign

    s = _load(spec, json_out)
    try:
        running = reassign.ongoing(_bootstrap(s))
    except Exception as e:  # noqa: BLE001
        raise _fail(f"cannot ask the cluster: {type(e).__name__}: {e}", json_out) from None
    rows = [{"topic": t, "partition": p, **v} for (t, p), v in sorted(running.items())]
    if json_out:
        _emit({"reassignments": rows})
    elif not rows:
        print("No partition reassignment is running.")
    else:
        for r in rows:
            print(f"{r['topic']}-{r['partition']}: replicas {r['replicas']}, adding {r['adding_replicas']}, "
                  f"removing {r['removing_replicas']}")


# --- lab ---------------------------------------------------------------------------------------


@lab_app.command("up")
def lab_up(spec: Path = typer.Argument(DEFAULT_LAB_SPEC, help="Cluster spec whose hosts the lab provides."),
           json_out: bool = JsonOpt) -> None:
    """Create local lab hosts for the spec's hosts (and resolve its Kafka/ZooKeeper artifacts)."""
    from reconciler import lab

    s = _load(spec, json_out, prepare=False)
    out = Printer(json_out)
    hosts = s.hosts()
    idx = {lab.host_address(i): i for i in range(1, lab.MAX_HOSTS + 1)}
    outside = [h for h in hosts if h not in idx]
    if outside:
        raise _fail(f"{spec}: host(s) {', '.join(outside)} are not lab addresses "
                    f"({lab.host_address(1)}..{lab.host_address(lab.MAX_HOSTS)})", json_out)
    n = max(idx[h] for h in hosts)
    host_disks: dict[int, list[str]] = {}
    for v in s.security.volumes if s.security else ():  # each volume's device, a blank loop device in the lab
        host_disks.setdefault(idx[v.host], []).append(v.device)
    try:
        state = lab.up(n, progress=out.message, host_disks=host_disks)
        arts = artifacts.resolve_for_spec(s, progress=out.message)
    except (lab.LabError, ArtifactError) as e:
        raise _fail(str(e), json_out) from None
    doc = {"hosts": [{"name": h.name, "address": h.address, "disks": h.disks} for h in state.hosts],
           "ssh_key": state.key_path, "known_hosts": state.known_hosts_path, "spec": str(spec),
           "artifacts": {a.name: {"id": a.artifact_id, "sha256": a.sha256} for a in arts.all()}}
    if json_out:
        _emit(doc)
    else:
        for h in state.hosts:
            print(f"{h.name}  {h.address}" + (f"  disks: {', '.join(h.disks)}" if h.disks else ""))
        print(f"Lab is up. Next: kafkaform plan {spec}")


@lab_app.command("down")
def lab_down(json_out: bool = JsonOpt) -> None:
    """Remove every lab host, mount, namespace and process."""
    from reconciler import lab

    out = Printer(json_out)
    try:
        lab.down(progress=out.message)
    except lab.LabError as e:
        raise _fail(str(e), json_out) from None
    if json_out:
        _emit({"ok": True})
    else:
        print("Lab is down.")


@lab_app.command("status")
def lab_status(json_out: bool = JsonOpt) -> None:
    """List lab hosts and whether they run."""
    from reconciler import lab

    st = lab.status()
    hosts = [] if st is None else [{"name": h.name, "address": h.address, "running": h.running} for h in st.hosts]
    if json_out:
        _emit({"hosts": hosts})
    elif not hosts:
        print("No lab.")
    else:
        for h in hosts:
            print(f"{h['name']}  {h['address']}  {'running' if h['running'] else 'stopped'}")


@app.command()
def demo(spec: Path = typer.Argument(DEFAULT_LAB_SPEC), keep: bool = typer.Option(
        True, "--keep/--down", help="Keep the lab running afterwards (default) or take it down.")) -> None:
    """Lab up, apply the cluster, produce and consume a message, print the bootstrap brokers."""
    from reconciler.lab import demo as demo_mod

    raise typer.Exit(demo_mod.run(spec, keep=keep))


def run(argv: list[str]) -> int:
    """The command line as a function: an exit code, never a traceback for bad input. Usage errors
    (unknown flags, bad option values) exit 1 like every other error, so 2 keeps meaning "changes
    present" for plan --detailed-exitcode."""
    try:
        rv = typer.main.get_command(app).main(args=argv, prog_name="kafkaform", standalone_mode=False)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug must still end in one clear line
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # click's errors (typer vendors click)
            message = e.format_message()
            if type(e).__name__ == "Abort":
                print("Interrupted.", file=sys.stderr)
                return 130
            if message:  # (no_args_is_help has printed the help already)
                ctx = getattr(e, "ctx", None)
                words = ctx.command_path.split()[1:] if ctx is not None else []
                usage = f"\nTry 'kafkaform {' '.join([*words, '--help'])}'." if hasattr(e, "ctx") else ""
                print(f"Error: {message}{usage}", file=sys.stderr)
            return 1
        if os.environ.get("KAFKAFORM_DEBUG"):
            traceback.print_exc()
        print(f"Error: internal error: {type(e).__name__}: {e} (KAFKAFORM_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return rv if isinstance(rv, int) else 0


def main() -> None:
    from reconciler.security.secrets import ScrubbedStream

    sys.stdout = ScrubbedStream(sys.stdout)
    sys.stderr = ScrubbedStream(sys.stderr)
    code = run(sys.argv[1:])
    # Everything is done: locks released, journal lines written and closed, Ansible runs ended.
    # Skip the interpreter's teardown of pydantic, paramiko and kafka-python (~0.2 s, a third of
    # a no-op plan); only the output buffers still need flushing.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    main()
