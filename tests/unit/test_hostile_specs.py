"""Hostile and careless specs: each is refused by the real command line with exit 1, a message
naming the field and the reason, no traceback, and no connection of any kind.

Every case is a valid lab-shaped spec with one edit (or raw file bytes for what YAML itself
cannot carry). Connections are made impossible for the duration (sockets, paramiko, Ansible), so
a case that reached observe would fail loudly instead of touching a host.
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import cli

BASE: dict[str, Any] = {
    "name": "hostile",
    "kafka": {"version": "3.9.1", "artifact": {"maven": True}, "config": {}},
    "zookeeper": {"nodes": [{"myid": i, "host": f"10.213.0.1{i}"} for i in (1, 2, 3)]},
    "brokers": [{"id": i, "host": f"10.213.0.1{i}"} for i in (1, 2, 3)],
}


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Edit by path: 'kafka/config/x' (dict keys), 'brokers/0/rack' (list index)."""
    parts = dotted.split("/")
    cur: Any = data
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur.setdefault(p, {})
    last = parts[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value


PWN = "; touch /tmp/kafkaform-pwned #"

# (case id, {path: value} edits, expected field path, message fragment)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # shell: a data dir lands in runtime-config.sh (ExecStartPre)
    ("zk_data_dir_shell", {"zookeeper/data_dir": "/var/lib/zookeeper" + PWN}, "zookeeper.data_dir",
     "paths may hold only letters, digits"),
    ("zk_data_dir_subshell", {"zookeeper/data_dir": "/var/lib/$(id)"}, "zookeeper.data_dir", "paths may hold only"),
    ("zk_data_dir_backtick", {"zookeeper/data_dir": "/var/lib/`id`"}, "zookeeper.data_dir", "paths may hold only"),
    # ssh options
    ("known_hosts_proxycommand", {"ssh/known_hosts_file": "/dev/null -o ProxyCommand=touch /tmp/x"},
     "ssh.known_hosts_file", "this path is passed to ssh"),
    ("key_file_option", {"ssh/key_file": "-oProxyCommand=id"}, "ssh.key_file", "this path is passed to ssh"),
    ("key_file_space", {"ssh/key_file": "/root/my key"}, "ssh.key_file", "this path is passed to ssh"),
    ("ssh_user_shell", {"ssh/user": "root; id"}, "ssh.user", "is not a login name"),
    ("ssh_user_newline", {"ssh/user": "root\n"}, "ssh.user", "is not a login name"),
    # systemd units
    ("jvm_opt_newline_execstartpre", {"kafka/jvm_opts": ["-Dx=1\nExecStartPre=+/bin/touch /tmp/x"]},
     "kafka.jvm_opts[0]", "cannot contain control characters or line breaks (found U+000A)"),
    ("jvm_opt_not_an_option", {"kafka/jvm_opts": ["/bin/sh"]}, "kafka.jvm_opts[0]", "is not a JVM option"),
    ("jvm_opt_semicolon", {"kafka/jvm_opts": [";"]}, "kafka.jvm_opts[0]", "is not a JVM option"),
    ("jvm_opt_on_error", {"kafka/jvm_opts": ["-XX:OnError=touch /tmp/x"]}, "kafka.jvm_opts[0]", "runs a shell command"),
    ("jvm_opt_on_oom", {"kafka/jvm_opts": ["-XX:OnOutOfMemoryError=kill -9 %p"]}, "kafka.jvm_opts[0]",
     "runs a shell command"),
    ("jvm_opt_javaagent", {"kafka/jvm_opts": ["-javaagent:/tmp/evil.jar"]}, "kafka.jvm_opts[0]", "loads code"),
    ("jvm_opt_classpath", {"kafka/jvm_opts": ["-cp"]}, "kafka.jvm_opts[0]", "kafkaform sets the class path"),
    ("jvm_opt_heap", {"kafka/jvm_opts": ["-Xmx8g"]}, "kafka.jvm_opts[0]", "set the heap with the heap field"),
    ("jvm_opt_carriage_return", {"kafka/jvm_opts": ["-Dx=1\r"]}, "kafka.jvm_opts[0]", "found U+000D"),
    # anchored field classes: a trailing newline must not pass
    ("heap_trailing_newline", {"kafka/heap": "512m\n"}, "kafka.heap", "is not a JVM heap size"),
    ("broker_heap_trailing_newline", {"brokers/0/heap": "1g\n"}, "brokers[0].heap", "is not a JVM heap size"),
    ("host_trailing_newline", {"brokers/0/host": "kafka1.example.com\n"}, "brokers[0].host",
     "is not an IP address or host name"),
    ("zk_host_injection", {"zookeeper/nodes/0/host": "10.213.0.11:2181,evil"}, "zookeeper.nodes[0].host",
     "is not an IP address or host name"),
    ("name_trailing_newline", {"name": "hostile\n"}, "name", "cluster names start with a letter"),
    ("version_trailing_newline", {"kafka/version": "3.9.1\n"}, "kafka.version", "is not a Kafka version"),
    ("zk_version_junk", {"zookeeper/version": "3.8.4 ; id"}, "zookeeper.version", "is not a ZooKeeper version"),
    # properties injection
    ("rack_newline", {"brokers/0/rack": "a\nbroker.id=7"}, "brokers[0].rack", "is not a rack name"),
    ("data_dir_newline", {"brokers/0/data_dirs": ["/data/kafka\nzookeeper.connect=evil:2181"]},
     "brokers[0].data_dirs[0]", "paths may hold only"),
    ("data_dir_comma", {"brokers/0/data_dirs": ["/data/a,/etc"]}, "brokers[0].data_dirs[0]", "paths may hold only"),
    ("config_value_newline", {"kafka/config/log.retention.hours": "24\nlisteners=PLAINTEXT://0.0.0.0:1"},
     "kafka.config.log.retention.hours", "found U+000A"),
    ("config_value_carriage_return", {"kafka/config/compression.type": "gzip\rlisteners=x"},
     "kafka.config.compression.type", "found U+000D"),
    ("config_value_nul", {"kafka/config/compression.type": "gzip\x00"}, "kafka.config.compression.type",
     "found U+0000"),
    ("config_value_line_separator", {"kafka/config/compression.type": "gzip\u2028x=y"},
     "kafka.config.compression.type", "found U+2028"),
    ("config_value_nan", {"kafka/config/log.cleaner.io.max.bytes.per.second": float("nan")},
     "kafka.config.log.cleaner.io.max.bytes.per.second", "is not a finite number"),
    ("config_key_with_equals", {"kafka/config/log.retention.hours=1\nx": 1}, "kafka.config",
     "is not a config key"),
    ("config_key_space", {"kafka/config/log retention": 1}, "kafka.config", "is not a config key"),
    ("zk_config_value_adds_server", {"zookeeper/config/tickTime": "2000\nserver.9=10.0.0.9:2888:3888"},
     "zookeeper.config.tickTime", "found U+000A"),
    ("zk_config_value_adds_skipacl", {"zookeeper/config/initLimit": "10\nskipACL=yes"},
     "zookeeper.config.initLimit", "found U+000A"),
    ("zk_config_server_key", {"zookeeper/config/server.9": "10.0.0.9:2888:3888"}, "zookeeper.config.server.9",
     "ensemble membership is set by zookeeper.nodes"),
    ("zk_config_skipacl", {"zookeeper/config/skipACL": "no"}, "zookeeper.config.skipACL", "set by kafkaform"),
    ("zk_config_dynamic_file", {"zookeeper/config/dynamicConfigFile": "/etc/shadow"},
     "zookeeper.config.dynamicConfigFile", "set by kafkaform"),
    ("tag_newline", {"tags": {"env": "lab\nx"}}, "tags", "is not a value for tag 'env'"),
    # paths kafkaform would chown and delete
    ("data_dir_root", {"brokers/0/data_dirs": ["/"]}, "brokers[0].data_dirs[0]", "/ is the root directory"),
    ("data_dir_etc", {"brokers/0/data_dirs": ["/etc"]}, "brokers[0].data_dirs[0]", "/etc is a system directory"),
    ("data_dir_dotdot", {"brokers/0/data_dirs": ["/var/lib/kafka/../../.."]}, "brokers[0].data_dirs[0]",
     "'.' and '..' are not allowed"),
    ("data_dir_var_lib", {"brokers/0/data_dirs": ["/var/lib"]}, "brokers[0].data_dirs[0]",
     "/var/lib is a system directory"),
    ("data_dir_inside_etc", {"brokers/0/data_dirs": ["/etc/kafka-data"]}, "brokers[0].data_dirs[0]",
     "is inside /etc, which belongs to the operating system"),
    ("data_dir_parent_of_system", {"brokers/0/data_dirs": ["/usr/local"]}, "brokers[0].data_dirs[0]",
     "/usr/local is a system directory"),
    ("data_dir_not_normalised", {"brokers/0/data_dirs": ["/data//kafka/"]}, "brokers[0].data_dirs[0]",
     "is not a normalised path"),
    ("install_dir_usr", {"kafka/install_dir": "/usr"}, "kafka.install_dir", "/usr is a system directory"),
    ("install_dir_proc", {"zookeeper/install_dir": "/proc/self"}, "zookeeper.install_dir",
     "is inside /proc, which belongs to the operating system"),
    ("data_dir_shared_with_zookeeper", {"brokers/0/data_dirs": ["/var/lib/zookeeper"]}, "brokers[0].data_dirs[0]",
     "is the same directory as zookeeper.data_dir"),
    ("data_dir_inside_install_dir", {"brokers/0/data_dirs": ["/opt/kafka/data"]}, "brokers[0].data_dirs[0]",
     "is inside kafka.install_dir (/opt/kafka)"),
    ("data_dirs_nested", {"brokers/0/data_dirs": ["/data/kafka", "/data/kafka/more"]}, "brokers[0].data_dirs[1]",
     "is inside brokers[0].data_dirs[0]"),
    # artifacts
    ("url_without_file_name", {"kafka/artifact": {"url": "https://example.com/", "sha512": "a" * 128}},
     "kafka.artifact", "url must end in the tarball's file name"),
    ("url_file_scheme", {"kafka/artifact": {"url": "file:///tmp/kafka.tgz", "sha512": "a" * 128}},
     "kafka.artifact", "file:// URLs are not supported"),
    ("url_with_space", {"kafka/artifact": {"url": "https://example.com/a b.tgz", "sha512": "a" * 128}},
     "kafka.artifact", "is not a URL kafkaform can download"),
]

