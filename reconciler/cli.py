"""kafkaform command line: parse options, call the stages, pick a renderer. No decisions here.

Exit codes: 0 success (plan --detailed-exitcode: no changes), 1 error, 2 changes present
(plan --detailed-exitcode only).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from reconciler import artifacts
from reconciler.artifacts import ArtifactError
from reconciler.spec import ClusterSpec, SpecError, load_spec
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


def _load(path: Path, json_mode: bool) -> ClusterSpec:
    try:
        return load_spec(path)
    except SpecError as e:
        if json_mode:
            _emit({"ok": False, "source": e.source,
                   "issues": [{"path": i.path, "message": i.message} for i in e.issues]})
        else:
            print(f"Error: {e.source} is not a valid cluster spec:", file=sys.stderr)
            for i in e.issues:
                print(f"  - {i}", file=sys.stderr)
        raise typer.Exit(1) from None


def _resolve(spec: ClusterSpec, out: Printer, json_mode: bool, full_verify: bool = False) -> artifacts.SpecArtifacts:
    try:
        return artifacts.resolve_for_spec(spec, progress=out.message, full_verify=full_verify)
    except ArtifactError as e:
        raise _fail(f"artifact: {e}", json_mode) from None


def _plan(spec: ClusterSpec, spec_path: Path, out: Printer, json_mode: bool, destroy: bool = False,
          for_apply: bool = False, allow_unavailable: bool = False, roll_by_rack: bool = False,
          ) -> tuple[Plan, artifacts.SpecArtifacts, Any]:
    arts = _resolve(spec, out, json_mode, full_verify=for_apply)
    from reconciler.observe.targets import observe

    with ThreadPoolExecutor(max_workers=1) as ex:
        observing = ex.submit(observe, spec, out.host_observed)
        from reconciler import pipeline  # loads diff/plan while the hosts answer

        observed = observing.result()
    try:
        plan = pipeline.make_plan(spec, str(spec_path), observed, arts, destroy=destroy,
                                  allow_unavailable=allow_unavailable, roll_by_rack=roll_by_rack)
    except pipeline.PlanRefused as e:
        if json_mode:
            _emit({"ok": False, "issues": [{"path": i.path, "message": i.message} for i in e.issues]})
        else:
            print("Error: cannot plan:", file=sys.stderr)
            for i in e.issues:
                print(f"  - {i}", file=sys.stderr)
        raise typer.Exit(1) from None
    return plan, arts, observed


@app.command()
def validate(spec: Path = typer.Argument(..., help="Cluster spec (YAML)."), json_out: bool = JsonOpt) -> None:
    """Check a spec without touching any host."""
    s = _load(spec, json_out)
    if json_out:
        _emit({"ok": True, "cluster": s.name, "brokers": len(s.brokers), "zookeeper_nodes": len(s.zookeeper.nodes)})
    else:
        print(f"The spec is valid: cluster {s.name!r}, {len(s.brokers)} brokers, "
              f"{len(s.zookeeper.nodes)} ZooKeeper nodes, Kafka {s.kafka.version}.")


@app.command()
def plan(
    spec: Path = typer.Argument(..., help="Cluster spec (YAML)."),
    out_file: Path | None = typer.Option(None, "-out", "--out", help="Save the plan to this file for apply."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode",
                                           help="Exit 0 when there are no changes, 2 when there are."),
    destroy: bool = typer.Option(False, "--destroy", help="Plan the removal of everything."),
    allow_unavailable: bool = AllowUnavailableOpt,
    roll_by_rack: bool = RackOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Observe the hosts and show what apply would change."""
    s = _load(spec, json_out)
    from reconciler.plan import planfile, render

    out = Printer(json_out)
    p, _, _ = _plan(s, spec, out, json_out, destroy, allow_unavailable=allow_unavailable,
                    roll_by_rack=roll_by_rack)
    if out_file:
        planfile.save(p, out_file)
    if json_out:
        _emit(render.render_json(p))
    else:
        print(render.render_text(p), end="")
        if out_file and not p.empty:
            print(f"Saved the plan to {out_file}. To perform exactly these actions, run: kafkaform apply {out_file}")
    if detailed_exitcode and not p.empty:
        raise typer.Exit(2)


