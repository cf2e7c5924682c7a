"""The OpenSSH transport's pieces that need no host: what ssh's complaints mean to an operator,
where the master sockets live, and the options the spec decides."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from reconciler.observe import openssh
from reconciler.observe.ssh import HostUnreachable, SshSettings

S = SshSettings(user="ops", port=2222, key_file=None, known_hosts="strict", known_hosts_file="/kh",
                connect_timeout=5)


@pytest.mark.parametrize(("stderr", "reason"), [
    ("ssh: connect to host 10.0.0.9 port 2222: Connection refused\r\n", "connection refused on port 2222"),
    ("ssh: connect to host 10.0.0.9 port 2222: Connection timed out\r\n", "timed out after 5s"),
    ("Host key verification failed.\r\n", "unknown host key (known_hosts: /kh)"),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.\n",
     "host key mismatch (known_hosts: /kh)"),
    ("ops@10.0.0.9: Permission denied (publickey).\r\n", "authentication failed for ops"),
    ("ssh: Could not resolve hostname nope.invalid: Name or service not known\r\n",
     "cannot resolve host name (Name or service not known)"),
    ("ssh: connect to host 10.0.0.9 port 2222: No route to host\r\n",
     "cannot connect on port 2222: connect to host 10.0.0.9 port 2222: No route to host"),
])
def test_ssh_complaints_become_reasons(stderr: str, reason: str) -> None:
    assert openssh.reason(stderr, S) == reason


def test_sockets_live_in_a_private_dir_short_enough_for_unix_sockets(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    short = Path(tempfile.mkdtemp(prefix="kfh", dir="/tmp"))
    try:
        monkeypatch.setenv("KAFKAFORM_HOME", str(short))
        p = openssh.control_path("10.0.0.9", S)
        assert p.parent == short / "ssh" and (p.parent.stat().st_mode & 0o777) == 0o700
        assert p != openssh.control_path("10.0.0.9", SshSettings(user="root", port=2222))
    finally:
        shutil.rmtree(short)
    monkeypatch.setenv("KAFKAFORM_HOME", str(tmp_path / ("x" * 90)))
    long = openssh.control_path("10.0.0.9", S)
    try:
        assert len(str(long)) < 104 and (long.parent.stat().st_mode & 0o777) == 0o700
    finally:
        shutil.rmtree(long.parent)


def test_options_follow_the_spec_and_ignore_the_users_ssh_config(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKAFORM_HOME", str(tmp_path))
    strict = openssh._options("h", S)  # noqa: SLF001
    assert strict[:3] == ["ssh", "-F", "/dev/null"] and "StrictHostKeyChecking=yes" in strict
    assert "UserKnownHostsFile=/kh" in strict and "BatchMode=yes" in strict and "-i" not in strict
    ignore = openssh._options("h", SshSettings(known_hosts="ignore", key_file="/k"))  # noqa: SLF001
    assert "StrictHostKeyChecking=no" in ignore and "UserKnownHostsFile=/dev/null" in ignore
    assert ignore[ignore.index("-i") + 1] == "/k" and "IdentitiesOnly=yes" in ignore


def test_unreadable_key_file_is_named_before_any_connection(tmp_path: Path) -> None:
    with pytest.raises(HostUnreachable, match=f"cannot read key file {tmp_path}/none: no such file"):
        openssh.OpenSshTransport.connect("10.0.0.9", SshSettings(key_file=str(tmp_path / "none")))


def test_a_live_master_socket_is_told_from_a_stale_one(tmp_path: Path) -> None:
    """A socket someone accepts on is a live master; the file a killed master left, or none, is not."""
    live, stale = tmp_path / "live", tmp_path / "stale"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(live))
    server.listen(1)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))  # bound, never listening, then closed: the file stays, nobody accepts
    dead.close()
    try:
        assert openssh.master_listening(live)
        assert stale.exists() and not openssh.master_listening(stale)
        assert not openssh.master_listening(tmp_path / "none")
    finally:
        server.close()
