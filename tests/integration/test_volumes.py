"""Encryption at rest with LUKS volumes kafkaform makes (security.volumes), on a real lab host that
has a real block device: the lab gives the host a blank loop device at the spec's path (/dev/vdb).

The lab's kernel has no device-mapper, so no LUKS volume can be opened here: what runs for real is
observe reading the device over SSH, plan's refusals (with the exact reason, no host touched), and
the volume step's Ansible run (kf_luks through ansible-runner, as apply runs it) up to the open:
the blank device is formatted with the spec's key, the key file and crypttab are written, the run
fails naming device-mapper, a rerun never formats again, and the key appears nowhere but its file.
Opening, the filesystem and the mount run in the unit tests only where the kernel has
device-mapper (README: what was not run here and why).
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import KRAFT_LAB_SPEC, Cli, lab_for

KEY = "luks-Key-Planted-7c1e9a55f0"
HOST = "10.213.0.11"


@pytest.fixture(scope="module")
def vol_spec(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("volumes")
    key = d / "vol.key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    data = yaml.safe_load(KRAFT_LAB_SPEC.read_text())
    data["name"] = "vol"
    data["security"] = {"allow_anonymous": True, "encryption_at_rest": "required", "volumes": [
        {"host": HOST, "name": "data", "device": "/dev/vdb", "mount": "/var/lib/kafka/data",
         "key": {"file": str(key)}}]}
    spec = d / "vol.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    with lab_for(cli, spec, "vol"):
        yield spec


def _on_host(*argv: str) -> subprocess.CompletedProcess[str]:
    from reconciler import lab

    return subprocess.run(["ssh", "-i", str(lab.key_path()), "-o", f"UserKnownHostsFile={lab.known_hosts_path()}",
                           "-o", "StrictHostKeyChecking=yes", f"root@{HOST}", *argv],
                          capture_output=True, text=True, timeout=120)


def _signature() -> str:
    return _on_host("blkid", "-p", "-o", "value", "-s", "TYPE", "/dev/vdb").stdout.strip()


def _volume_run(spec_path: Path, fmt: bool) -> tuple[bool, str, list[str]]:
    """The volume step's Ansible run exactly as apply makes it (inventory, host vars, kf_luks)."""
    from reconciler import artifacts
    from reconciler.apply.executor import PLAYBOOK, _group_inventory
    from reconciler.apply.inventory import host_vars, inventory
    from reconciler.apply.runner import StepRun
    from reconciler.plan.model import Step, StepKind, VolumeWork
    from reconciler.security import material
    from reconciler.spec import load_spec

    s = load_spec(spec_path)
    material.prepare(s)
    arts = artifacts.resolve_for_spec(s)
    step = Step(id=f"prepare_volume:data@{HOST}", kind=StepKind.PREPARE_VOLUME, host=HOST, address="volume.x",
                volume=VolumeWork(name="data", device="/dev/vdb", mount="/var/lib/kafka/data", filesystem="ext4",
                                  format=fmt))
    inv = _group_inventory(inventory(s, host_vars(s, arts.kafka, None)), [step], s, arts.kafka)
    tasks: list[str] = []
    res = StepRun(PLAYBOOK[StepKind.PREPARE_VOLUME], inv, [HOST], None,
                  lambda *a: tasks.append(" ".join(map(str, a)))).go().finish()[HOST]
    return res.ok, res.message or "", tasks


