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

KRaft's controller listener is what the nodes reach the quorum over, and the voters announce
their controller listeners to it (KIP-853 voter endpoints). It moves the same way, in three
applies (a listener keeps its port and protocol: another one is added beside it):

1. add the new listener as `kafka.second_controller_listener`: the controllers serve both and
   announce both (each voter updates its endpoints once it runs with them);
2. swap them: the new one becomes `kafka.controller_listener` and the old one the second, so
   every node reaches the controllers over the new one (refused until every running controller
   serves it and every voter has announced it: a restarted node would not find the quorum);
3. remove the old one (refused while a running node still reaches the controllers over it).

ZooKeeper TLS (`security.zookeeper_tls`, ZooKeeper mode) goes on for a running ensemble in three
applies, the ZooKeeper documentation's no-downtime upgrade (one roll would split the ensemble:
servers on TLS and on plaintext quorum connections cannot talk; and cut the brokers off):

1. "serve": the servers serve TLS beside plaintext on their client port (`client.portUnification`)
   and quorum ports (`portUnification`); the brokers then roll onto TLS (the quorum rolls first);
2. "quorum": the servers connect to each other with TLS (`sslQuorum`), still accepting both (refused
   until every server serves TLS and every broker uses it); kafkaform's own sessions use TLS from here;
3. true: plaintext is closed. First one dynamic reconfiguration drops the plaintext client port
   from every membership line (a running server keeps listening on it: ZooKeeper only rebinds a
   client port the new line names), then the roll restarts each server TLS-only, its TLS client
   port on the same port number (`secureClientPort`). Refused until every server talks TLS to the
   others.
Turning ZooKeeper TLS off again on a running cluster is refused.
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


def _controller_names(props: dict[str, str]) -> list[str]:
    return [n.strip() for n in props.get("controller.listener.names", "").split(",") if n.strip()]


def _controller_listener_issues(spec: ClusterSpec, observed: ObservedCluster) -> list[SpecIssue]:
    """KRaft: the quorum moves to another listener in three applies (module docstring)."""
    from reconciler.spec import SpecIssue

    want = {c.name: (c.port, c.protocol) for c in spec.kafka.controller_listeners}
    primary = spec.kafka.controller_listener.name
    nodes = [(x.host, "kafka-controller", True) for x in spec.controllers]
    nodes += [(b.host, "kafka", b.controller) for b in spec.brokers]
    issues: list[SpecIssue] = []
    served_by_all: set[str] | None = None  # the controller listeners every running controller serves
    reached: set[str] = set()  # the listeners running nodes reach the controllers over now
    for host, service, controller in nodes:
        props = _running_config(observed.hosts[host], service)
        names = _controller_names(props) if props else []
        if not props or not names:
            continue
        reached.add(names[0])
        if not controller:
            continue
        protocols = dict(x.split(":", 1) for x in props.get("listener.security.protocol.map", "").split(",")
                         if ":" in x)
        ports = {x.split("://", 1)[0]: x.rsplit(":", 1)[-1] for x in props.get("listeners", "").split(",")
                 if "://" in x}
        for name in names:
            port, proto = ports.get(name, ""), protocols.get(name, "PLAINTEXT")
            if name in want and port.isdigit() and (int(port), proto) != want[name]:
                issues.append(SpecIssue(path="kafka.controller_listener", message=(
                    f"the running controllers serve {name} on port {port} ({proto}); a controller listener's "
                    f"port or protocol is not changed in place: add a listener of another name as "
                    "kafka.second_controller_listener, move the quorum onto it, then remove the old one")))
                return issues
        served_by_all = set(names) if served_by_all is None else served_by_all & set(names)
    for name in sorted(reached - set(want)):
        issues.append(SpecIssue(path="kafka.controller_listener", message=(
            f"the nodes reach the controllers over {name} now: keep it as kafka.second_controller_listener "
            f"while the quorum moves to {primary} (apply), then remove it")))
    if reached and reached != {primary}:  # the nodes move onto the controller listener in this roll
        if served_by_all is not None and primary not in served_by_all:
            issues.append(SpecIssue(path="kafka.controller_listener", message=(
                f"the running controllers do not all serve {primary} yet, so a node restarted onto it would not "
                f"reach the quorum: first add {primary} as kafka.second_controller_listener and keep the "
                "controller listener as it is (apply), then make it the controller listener")))
        q = observed.cluster.quorum
        if q is not None and not issues:
            missing = sorted(v for v in q.voter_ids if q.listeners.get(v) and primary not in q.listeners[v])
            if missing:
                issues.append(SpecIssue(path="kafka.controller_listener", message=(
                    f"voter(s) {', '.join(map(str, missing))} have not announced {primary} to the quorum yet "
                    "(a voter does so shortly after it starts serving it); plan again in a few seconds")))
    return issues


def zookeeper_tls_issues(spec: ClusterSpec, observed: ObservedCluster) -> list[SpecIssue]:
    """Refusals for a security.zookeeper_tls step one roll cannot take (see the module docstring):
    judged on the servers and brokers that run now (a new cluster has none, and starts anywhere)."""
    from reconciler.security.zookeeper import TLS_PHASES, is_true, observed_phase, tls_phase
    from reconciler.spec import SpecIssue

    if spec.kraft or spec.zookeeper is None:
        return []
    want = tls_phase(spec)
    servers = {h: observed_phase(props) for n in spec.zookeeper.nodes if (h := n.host) in observed.hosts
               and (props := _running_config(observed.hosts[h], "zookeeper")) is not None}
    brokers = {h: is_true(props, "zookeeper.ssl.client.enable")
               for b in spec.brokers if (h := b.host) in observed.hosts
               and (props := _running_config(observed.hosts[h], "kafka")) is not None}
    if not servers and not brokers:
        return []
    rank = {p: i for i, p in enumerate(TLS_PHASES)}
    word = {"off": "false", "serve": '"serve"', "quorum": '"quorum"', "on": "true"}
    path = "security.zookeeper_tls"
    behind = sorted(h for h, p in servers.items() if rank[p] < rank[want] - 1)
    ahead = sorted(h for h, p in servers.items() if rank[p] > rank[want])
    plain = sorted(h for h, tls in brokers.items() if not tls)
    if ahead:
        return [SpecIssue(path=path, message=(
            f"ZooKeeper on {', '.join(ahead)} runs with zookeeper_tls {word[servers[ahead[0]]]}; turning ZooKeeper "
            f"TLS back ({word[want]}) on a running cluster is not supported"))]
    if behind:
        step = TLS_PHASES[rank[servers[behind[0]]] + 1]
        return [SpecIssue(path=path, message=(
            f"ZooKeeper on {', '.join(behind)} runs with zookeeper_tls {word[servers[behind[0]]]}; a running "
            f"ensemble moves one step per apply (false, \"serve\", \"quorum\", true): apply {word[step]} first "
            "(one roll would split the ensemble between TLS and plaintext connections, or cut clients off)"))]
    if want in ("quorum", "on") and plain:
        return [SpecIssue(path=path, message=(
            f"the brokers on {', '.join(plain)} still reach ZooKeeper without TLS; apply zookeeper_tls \"serve\" "
            "(it rolls them onto TLS) before closing ZooKeeper's plaintext paths"))]
    if want == "off" and any(brokers.values()):
        tls = sorted(h for h, on in brokers.items() if on)
        return [SpecIssue(path=path, message=(
            f"the brokers on {', '.join(tls)} reach ZooKeeper with TLS; turning ZooKeeper TLS off on a running "
            "cluster is not supported"))]
    return []
