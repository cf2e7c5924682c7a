"""Listener changes on a running cluster, one safe roll at a time. Pure.

Securing a running cluster (PLAINTEXT -> SASL_SSL) is a sequence of specs, each applied as one
rolling restart; kafkaform refuses a spec that would do two of these steps in one roll, because
mid-roll the brokers would not find each other:

1. add the secure listeners (the inter-broker listener stays; security.allow_anonymous: true
   while clients still use PLAINTEXT);
2. move inter-broker traffic to a listener every running broker already serves (refused until
   they all do: a restarted broker would fetch from a listener the others do not have yet);
3. (clients move to the secure listener;) remove the PLAINTEXT listener once no broker
   replicates over it (refused while one does: the others would lose their link to it).

KRaft's controller listener (name, port, protocol) is what the quorum's voters are registered
with: it is chosen when the cluster is created, and changing it on a running cluster is refused
(rolling the controllers onto another protocol splits the quorum and fences the brokers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler import files as F
from reconciler.render.formats import parse_properties

if TYPE_CHECKING:
    from reconciler.observe.model import HostFacts, ObservedCluster
    from reconciler.spec import ClusterSpec, SpecIssue


def _running_config(facts: HostFacts, service: str) -> dict[str, str] | None:
    """The config file of a service that is running, parsed (None when it is not running)."""
    st = facts.services.get(service)
    f = facts.files.get(F.SERVICE_PATHS[service].config)
    if st is None or st.active != "active" or f is None or not f.content:
        return None
    return parse_properties(f.content)


def _listener_names(props: dict[str, str]) -> set[str]:
    return {x.split("://", 1)[0] for x in props.get("listeners", "").split(",") if "://" in x}


def listener_issues(spec: ClusterSpec, observed: ObservedCluster) -> list[SpecIssue]:
    """Refusals for listener changes one roll cannot do safely (see the module docstring)."""
    from reconciler.spec import SpecIssue

    issues: list[SpecIssue] = []
    wanted = {lst.name for lst in spec.kafka.listeners}
    target = spec.kafka.inter_broker.name
    running = {b.id: p for b in spec.brokers  # (a config without listeners, e.g. hand-edited: not judged)
               if (p := _running_config(observed.hosts[b.host], "kafka")) and _listener_names(p)}
    lacking = sorted(i for i, p in running.items() if target not in _listener_names(p))
    if lacking:
        issues.append(SpecIssue(path="kafka.inter_broker_listener", message=(
            f"broker(s) {', '.join(map(str, lacking))} do not serve {target} yet, so a broker restarted onto it "
            f"would replicate over a listener the others lack: first add {target} and keep the inter-broker "
            "listener as it is (apply), then move inter-broker traffic to it")))
    current = {name for p in running.values() if (name := p.get("inter.broker.listener.name"))}
    for name in sorted(current - wanted):
        issues.append(SpecIssue(path="kafka.listeners", message=(
            f"the brokers replicate over {name} now: move inter-broker traffic off it first (set "
            "kafka.inter_broker_listener and apply), then remove the listener")))
    if spec.kraft:
        issues += _controller_listener_issues(spec, observed)
    return issues


def _controller_listener_issues(spec: ClusterSpec, observed: ObservedCluster) -> list[SpecIssue]:
    from reconciler.spec import SpecIssue

    c = spec.kafka.controller_listener
    want = (c.name, c.port, c.protocol)
    seen: set[tuple[str, int, str]] = set()
    nodes = [(x.host, "kafka-controller") for x in spec.controllers]
    nodes += [(b.host, "kafka") for b in spec.brokers if b.controller]
    for host, service in nodes:
        props = _running_config(observed.hosts[host], service)
        if props is None:
            continue
        name = props.get("controller.listener.names", "")
        protocols = dict(x.split(":", 1) for x in props.get("listener.security.protocol.map", "").split(",")
                         if ":" in x)
        port = next((x.rsplit(":", 1)[-1] for x in props.get("listeners", "").split(",")
                     if x.startswith(f"{name}://")), "")
        if name and port.isdigit():
            seen.add((name, int(port), protocols.get(name, "PLAINTEXT")))
    changed = sorted(s for s in seen if s != want)
    if changed:
        n, p, proto = changed[0]
        return [SpecIssue(path="kafka.controller_listener", message=(
            f"the running controllers serve the quorum on {n}:{p} ({proto}); changing the controller listener "
            f"to {c.name}:{c.port} ({c.protocol}) on a running KRaft cluster is not supported (the voters are "
            "registered with it, and a roll across protocols splits the quorum)"))]
    return []
