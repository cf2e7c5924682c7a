"""Shared fixtures for the pure-stage unit tests (spec, diff, plan): no hosts, no network."""

from __future__ import annotations

import errno
import ipaddress
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.diff import ArtifactIds
from reconciler.spec import ClusterSpec, load_spec

REPO = Path(__file__).resolve().parents[2]
LAB_YAML = REPO / "examples" / "lab-zookeeper.yaml"  # the ZooKeeper-mode lab (unit tests of that mode)
KRAFT_LAB_YAML = REPO / "examples" / "lab.yaml"
SPECS = Path(__file__).resolve().parent / "specs"

# Artifact ids as the artifact layer names them: <name>-<version>-<sha12>.
ARTS = ArtifactIds(kafka="kafka-3.9.1-0123456789ab", zookeeper="zookeeper-3.8.4-ba9876543210")


@pytest.fixture
def lab_spec() -> ClusterSpec:
    return load_spec(LAB_YAML)


@pytest.fixture
def arts() -> ArtifactIds:
    return ARTS


@pytest.fixture(autouse=True)
def kafkaform_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Control-machine state (plan keys, journals) of unit tests lives in a temp dir, never in ~ (nor
    left in /tmp: its path is long, so an SSH socket dir would go there)."""
    from reconciler.observe.openssh import control_dir_path

    home = tmp_path_factory.mktemp("kafkaform-home")
    monkeypatch.setenv("KAFKAFORM_HOME", str(home))
    yield home
    shutil.rmtree(control_dir_path(), ignore_errors=True)


def _loopback(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str):
        return True  # (a Unix socket path in bytes)
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return True  # a Unix socket path: not the network


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Unit tests reach loopback only: a connect elsewhere (a lab address with no lab up goes out of
    the default route) is refused at once and fails the test, even when the code under test
    catches the error."""
    tried: list[str] = []

    def guard(original: Any) -> Any:
        def connect(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
                tried.append(str(address))
                raise OSError(errno.ENETUNREACH, f"unit tests reach only loopback, not {address}")
            return original(sock, address)
        return connect

    monkeypatch.setattr(socket.socket, "connect", guard(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(socket.socket.connect_ex))
    yield tried
    if tried:
        pytest.fail(f"connected beyond loopback: {sorted(set(tried))}")