# Files YAML cannot describe: (case id, bytes or None for a directory, fragment of the message)
RAW_CASES: list[tuple[str, bytes | None, str]] = [
    ("not_utf8", b"name: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 9)"),
    ("binary", b"\x7fELF\x02\x01\x01\x00" + bytes(64), "is a binary file"),
    ("duplicate_key", b"name: a\nkafka: {}\nname: b\n", "key 'name' appears twice (lines 1 and 3)"),
    ("huge", b"name: a\n" + b"# padding\n" * 120_000, "is larger than 1 MiB"),
    ("directory", None, "Is a directory"),
    ("alias_bomb", ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))).encode(),
     "expands to more than 200000 YAML nodes"),
    ("list_not_mapping", b"- name: a\n", "the spec must be a YAML mapping"),
    ("wrong_type", b"name: 7\nzookeeper: {nodes: []}\nbrokers: yes\n", "brokers: Input should be a valid tuple"),
]


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to connect anywhere is recorded and fails."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[1:2] or kwargs))
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    import ansible_runner
    import paramiko

    monkeypatch.setattr(paramiko.SSHClient, "connect", refuse)
    monkeypatch.setattr(ansible_runner, "run_async", refuse)
    return attempts


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.run(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_there_are_at_least_forty_hostile_specs() -> None:
    assert len(CASES) + len(RAW_CASES) >= 40


def test_base_spec_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "base.yaml"
    p.write_text(yaml.safe_dump(BASE))
    rc, out, err = _run(["validate", str(p)], capsys)
    assert rc == 0, err


@pytest.mark.parametrize(("edits", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_hostile_spec_refused_before_any_connection(edits: dict[str, Any], field: str, fragment: str, command: str,
                                                   tmp_path: Path, no_connections: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(BASE)
    for path, value in edits.items():
        _set(data, path, value)
    spec = tmp_path / "hostile.yaml"
    spec.write_text(yaml.safe_dump(data, allow_unicode=False))
    argv = [command, str(spec)] + (["--auto-approve"] if command == "apply" else [])
    rc, out, err = _run(argv, capsys)
    assert rc == 1, out + err
    assert f"  - {field}: " in err and fragment in err, err
    assert "Traceback" not in err + out
    assert no_connections == []


@pytest.mark.parametrize(("content", "fragment"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_unreadable_spec_refused_before_any_connection(content: bytes | None, fragment: str, tmp_path: Path,
                                                       no_connections: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    if content is None:
        spec.mkdir()
    else:
        spec.write_bytes(content)
    rc, out, err = _run(["plan", str(spec)], capsys)
    assert rc == 1, out + err
    assert fragment in err and "Traceback" not in err + out, err
    assert no_connections == []


@pytest.mark.parametrize("argv", [["plan", "--bogus", "x.yaml"], ["rebalance", "x.yaml", "--max-moves", "-1"],
                                  ["rebalance", "x.yaml", "--throttle", "fast"], ["apply"], ["nonsense"]])
def test_bad_flags_are_one_clear_error(argv: list[str], no_connections: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(argv, capsys)
    assert rc == 1 and err.startswith("Error: ") and "Traceback" not in err + out, err
    assert no_connections == []
