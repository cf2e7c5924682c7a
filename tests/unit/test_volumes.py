"""LUKS volumes (security.volumes) without lab hosts: what plan makes of each state a device can be
in, the guard on formatting, and — on real loop devices of this machine — the fact that reads a
device and the kf_luks module that formats, checks the key and (where the kernel has
device-mapper) opens and mounts the volume."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.diff import ArtifactIds, VolumeChange, diff
from reconciler.observe.model import DirDevice, HostVolumes, VolumeState
from reconciler.plan.build import KRaftIds, build_plan
from reconciler.plan.model import StepKind
from reconciler.security import material
from reconciler.spec import ClusterSpec, load_spec
from tests.unit.builders import Observed
from tests.unit.test_security import HOSTS, _base, _write, secret_dir  # noqa: F401  (fixture)

IDS = ArtifactIds(kafka="kafka-4.4.0-0123456789ab")
KEY = "volume-Key-Value-333-abcdef"
BLANK = VolumeState(state="block")
KRAFT = KRaftIds(cluster_id="kfTestClusterId0000000", initial_controllers=",".join(
    f"{100 + i}@{h}:9093:AAAAAAAAAAAAAAAAAAAAAA" for i, h in enumerate(HOSTS, 1)))


def _spec(tmp_path: Path, secret_dir: Path, **volume: Any) -> ClusterSpec:  # noqa: F811
    key = tmp_path / "volume.key"
    key.write_text(KEY + "\n")
    os.chmod(key, 0o600)
    data = _base(secret_dir)
    data["security"]["encryption_at_rest"] = "required"
    data["security"]["volumes"] = [{"host": HOSTS[0], "name": "data", "device": "/dev/vdb",
                                    "mount": "/var/lib/kafka/data", "key": {"file": str(key)}, **volume}]
    s = load_spec(_write(tmp_path, data))
    material.prepare(s)
    return s


def _observed(s: ClusterSpec, state: VolumeState | None, device_mapper: bool = True, converged: bool = False):  # noqa: ANN202
    """The cluster (bare, or as the spec wants it) with HOSTS[0]'s volume in `state`; every other
    data dir on dm-crypt, so only the volume is judged."""
    o = (Observed.converged_cluster(s, IDS) if converged else Observed.bare_cluster(s)).build()
    luks = DirDevice(fstype="ext4", stack=("crypt", "disk"))
    hosts = {}
    for h, f in o.hosts.items():
        dirs = ["/var/lib/kafka/data", "/var/lib/kafka-controller/metadata"]
        upd: dict[str, Any] = {"dir_devices": dict.fromkeys(dirs, luks)}
        if h == HOSTS[0] and state is not None:
            upd["volumes"] = HostVolumes(device_mapper=device_mapper, cryptsetup=True, volumes={"data": state})
        hosts[h] = f.model_copy(update=upd)
    return o.model_copy(update={"hosts": hosts})


def _errors(s: ClusterSpec, observed: Any) -> list[str]:
    return [str(i) for i in diff(s, observed, IDS).errors]


def test_blank_device_is_formatted_opened_and_mounted_before_anything_runs_on_its_host(
        tmp_path: Path, secret_dir: Path) -> None:  # noqa: F811
    s = _spec(tmp_path, secret_dir)
    observed = _observed(s, BLANK)
    result = diff(s, observed, IDS)
    assert result.errors == []
    [vol] = [c for c in result.changes if isinstance(c, VolumeChange)]
    assert (vol.host, vol.device, vol.mount, vol.format) == (HOSTS[0], "/dev/vdb", "/var/lib/kafka/data", True)
    assert "destroys whatever is on it" in vol.reasons[0]
    plan = build_plan(result.changes, observed, spec_path="x", spec_digest="d", format_devices=True,
                      kraft=KRAFT)
    [step] = [st for st in plan.steps if st.kind is StepKind.PREPARE_VOLUME]
    assert step.volume is not None and step.volume.format
    assert "FORMAT (LUKS2, destroys its contents)" in step.describe()
    edges = set(plan.edges)
    on_host = [st for st in plan.steps if st.host == HOSTS[0] and st.kind in (
        StepKind.INSTALL_ARTIFACT, StepKind.CONFIGURE, StepKind.FORMAT_STORAGE, StepKind.START)]
    assert len(on_host) >= 4 and all((step.id, st.id) in edges for st in on_host)  # volume first on its host
    assert not any(e[0] == step.id and plan.graph().nodes[e[1]]["step"].host != HOSTS[0] for e in edges)
    assert plan.steps[0].kind in (StepKind.PREPARE_VOLUME, StepKind.INSTALL_JAVA)  # the first generation
    from reconciler.plan.render import render_text

    assert f"--format-devices: /dev/vdb on {HOSTS[0]} is formatted (LUKS2)" in render_text(plan)
    assert KEY not in plan.model_dump_json()


def test_luks_device_is_opened_never_formatted_and_a_ready_one_plans_nothing(
        tmp_path: Path, secret_dir: Path) -> None:  # noqa: F811
    s = _spec(tmp_path, secret_dir)
    closed = VolumeState(state="block", signature="crypto_LUKS", uuid="u-1")
    [vol] = [c for c in diff(s, _observed(s, closed), IDS).changes if isinstance(c, VolumeChange)]
    assert not vol.format and vol.reasons == ("open it; mount it at /var/lib/kafka/data",)
    ready = VolumeState(state="block", signature="crypto_LUKS", uuid="u-1", open=True,
                        mounted_at="/var/lib/kafka/data", mount_has_files=True)
    converged = _observed(s, ready, converged=True)
    assert diff(s, converged, IDS).changes == [] and _errors(s, converged) == []
    # open but not mounted: mounted only (a host rebooted with crypttab but without the fstab entry)
    opened = ready.model_copy(update={"mounted_at": None, "mount_has_files": False})
    [vol] = [c for c in diff(s, _observed(s, opened), IDS).changes if isinstance(c, VolumeChange)]
    assert vol.reasons == ("mount it at /var/lib/kafka/data",)


@pytest.mark.parametrize(("state", "dm", "fragment"), [
    (VolumeState(state="missing"), True, "/dev/vdb on 10.213.0.11 does not exist"),
    (VolumeState(state="notblock"), True, "is not a block device"),
    (VolumeState(state="block", signature="ext4", uuid="x"), True,
     "holds a ext4 signature; kafkaform makes a LUKS volume only on a device with nothing on it. If what is on it "
     "may be destroyed, wipe it yourself (wipefs -a /dev/vdb)"),
    (VolumeState(state="block", partition_table="gpt"), True, "holds a gpt partition table"),
    (VolumeState(state="block", device_mounted_at="/mnt"), True, "is mounted at /mnt itself"),
    (VolumeState(state="block", mount_has_files=True), True,
     "/var/lib/kafka/data on 10.213.0.11 already holds files, which mounting the volume there would hide"),
    (VolumeState(state="block", signature="crypto_LUKS", open=True, mounted_at="/srv/x"), True,
     "is open and mounted at /srv/x, not at /var/lib/kafka/data"),
    (BLANK, False, "10.213.0.11's kernel has no device-mapper (/proc/misc does not list it)"),
    (None, True, "/dev/vdb on 10.213.0.11 could not be checked"),
])
def test_a_volume_that_cannot_be_made_ready_is_refused_naming_field_and_host(
        state: VolumeState | None, dm: bool, fragment: str, tmp_path: Path, secret_dir: Path) -> None:  # noqa: F811
    s = _spec(tmp_path, secret_dir)
    errors = _errors(s, _observed(s, state, device_mapper=dm))
    assert len(errors) == 1 and errors[0].startswith("security.volumes[0]: ") and fragment in errors[0], errors


def test_formatting_needs_format_devices_on_plan_and_in_a_saved_plan(tmp_path: Path, secret_dir: Path) -> None:  # noqa: F811
    from reconciler import pipeline
    from reconciler.plan import planfile

    s = _spec(tmp_path, secret_dir)
    result = diff(s, _observed(s, BLANK), IDS)
    from reconciler.security.at_rest import formats

    assert formats(result.changes) == [f"/dev/vdb on {HOSTS[0]}"]
    # the pipeline's refusal (without the flag)
    arts = type("Arts", (), {"ids": IDS})()
    with pytest.raises(pipeline.PlanRefused) as e:
        pipeline.make_plan(s, str(tmp_path / "spec.yaml"), _observed(s, BLANK), arts)  # type: ignore[arg-type]
    assert [str(i) for i in e.value.issues] == [
        f"security.volumes: this plan would format /dev/vdb on {HOSTS[0]} (LUKS2), destroying whatever is on it: "
        "pass --format-devices to plan (and apply) to allow it"]
    # a plan claiming a format step without having been made with the flag is refused as damaged
    plan = build_plan(result.changes, _observed(s, BLANK), spec_path="x", spec_digest="d", format_devices=True,
                      kraft=KRAFT)
    planfile.check_graph(plan)
    with pytest.raises(planfile.PlanFileError, match="not made with --format-devices"):
        planfile.check_graph(plan.model_copy(update={"format_devices": False}))


# --- on real loop devices of this machine -----------------------------------------------------------

def _need_loop_and_cryptsetup() -> None:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.fail("these tests need root and loop devices (the CI machine has both)")
    if shutil.which("cryptsetup") is None or shutil.which("blkid") is None:
        pytest.fail("cryptsetup and blkid are needed: apt install cryptsetup-bin (.ci/run installs it)")


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[Any]:
    """Make loop devices over files in tmp_path; every one is detached afterwards, even on failure."""
    _need_loop_and_cryptsetup()
    made: list[str] = []

    def make(name: str, mib: int = 24) -> str:
        img = tmp_path / f"{name}.img"
        with open(img, "wb") as f:
            f.truncate(mib * 2**20)
        dev = subprocess.run(["losetup", "-f", "--show", str(img)], check=True, capture_output=True,
                             text=True).stdout.strip()
        made.append(dev)
        return dev

    yield make
    for dev in made:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def _luks_format(dev: str, key: str = KEY) -> None:
    subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--key-file=-", dev], input=key.encode(), check=True,
                   capture_output=True)


def test_the_volumes_fact_reads_real_devices(tmp_path: Path, loops: Any) -> None:
    from reconciler.observe.facts import volumes

    blank, ext4, luks = loops("blank"), loops("ext4"), loops("luks")
    subprocess.run(["mkfs.ext4", "-q", "-F", ext4], check=True, capture_output=True)
    _luks_format(luks)
    mounts = {n: tmp_path / f"m-{n}" for n in ("a", "b", "c", "d", "e")}
    for m in mounts.values():
        m.mkdir()
    (mounts["b"] / "segment.log").write_text("data")
    (tmp_path / "plain-file").write_text("x")
    vols = [("a", blank, str(mounts["a"])), ("b", ext4, str(mounts["b"])), ("c", luks, str(mounts["c"])),
            ("d", "/dev/kafkaform-test-none", str(mounts["d"])), ("e", str(tmp_path / "plain-file"), str(mounts["e"]))]
    cp = subprocess.run(["sh", "-c", volumes.command(vols)], capture_output=True, text=True, timeout=60)
    facts = volumes.parse(cp.stdout)
    assert facts.device_mapper == (" device-mapper\n" in Path("/proc/misc").read_text()) and facts.cryptsetup
    v = facts.volumes
    assert v["a"].blank and not v["a"].mount_has_files
    assert v["b"].signature == "ext4" and not v["b"].blank and v["b"].mount_has_files
    assert v["c"].luks and v["c"].uuid and not v["c"].open
    assert v["d"].state == "missing" and v["e"].state == "notblock"
    assert volumes.command([]) == ":"


def _module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """kf_luks with its host paths moved under tmp_path, run with a stand-in for AnsibleModule
    that runs commands for real (argument lists, stdin data as Ansible passes it)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "playbooks" / "library" / "kf_luks.py"
    spec = importlib.util.spec_from_file_location("kf_luks_under_test", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    etc = tmp_path / "etc"
    etc.mkdir()
    monkeypatch.setattr(mod, "KEY_DIR", str(etc / "kafkaform" / "luks"))
    monkeypatch.setattr(mod, "CRYPTTAB", str(etc / "crypttab"))
    monkeypatch.setattr(mod, "FSTAB", str(etc / "fstab"))
    return mod


class _Runner:
    def run_command(self, argv: list[str], data: bytes | None = None,
                    binary_data: bool = False) -> tuple[int, str, str]:
        cp = subprocess.run(argv, input=data if binary_data else (data + b"\n" if data else None),
                            capture_output=True, timeout=120)
        return cp.returncode, cp.stdout.decode(), cp.stderr.decode()


def _vol(dev: str, mount: Path, key: str = KEY, fmt: bool = True) -> dict[str, Any]:
    return {"name": "data", "device": dev, "mount": str(mount), "filesystem": "ext4", "format": fmt,
            "key_b64": base64.b64encode(key.encode()).decode()}


def test_kf_luks_formats_only_a_blank_device_and_keeps_an_existing_volume(
        tmp_path: Path, loops: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _module(monkeypatch, tmp_path)
    run = _Runner()
    mount = tmp_path / "data"
    dev = loops("disk")
    dm = mod._device_mapper()
    try:
        # a blank device the plan does not format: refused, untouched
        with pytest.raises(mod.Refused, match="is blank, but the plan does not format it"):
            mod._volume(run, _vol(dev, mount, fmt=False))
        assert subprocess.run(["blkid", "-p", dev], capture_output=True).returncode == 2
        # formatted with the key; where the kernel has no device-mapper it stops before opening
        if dm:
            done = mod._volume(run, _vol(dev, mount))["done"]
            assert done[:2] == ["formatted", "key file written"] and "mounted" in done
        else:
            with pytest.raises(mod.Refused, match="no device-mapper .* holds the LUKS volume and its key is set"):
                mod._volume(run, _vol(dev, mount))
        probe = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", dev], capture_output=True, text=True)
        uuid = probe.stdout.strip()
        assert uuid
        assert subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file=-", dev],
                              input=KEY.encode(), capture_output=True).returncode == 0  # the spec's key opens it
        keyfile = Path(mod.KEY_DIR) / "data.key"
        assert keyfile.read_text() == KEY and oct(keyfile.stat().st_mode & 0o777) == "0o400"
        assert oct(Path(mod.KEY_DIR).stat().st_mode & 0o777) == "0o700"
        assert Path(mod.CRYPTTAB).read_text() == f"kafkaform-data UUID={uuid} {keyfile} luks,nofail\n"
        # run again (a resumed apply): never formatted twice
        if not dm:
            with pytest.raises(mod.Refused, match="no device-mapper"):
                mod._volume(run, _vol(dev, mount))
            assert subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", dev], capture_output=True,
                                  text=True).stdout.strip() == uuid
        # another key than the volume's: refused, nothing rewritten
        with pytest.raises(mod.Refused, match="opens no key slot"):
            mod._volume(run, _vol(dev, mount, key="another-Key-Value-444-xyz"))
        assert keyfile.read_text() == KEY
    finally:
        if dm:
            subprocess.run(["umount", str(mount)], capture_output=True)
            subprocess.run(["cryptsetup", "close", "kafkaform-data"], capture_output=True)