@app.command()
def show(plan_file: Path = typer.Argument(..., help="A plan saved with plan -out."), json_out: bool = JsonOpt) -> None:
    """Show a saved plan."""
    from reconciler.plan import planfile, render

    try:
        p = planfile.load(plan_file)
    except planfile.PlanFileError as e:
        raise _fail(str(e), json_out) from None
    if json_out:
        _emit(render.render_json(p))
    else:
        print(f"Saved plan for cluster {p.cluster!r}, made {p.created_at} from {p.spec_path}\n")
        print(render.render_text(p), end="")


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
        raise _fail(f"apply failed: {e}", json_out, events=out.events) from None
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
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
    allow_unavailable: bool = AllowUnavailableOpt,
    roll_by_rack: bool = RackOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Carry out a plan: the one computed now from a spec, or exactly a saved one."""
    from reconciler import pipeline
    from reconciler.apply.state import ApplyLock, LockHeld
    from reconciler.plan import planfile, render

    out = Printer(json_out)
    saved: Plan | None = None
    if _is_planfile(target):
        try:
            saved = planfile.load(target)
        except planfile.PlanFileError as e:
            raise _fail(str(e), json_out) from None
        spec_path = Path(saved.spec_path)
    else:
        spec_path = target
    s = _load(spec_path, json_out)
    try:
        lock = ApplyLock(s.name).__enter__()
    except LockHeld as e:
        raise _fail(str(e), json_out) from None
    try:
        if saved is not None:
            arts = _resolve(s, out, json_out, full_verify=True)
            observed = pipeline.observe(s, progress=out.host_observed)
            try:
                planfile.check_current(saved, s, observed.fingerprint())
            except planfile.StalePlanError as e:
                raise _fail(str(e), json_out) from None
            p = saved
        else:
            p, arts, observed = _plan(s, spec_path, out, json_out, for_apply=True,
                                      allow_unavailable=allow_unavailable, roll_by_rack=roll_by_rack)
            if not json_out:
                print(render.render_text(p), end="")
            if p.empty and not p.confirmed_restarts:
                if json_out:
                    _emit({"ok": True, "summary": p.counts(), "no_changes": True})
                return
            if not p.empty:
                _confirm(p, auto_approve, "apply")
        if p.empty and not p.confirmed_restarts:
            if json_out:
                _emit({"ok": True, "summary": p.counts(), "no_changes": True})
            else:
                print(render.NO_CHANGES)
            return
        _run_apply(p, s, arts, observed, out, json_out)
    finally:
        lock.__exit__(None, None, None)


def _is_planfile(path: Path) -> bool:
    """A saved plan is JSON carrying the plan magic; anything else is taken as a spec."""
    from reconciler.plan import planfile

    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("magic") == planfile.MAGIC


@app.command()
def destroy(
    spec: Path = typer.Argument(..., help="Cluster spec (YAML)."),
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
    json_out: bool = JsonOpt,
) -> None:
    """Stop and remove every broker and ZooKeeper node of the cluster, data included."""
    from reconciler.apply.state import ApplyLock, LockHeld
    from reconciler.plan import render

    s = _load(spec, json_out)
    out = Printer(json_out)
    try:
        lock = ApplyLock(s.name).__enter__()
    except LockHeld as e:
        raise _fail(str(e), json_out) from None
    try:
        p, arts, observed = _plan(s, spec, out, json_out, destroy=True, for_apply=True)
        if not json_out:
            print(render.render_text(p), end="")
        if p.empty:
            if json_out:
                _emit({"ok": True, "no_changes": True})
            return
        _confirm(p, auto_approve, "destroy")
        _run_apply(p, s, arts, observed, out, json_out)
    finally:
        lock.__exit__(None, None, None)


@app.command("get-bootstrap-brokers")
def get_bootstrap_brokers(spec: Path = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """The host:port list clients use."""
    s = _load(spec, json_out)
    if json_out:
        _emit({"BootstrapBrokerString": s.bootstrap_brokers()})
    else:
        print(s.bootstrap_brokers())


@app.command("describe-cluster")
def describe_cluster(spec: Path = typer.Argument(...), json_out: bool = JsonOpt) -> None:
    """State, version, configuration revision, brokers and ZooKeeper connect string."""
    from reconciler import pipeline
    from reconciler.apply.state import revisions

    s = _load(spec, json_out)
    out = Printer(json_out)
    observed = pipeline.observe(s, progress=out.host_observed)
    registered = set(observed.cluster.broker_ids)
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
        "ZookeeperConnectString": s.zookeeper_connect(),
        "BootstrapBrokerString": s.bootstrap_brokers(),
        "StorageUsedBytes": {h: sum(f.dir_usage_bytes.values()) for h, f in observed.hosts.items()},
        "EncryptionInTransit": "PLAINTEXT",
        "Tags": dict(s.tags),
        "UnreachableHosts": observed.unreachable(),
    }
    if json_out:
        _emit(doc)
    else:
        for k, v in doc.items():
            print(f"{k}: {v}")


# --- lab ---------------------------------------------------------------------------------------


@lab_app.command("up")
def lab_up(spec: Path = typer.Argument(DEFAULT_LAB_SPEC, help="Cluster spec whose hosts the lab provides."),
           json_out: bool = JsonOpt) -> None:
    """Create local lab hosts for the spec's hosts (and resolve its Kafka/ZooKeeper artifacts)."""
    from reconciler import lab

    s = _load(spec, json_out)
    out = Printer(json_out)
    hosts = s.hosts()
    idx = {lab.host_address(i): i for i in range(1, lab.MAX_HOSTS + 1)}
    outside = [h for h in hosts if h not in idx]
    if outside:
        raise _fail(f"{spec}: host(s) {', '.join(outside)} are not lab addresses "
                    f"({lab.host_address(1)}..{lab.host_address(lab.MAX_HOSTS)})", json_out)
    n = max(idx[h] for h in hosts)
    try:
        state = lab.up(n, progress=out.message)
        arts = artifacts.resolve_for_spec(s, progress=out.message)
    except (lab.LabError, ArtifactError) as e:
        raise _fail(str(e), json_out) from None
    doc = {"hosts": [{"name": h.name, "address": h.address} for h in state.hosts],
           "ssh_key": state.key_path, "known_hosts": state.known_hosts_path, "spec": str(spec),
           "artifacts": {a.name: {"id": a.artifact_id, "sha256": a.sha256} for a in (arts.kafka, arts.zookeeper)}}
    if json_out:
        _emit(doc)
    else:
        for h in state.hosts:
            print(f"{h.name}  {h.address}")
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
    from reconciler import demo as demo_mod

    raise typer.Exit(demo_mod.run(spec, keep=keep))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
