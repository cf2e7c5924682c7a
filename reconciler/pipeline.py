"""The stages wired together for the CLI, tests and benchmarks: resolve, observe, plan, apply.

Each function does one stage's I/O and hands typed data on; the decisions stay in the pure
modules (spec, diff, plan.build).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import artifacts
from reconciler.apply.state import Journal, known_hosts_of, record_revision
from reconciler.artifacts import PackedArtifact
from reconciler.diff import Action, ArtifactIds, Change, delete_change, diff
from reconciler.files import managed_paths
from reconciler.observe.collect import HostTarget, collect
from reconciler.observe.model import ObservedCluster
from reconciler.observe.ssh import SshSettings
from reconciler.plan import planfile
from reconciler.plan.build import build_plan
from reconciler.plan.model import Plan
from reconciler.spec import Artifact, ClusterSpec, SpecIssue

if TYPE_CHECKING:  # the apply stack (ansible-runner) loads only when something is applied
    from reconciler.apply import executor

Progress = Callable[[str], None]


class PlanRefused(Exception):
    """The plan cannot be made or must not be applied; `issues` say why, each naming a field or host."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True)
class Artifacts:
    kafka: PackedArtifact
    zookeeper: PackedArtifact

    @property
    def ids(self) -> ArtifactIds:
        return ArtifactIds(kafka=self.kafka.artifact_id, zookeeper=self.zookeeper.artifact_id)


def _resolve_one(name: str, version: str, art: Artifact, progress: Progress | None,
                 full_verify: bool) -> PackedArtifact:
    if art.maven:
        d = artifacts.resolve_maven(name, version, progress=progress)  # type: ignore[arg-type]
    elif art.libs:
        d = artifacts.from_libs_dir(art.libs, name, version)  # type: ignore[arg-type]
    else:
        d = artifacts.from_tarball(art.url or art.path or "", art.sha512 or "", name)  # type: ignore[arg-type]
    packed = artifacts.pack(d, full_verify=full_verify)
    if packed.version != version:
        raise artifacts.ArtifactError(
            f"{name}.artifact holds {name} {packed.version}, but {name}.version is {version}")
    return packed


def resolve_artifacts(spec: ClusterSpec, progress: Progress | None = None, full_verify: bool = False) -> Artifacts:
    """Fetch/verify/pack both artifacts on the control machine (cached; no host touched).

    `full_verify` re-hashes every jar and the tarball (apply does, before pushing anything).
    """
    return Artifacts(
        kafka=_resolve_one("kafka", spec.kafka.version, spec.kafka.artifact, progress, full_verify),
        zookeeper=_resolve_one("zookeeper", spec.zookeeper.version, spec.zookeeper.artifact, progress, full_verify),
    )


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
    targets = [HostTarget(host=h, files=paths, dirs=dirs) for h in hosts]
    zk = [f"{n.host}:{spec.zookeeper.client_port}" for n in spec.zookeeper.nodes]
    return collect(spec.name, targets, ssh_settings(spec), zk, progress=progress)


def make_plan(spec: ClusterSpec, spec_path: str, observed: ObservedCluster, arts: Artifacts,
              destroy: bool = False) -> Plan:
    if destroy:
        changes = destroy_changes(observed)
        errors: list[SpecIssue] = [SpecIssue(path=f"host {h}", message=f"unreachable: {why}")
                                   for h, why in observed.unreachable().items()]
    else:
        result = diff(spec, observed, arts.ids)
        changes, errors = result.changes, result.errors
    if errors:
        raise PlanRefused(errors)
    return build_plan(changes, observed, spec_path=str(Path(spec_path).resolve()),
                      spec_digest=planfile.spec_digest(spec), destroy=destroy)


def destroy_changes(observed: ObservedCluster) -> list[Change]:
    """Delete every kafka and zookeeper service found, without the replica-safety refusal."""
    out: list[Change] = []
    for _host, facts in sorted(observed.hosts.items()):
        for service in ("kafka", "zookeeper"):
            c = delete_change(service, facts, observed, [], check_replicas=False)
            if c:
                out.append(c)
    return out


def apply_plan(plan: Plan, spec: ClusterSpec, arts: Artifacts, observed: ObservedCluster,
               hooks: executor.Hooks, on_task: Callable[[str, str, str], None] | None = None
               ) -> executor.ApplyResult:
    """Run a plan (the caller holds the cluster's ApplyLock); record a configuration revision."""
    from reconciler.apply import executor

    result = executor.execute(plan, spec, arts.kafka, arts.zookeeper, observed, hooks,
                              Journal(spec.name), on_task)
    hosts = [] if plan.destroy else spec.hosts()
    if plan.changes:
        record_revision(spec.name, plan.spec_digest, hosts, plan.counts())
    return result


def count_actions(changes: list[Change]) -> dict[str, int]:
    return {a.value: sum(c.action is a for c in changes) for a in Action}