def test_kf_luks_never_formats_a_device_that_holds_something(
        tmp_path: Path, loops: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last guard, on the host at apply time: the plan saw the device blank, but it holds a
    filesystem now (a stale plan, a disk swapped): refused, its data untouched."""
    mod = _module(monkeypatch, tmp_path)
    dev = loops("used")
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    with pytest.raises(mod.Refused, match="holds ext4 now .* not formatting it"):
        mod._volume(_Runner(), _vol(dev, tmp_path / "data"))
    assert subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", dev], capture_output=True,
                          text=True).stdout.strip() == "ext4"
    assert not Path(mod.KEY_DIR).exists()


def test_kf_luks_keeps_other_lines_of_crypttab_and_fstab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own line is replaced where it stands; a second run changes nothing; others' lines stay."""
    mod = _module(monkeypatch, tmp_path)
    tab = tmp_path / "etc" / "fstab"
    tab.write_text("# fstab\n/dev/mapper/kafkaform-data /old ext4 defaults 0 2\nUUID=x / ext4 defaults 0 1\n")
    tab.chmod(0o644)
    line = "/dev/mapper/kafkaform-data /var/lib/kafka/data ext4 defaults,nofail 0 2"
    assert mod._set_line(str(tab), "/dev/mapper/kafkaform-data", line)
    assert tab.read_text() == f"# fstab\n{line}\nUUID=x / ext4 defaults 0 1\n"
    assert not mod._set_line(str(tab), "/dev/mapper/kafkaform-data", line)
    assert oct(tab.stat().st_mode & 0o777) == "0o644"