def test_luks_volume_on_a_real_block_device_of_a_lab_host(vol_spec: Path, cli: Cli) -> None:
    from reconciler import lab

    outputs: list[str] = []

    def kf(*args: str) -> subprocess.CompletedProcess[str]:
        p = cli(*args)
        outputs.extend([p.stdout, p.stderr])
        return p

    # the lab host has the device, blank
    assert _on_host("test", "-b", "/dev/vdb").returncode == 0 and _signature() == ""
    # plan reads it over SSH and refuses, naming the volume, the host and why: no device-mapper here
    p = kf("plan", str(vol_spec), "--format-devices", "--json")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    issues = {i["path"]: i["message"] for i in yaml.safe_load(p.stdout)["issues"]}
    assert issues["security.volumes[0]"] == (f"{HOST}'s kernel has no device-mapper (/proc/misc does not list it), so "
                                             "a LUKS volume cannot be opened there (load dm_crypt, or drop the volume)")
    assert _signature() == "" and _on_host("test", "-e", "/etc/kafkaform/luks").returncode == 1  # nothing touched

    # the volume step's run as apply makes it: the blank device is formatted with the spec's key, and
    # the run stops at the open with the reason, naming the host
    ok, message, tasks = _volume_run(vol_spec, fmt=True)
    outputs += [message, *tasks]
    assert not ok and "volume data: this host's kernel has no device-mapper" in message, message
    assert _signature() == "crypto_LUKS"
    uuid = _on_host("blkid", "-p", "-o", "value", "-s", "UUID", "/dev/vdb").stdout.strip()
    opens = subprocess.run(["ssh", "-i", str(lab.key_path()), "-o", f"UserKnownHostsFile={lab.known_hosts_path()}",
                            f"root@{HOST}", "cryptsetup", "open", "--test-passphrase", "--key-file=-", "/dev/vdb"],
                           input=KEY, capture_output=True, text=True, timeout=120)
    assert opens.returncode == 0, opens.stderr  # the spec's key opens it
    st = _on_host("stat", "-c", "%a:%U", "/etc/kafkaform/luks/data.key", "/etc/kafkaform/luks")
    assert st.stdout.split() == ["400:root", "700:root"], st.stdout
    assert _on_host("cat", "/etc/crypttab").stdout.strip().endswith(
        f"kafkaform-data UUID={uuid} /etc/kafkaform/luks/data.key luks,nofail")

    d = yaml.safe_load(kf("describe-cluster", str(vol_spec), "--json").stdout)
    assert d["EncryptionAtRest"]["Volumes"] == [
        {"Host": HOST, "Name": "data", "Device": "/dev/vdb", "Mount": "/var/lib/kafka/data",
         "State": "luks (not open or not mounted)"}]

    # a rerun (a resumed apply) never formats again; a plan now only wants it opened
    ok, message, tasks = _volume_run(vol_spec, fmt=True)
    outputs += [message, *tasks]
    assert not ok and "no device-mapper" in message
    assert _on_host("blkid", "-p", "-o", "value", "-s", "UUID", "/dev/vdb").stdout.strip() == uuid
    p = kf("plan", str(vol_spec))  # no --format-devices needed: nothing would be formatted
    assert p.returncode == 1 and "this plan would format" not in p.stderr and "no device-mapper" in p.stderr

    # the key is nowhere but its 0400 file on the host: not in any output, kafkaform's state, the
    # host's other files
    encoded = base64.b64encode(KEY.encode()).decode()  # (as the key travels to Ansible)
    assert not any(KEY in o or encoded in o for o in outputs)
    st = lab.status()
    assert st is not None
    places = [Path(cli.env["KAFKAFORM_HOME"]), *(Path(h.upper) for h in st.hosts)]
    found = subprocess.run(["grep", "-r", "-l", "-a", "-F", "-e", KEY, "-e", encoded, *map(str, places)],
                           capture_output=True, text=True).stdout.split()
    assert found == [str(Path(st.hosts[0].upper) / "etc/kafkaform/luks/data.key")], found


def test_a_device_that_holds_a_filesystem_is_never_formatted(vol_spec: Path, cli: Cli) -> None:
    """A device with data on it: plan refuses it with how to proceed; the volume step, given a
    plan that saw it blank (stale), refuses on the host too; the filesystem stays."""
    assert _on_host("wipefs", "-a", "/dev/vdb").returncode == 0
    assert _on_host("mkfs.ext4", "-q", "-F", "/dev/vdb").returncode == 0
    uuid = _on_host("blkid", "-p", "-o", "value", "-s", "UUID", "/dev/vdb").stdout.strip()
    p = cli("plan", str(vol_spec), "--format-devices")
    assert p.returncode == 1
    assert (f"security.volumes[0]: /dev/vdb on {HOST} holds a ext4 signature; kafkaform makes a LUKS volume only on a "
            "device with nothing on it") in p.stderr
    ok, message, _ = _volume_run(vol_spec, fmt=True)
    assert not ok and "holds ext4 now (it was blank when the plan was made); not formatting it" in message
    assert _signature() == "ext4"
    assert _on_host("blkid", "-p", "-o", "value", "-s", "UUID", "/dev/vdb").stdout.strip() == uuid


def test_lab_down_detaches_the_loop_devices(vol_spec: Path) -> None:
    """Runs last in this module (the fixture's own lab down then finds nothing left)."""
    from reconciler import lab
    from reconciler.lab import disks

    st = lab.status()
    assert st is not None and st.hosts[0].disks == ["/dev/vdb"] and not st.hosts[1].disks
    lab_dir = Path(st.lab_dir)
    assert len(disks.attached(lab_dir)) == 1
    lab.down(grace=1.0)
    backing = subprocess.run(["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True, text=True).stdout
    assert str(lab_dir) not in backing and not list(lab_dir.glob("kf*"))
