"""collect() with in-memory transports: fan-out, unreachable hosts as data, fingerprint stability."""

from __future__ import annotations

import base64
import hashlib

import pytest

from reconciler.observe.collect import HostTarget, collect
from reconciler.observe.script import render_output
from reconciler.observe.ssh import CommandResult, CommandTimeout, FakeTransport, HostUnreachable, SshSettings

PROPS = "/etc/kafka/server.properties"


def _file_line(path: str, content: str) -> str:
    raw = content.encode()
    return f"file {hashlib.sha256(raw).hexdigest()} b64:{base64.b64encode(raw).decode()} {path}\n"


def _outputs(broker_id: int, props: str | None = None) -> dict[str, str]:
    props = props if props is not None else f"broker.id={broker_id}\n"
    return {
        "os": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
        "java": 'openjdk version "17.0.15" 2025-04-15\n',
        "memory": "MemTotal:        2000000 kB\n",
        "cpus": "2\n",
        "artifacts": "",
        "files": _file_line(PROPS, props),
        "services": "unit zookeeper\nMainPID=0\nActiveState=inactive\nUnitFileState=\nActiveEnterTimestamp=\n"
        "unit kafka\nMainPID=321\nActiveState=active\nUnitFileState=enabled\nActiveEnterTimestamp=x\n",
        "dir_usage": "",
        "dir_devices": "",
        "volumes": "",
    }


def _factory(per_host: dict[str, dict[str, str] | str]):
    """Host -> section outputs, or a string = the reason that host is unreachable."""

    def connect(host: str, ssh: SshSettings) -> FakeTransport:
        spec = per_host[host]
        if isinstance(spec, str):
            raise HostUnreachable(host, spec)
        return FakeTransport(lambda cmd: CommandResult(0, render_output(cmd, spec), ""))

    return connect


TARGETS = [HostTarget(host=h, files=(PROPS,)) for h in ("kf1", "kf2", "kf3")]


def _observe(per_host, progress=None):
    return collect(
        "demo", TARGETS, SshSettings(), [], transport_factory=_factory(per_host), progress=progress
    )


def test_unreachable_host_is_data_with_host_and_reason() -> None:
    seen: list[tuple[str, str]] = []
    obs = _observe(
        {"kf1": _outputs(1), "kf2": "connection refused on port 22", "kf3": _outputs(3)},
        progress=lambda h, s: seen.append((h, s)),
    )
    assert list(obs.hosts) == ["kf1", "kf2", "kf3"]
    assert obs.unreachable() == {"kf2": "kf2: connection refused on port 22"}
    assert sorted(seen) == [
        ("kf1", "ok"),
        ("kf2", "unreachable: connection refused on port 22"),
        ("kf3", "ok"),
    ]
    kf1 = obs.hosts["kf1"]
    assert kf1.reachable and kf1.java_version == "17.0.15" and kf1.mem_total_bytes == 2_048_000_000
    assert kf1.services["kafka"].pid == 321 and not kf1.services["zookeeper"].enabled
    assert kf1.files[PROPS].content == "broker.id=1\n"
    assert obs.observed_at.endswith("+00:00") and obs.duration_s >= 0


def test_fingerprint_stable_and_tracks_file_hashes() -> None:
    hosts = {"kf1": _outputs(1), "kf2": "timed out after 5s", "kf3": _outputs(3)}
    a, b = _observe(hosts), _observe(hosts)
    assert a.observed_at and a.fingerprint() == b.fingerprint()
    changed = _observe({**hosts, "kf3": _outputs(3, props="broker.id=3\nnum.io.threads=16\n")})
    assert changed.fingerprint() != a.fingerprint()


def test_broken_or_slow_hosts_never_raise() -> None:
    def connect(host: str, ssh: SshSettings) -> FakeTransport:
        if host == "kf1":
            return FakeTransport(lambda cmd: CommandResult(0, "garbage\n", "sh: 1: oops\n"))
        if host == "kf2":

            def slow(cmd: str) -> CommandResult:
                raise CommandTimeout(host, "command timed out after 60s")

            return FakeTransport(slow)
        raise RuntimeError("factory bug")

    obs = collect("demo", TARGETS, SshSettings(), [], transport_factory=connect)
    errs = obs.unreachable()
    assert errs["kf1"].startswith("kf1: fact os: no output for fact os") and "oops" in errs["kf1"]
    assert errs["kf2"] == "kf2: command timed out after 60s"
    assert errs["kf3"] == "kf3: RuntimeError: factory bug"


def test_one_connection_and_one_command_per_host() -> None:
    made: list[FakeTransport] = []

    def connect(host: str, ssh: SshSettings) -> FakeTransport:
        t = FakeTransport(lambda cmd: CommandResult(0, render_output(cmd, _outputs(1)), ""))
        made.append(t)
        return t

    collect("demo", TARGETS, SshSettings(), [], transport_factory=connect)
    assert len(made) == 3 and all(len(t.commands) == 1 and t.closed for t in made)


def test_duplicate_host_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="kf1"):
        collect("demo", [TARGETS[0], TARGETS[0]], SshSettings(), [], transport_factory=_factory({}))


def test_cluster_state_with_nothing_listening_is_fast_and_reports() -> None:
    """ZooKeeper on a closed loopback port: reported, not raised, and Kafka not even tried."""
    obs = collect(
        "demo", [], SshSettings(), ["127.0.0.1:1"], transport_factory=_factory({}), cluster_timeout=1.0
    )
    c = obs.cluster
    assert not c.zookeeper_reachable and c.zookeeper_error
    assert c.zookeeper_modes == {"127.0.0.1": "down"}
    assert not c.kafka_reachable and c.kafka_error == "not tried: ZooKeeper unreachable"
    assert obs.duration_s < 5


def test_a_login_other_than_root_reads_facts_through_sudo() -> None:
    made: list[FakeTransport] = []

    def connect(host: str, ssh: SshSettings) -> FakeTransport:
        t = FakeTransport(lambda cmd: CommandResult(0, render_output(cmd, _outputs(1)), ""))
        made.append(t)
        return t

    obs = collect("demo", TARGETS[:1], SshSettings(user="deploy"), [], transport_factory=connect)
    assert not obs.unreachable()
    assert made[0].commands[0].startswith("sudo -n sh -c ")
    collect("demo", TARGETS[:1], SshSettings(user="root"), [], transport_factory=connect)
    assert made[1].commands[0].startswith("sh -c ")


def test_ansible_becomes_root_for_other_logins() -> None:
    from reconciler.apply.inventory import inventory
    from reconciler.spec import load_spec
    from tests.unit.conftest import LAB_YAML

    spec = load_spec(LAB_YAML)
    assert inventory(spec, {})["all"]["vars"]["ansible_become"] is False
    other = spec.model_copy(update={"ssh": spec.ssh.model_copy(update={"user": "deploy"})})
    assert inventory(other, {})["all"]["vars"]["ansible_become"] is True
