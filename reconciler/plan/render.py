"""Human (Terraform-like) and JSON renderings of a plan. No decisions here."""

from __future__ import annotations

import json
from typing import Any

from reconciler.diff import Action, Change, ReassignChange, ServiceChange
from reconciler.plan.model import Plan
from reconciler.render.common import ADDRESS_PREFIX

NO_CHANGES = "No changes. The cluster matches the spec."

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in-place",
    Action.DELETE: "will be destroyed",
}


def _q(v: str | None) -> str:
    return "(none)" if v is None else json.dumps(v)


def render_change(c: Change) -> list[str]:
    label = ADDRESS_PREFIX.get(c.service, c.service)
    verb = _VERB[c.action]
    if isinstance(c, ServiceChange) and c.rolling_restart:
        verb += " (rolling restart)"
    elif isinstance(c, ServiceChange) and c.dynamic_keys:
        verb += " (no restart)"
    reassign = isinstance(c, ReassignChange)
    if reassign:
        label, verb = "partitions", "will be reassigned (data moves between brokers)"
    out = [f"  # {c.address} {verb}" if reassign else f"  # {c.address} on {c.host} {verb}"]
    for r in c.reasons:
        out.append(f"  #   because {r}")
    out.append(f"  {c.action.symbol} {label} \"{c.key}\" {{")
    width = max((len(a.name) for a in c.attrs), default=0)
    for a in c.attrs:
        name = a.name.ljust(width)
        if c.action is Action.CREATE or (a.before is None and a.after is not None):
            out.append(f"      + {name} = {_q(a.after)}")
        elif c.action is Action.DELETE or a.after is None:
            out.append(f"      - {name} = {_q(a.before)}")
        else:
            out.append(f"      ~ {name} = {_q(a.before)} -> {_q(a.after)}")
    out.append("    }")
    return out


def _confirmed(plan: Plan) -> list[str]:
    if not plan.confirmed_restarts:
        return []
    lines = ["Resuming an interrupted apply; these restarts already happened and are not repeated:"]
    lines += [f"  - {step}: {why}" for step, why in plan.confirmed_restarts]
    return lines + [""]


WARNING = "Warning:"


def warnings(plan: Plan) -> list[str]:
    """Every setting of the plan that weakens a check apply would otherwise make (shown in red)."""
    out: list[str] = []
    if plan.allow_unavailable:
        out.append(f"{WARNING} --allow-unavailable: brokers restart without the pre-stop min.insync.replicas "
                   "check, and partitions may reject acks=all writes while they do")
    for s in plan.steps:
        if s.unavailable:
            out.append(f"{WARNING} {s.address or s.host}: {len(s.unavailable)} partition(s) reject acks=all writes "
                       f"while this restarts ({', '.join(s.unavailable[:5])}"
                       f"{', ...' if len(s.unavailable) > 5 else ''})")
    if plan.destroy:
        out.append(f"{WARNING} this plan destroys every service of the cluster, data included")
    for s in plan.steps:
        if s.volume is not None and s.volume.format:
            out.append(f"{WARNING} --format-devices: {s.volume.device} on {s.host} is formatted (LUKS2); whatever "
                       "is on it is destroyed")
    return out


def render_text(plan: Plan) -> str:
    if plan.empty:
        return "\n".join(_confirmed(plan)) + NO_CHANGES + "\n"
    lines = [
        f"kafkaform will perform the following actions on cluster {plan.cluster!r}:",
        "",
        "Symbols: + create, ~ update in-place, - destroy",
        "",
        *(w for w in warnings(plan)),
        *([""] if warnings(plan) else []),
        *_confirmed(plan),
    ]
    for c in plan.changes:
        lines += render_change(c)
        lines.append("")
    lines.append(f"Steps ({len(plan.steps)}), in stages; the steps of one stage run in parallel:")
    gen_of = _generations(plan)
    prev = None
    for s in plan.steps:
        g = gen_of[s.id]
        if g != prev:
            lines.append(f"  stage {g + 1}:")
            prev = g
        lines.append(f"    - {s.describe()} on {s.host}")
        if s.restart_reasons:
            lines.append(f"        because: {'; '.join(r.text for r in s.restart_reasons)}")
        if s.gate is not None:
            lines.append(f"        waits for: {s.gate.text}")
        if s.availability:
            lines.append(f"        availability: {s.availability}")
        for d in s.deletions:
            lines.append(f"        deletes {d.describe()}")
    n = plan.counts()
    lines += ["", f"Plan: {n['add']} to add, {n['change']} to change, {n['destroy']} to destroy.", ""]
    return "\n".join(lines)


def _generations(plan: Plan) -> dict[str, int]:
    import networkx as nx

    out: dict[str, int] = {}
    for i, gen in enumerate(nx.topological_generations(plan.graph())):
        for n in gen:
            out[n] = i
    return out


def render_json(plan: Plan) -> dict[str, Any]:
    doc = json.loads(plan.model_dump_json())
    doc["warnings"] = [w.removeprefix(WARNING).strip() for w in warnings(plan)]
    doc["summary"] = plan.counts()
    doc["no_changes"] = plan.empty
    return doc
