"""Integration tests for reconciler.lab: real systemd-nspawn hosts on this machine (needs root).

The lab's network names (bridge kflab0, netns kf*) are machine-wide, so these tests assume no other lab
is up; they run in their own KAFKAFORM_LAB_DIR and share the cached base rootfs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from reconciler import lab
from reconciler.lab import hosts as lab_hosts

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="lab hosts need root (netns, overlay mounts, systemd-nspawn)"
    ),
]


def lab_traces(lab_dir: Path) -> list[str]:
    """Everything a lab could leave behind on the control machine, as readable strings."""
    out: list[str] = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    out += [f"netns {line.split()[0]}" for line in ns if line.startswith("kf")]
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    out += [
        f"link {link['ifname']}"
        for link in links
        if link["ifname"] == lab.BRIDGE
        or (link["ifname"].startswith("kf") and link["ifname"].endswith("-br"))
    ]
    prefix = str(lab_dir) + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4]
        source = line.split(" - ")[1].split()[1]
        if mp.startswith(prefix) or source == "kflab":
            out.append(f"mount {mp}")
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                argv0 = (p / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if argv0.endswith(b"systemd-nspawn"):
                out.append(f"nspawn pid {p.name}")
    out += [f"cgroup {d}" for d in Path("/sys/fs/cgroup").glob("*/kflab")]
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True).stdout
    out += [f"loop {line}" for line in loops.splitlines() if prefix in line]
    out += [f"dir {d}" for d in lab_dir.glob("kf*")]
    return out


@pytest.fixture(scope="module")
def lab_env(tmp_path_factory: pytest.TempPathFactory):
    """An isolated lab dir (the base rootfs cache is shared); leftovers of a crashed run are removed."""
    d = tmp_path_factory.mktemp("lab")
    old = os.environ.get("KAFKAFORM_LAB_DIR")
    os.environ["KAFKAFORM_LAB_DIR"] = str(d)
    lab.down()
    yield d
    lab.down()
    if old is None:
        os.environ.pop("KAFKAFORM_LAB_DIR", None)
    else:
        os.environ["KAFKAFORM_LAB_DIR"] = old


@pytest.fixture(scope="module")
def lab2(lab_env: Path) -> lab.LabState:
    """Two hosts, made under a hardened umask (077): the hosts must not inherit it."""
    lines: list[str] = []
    old = os.umask(0o077)
    try:
        state = lab.up(2, progress=lines.append)
    finally:
        os.umask(old)
    print("\n".join(lines))
    return state


def ssh(host: lab.LabHost, cmd: str, timeout: float = 30) -> tuple[int, str]:
    """Run *cmd* over SSH with strict host-key checking against the lab's known_hosts."""
    c = paramiko.SSHClient()
    c.load_host_keys(str(lab.known_hosts_path()))
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(
        host.address,
        username="root",
        key_filename=str(lab.key_path()),
        timeout=10,
        allow_agent=False,
        look_for_keys=False,
    )
    try:
        _, out, err = c.exec_command(cmd, timeout=timeout)
        rc = out.channel.recv_exit_status()
        return rc, out.read().decode() + err.read().decode()
    finally:
        c.close()


def test_up_two_hosts_reachable_with_own_identity(lab2: lab.LabState) -> None:
    assert [h.name for h in lab2.hosts] == ["kf1", "kf2"]
    assert [h.address for h in lab2.hosts] == ["10.213.0.11", "10.213.0.12"]
    st = lab.status()
    assert st is not None and all(h.running for h in st.hosts)
    idents = []
    for h in lab2.hosts:
        rc, name = ssh(h, "hostname")
        assert rc == 0 and name.strip() == h.name
        _, mid = ssh(h, "cat /etc/machine-id")
        _, hostkey = ssh(h, "cat /etc/ssh/ssh_host_ed25519_key.pub")
        idents.append((mid.strip(), hostkey.split()[1]))
        rc, sysstate = ssh(h, "timeout 30 systemctl is-system-running --wait")
        sysstate = sysstate.strip().splitlines()[-1]
        if sysstate == "degraded":
            _, failed = ssh(h, "systemctl --failed --no-legend --plain")
            print(f"{h.name} degraded; failed units:\n{failed}")
        assert sysstate in ("running", "degraded"), sysstate
        # an unprivileged service user can enter / and read /etc (a 0700 / stops every non-root service)
        rc, out = ssh(h, "stat -c %a / /etc /var && setpriv --reuid=65534 --regid=65534 --clear-groups "
                         "sh -c 'cd / && cat /etc/hostname'")
        assert rc == 0 and out.split() == ["755", "755", "755", h.name], out
        _, hosts = ssh(h, "getent hosts kf1 kf2")
        assert "10.213.0.11" in hosts and "10.213.0.12" in hosts
        # no DNS server and no default route: nothing a host does can leave the lab network
        rc, routes = ssh(h, "ip -4 route")
        assert "default" not in routes and "10.213.0.0/24" in routes
        t0 = time.monotonic()
        rc, _ = ssh(h, "getent hosts nonexistent.example")
        assert rc != 0 and time.monotonic() - t0 < 3
    assert len({m for m, _ in idents}) == 2 and all(len(m) == 32 for m, _ in idents)
    assert len({k for _, k in idents}) == 2
    # hosts reach each other across the bridge (ZooKeeper/Kafka need it)
    rc, out = ssh(lab2.hosts[0], "python3 -c \"import socket; socket.create_connection(('kf2', 22), 5)\"")
    assert rc == 0, out


def test_exec_in(lab2: lab.LabState) -> None:
    cp = lab.exec_in("kf1", ["hostname"])
    assert cp.returncode == 0 and cp.stdout.strip() == "kf1"
    cp = lab.exec_in("kf1", ["sh", "-c", "cat /etc/hostname; echo $$ > /dev/null; ls /opt"])
    assert cp.stdout.splitlines()[0] == "kf1"
    # stopping sshd from inside takes the host off SSH; starting it brings it back
    lab.exec_in("kf2", ["systemctl", "stop", "ssh"], check=True)
    with pytest.raises((OSError, paramiko.SSHException)):
        ssh(lab2.hosts[1], "true")
    lab.exec_in("kf2", ["systemctl", "start", "ssh"], check=True)
    assert ssh(lab2.hosts[1], "true")[0] == 0
    with pytest.raises(lab.LabError, match="no lab host named 'kf9'"):
        lab.exec_in("kf9", ["true"])


def test_stop_start_keeps_disk(lab2: lab.LabState) -> None:
    h = lab2.hosts[1]
    assert ssh(h, "echo persisted > /root/disk.txt && sync")[0] == 0
    _, mid_before = ssh(h, "cat /etc/machine-id")
    t0 = time.monotonic()
    lab.stop_host(h.name)
    print(f"stop_host {time.monotonic() - t0:.1f} s")
    st = lab.status()
    assert st is not None and not st.host(h.name).running and st.host("kf1").running
    with pytest.raises(lab.LabError, match="not running"):
        lab.exec_in(h.name, ["true"])
    t0 = time.monotonic()
    lab.start_host(h.name)
    print(f"start_host {time.monotonic() - t0:.1f} s")
    rc, out = ssh(h, "cat /root/disk.txt; cat /etc/machine-id")
    assert rc == 0 and out.split() == ["persisted", mid_before.strip()]


def test_up_refuses_other_count_and_is_idempotent(lab2: lab.LabState) -> None:
    with pytest.raises(lab.LabError, match="already exists"):
        lab.up(3)
    lab.stop_host("kf1")
    st = lab.up(2)  # same count: starts the missing host, keeps the running one
    assert all(h.running for h in st.hosts)
    assert ssh(st.host("kf1"), "hostname")[1].strip() == "kf1"


def test_down_removes_everything(lab2: lab.LabState, lab_env: Path) -> None:
    lab.exec_in("kf1", ["systemd-run", "--unit=hang", "sleep", "infinity"], check=True)
    t0 = time.monotonic()
    lab.down()
    print(f"down {time.monotonic() - t0:.1f} s")
    assert lab_traces(lab_env) == []
    assert lab.status() is None
    assert not lab.known_hosts_path().exists()
    lab.down()  # safe twice
    assert lab_traces(lab_env) == []


def test_down_cleans_half_made_lab(lab_env: Path) -> None:
    """A crash between creating objects and writing state.json: netns + veth + bridge + dir + cgroup."""
    lab.down()
    (lab_env / "kf1" / "upper").mkdir(parents=True)
    (lab_env / "kf3" / "work").mkdir(parents=True)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", "kf1")
    run("ip", "netns", "add", "kf2")
    run("ip", "link", "add", "kflab0", "type", "bridge")
    run("ip", "link", "add", "kf1-br", "type", "veth", "peer", "name", "eth0", "netns", "kf1")
    run("ip", "link", "set", "kf1-br", "master", "kflab0")
    for hier in ("systemd", "unified"):
        Path(f"/sys/fs/cgroup/{hier}/kflab/kf1").mkdir(parents=True)
    assert lab_traces(lab_env)
    assert lab.status() is None
    lab.down()
    assert lab_traces(lab_env) == []


def test_up_rejects_bad_count(lab_env: Path) -> None:
    with pytest.raises(lab.LabError, match="1..60"):
        lab.up(0)
    with pytest.raises(lab.LabError, match="1..60"):
        lab.up(61)


def test_up_failure_names_host_and_tears_down(lab_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.down()
    monkeypatch.setattr(lab_hosts, "SSH_TIMEOUT_S", 0.0)  # read by hosts._wait_ssh
    with pytest.raises(lab.LabError, match=r"lab host kf1 \(10\.213\.0\.11\) did not accept SSH"):
        lab.up(1)
    assert lab_traces(lab_env) == []
    assert lab.status() is None
