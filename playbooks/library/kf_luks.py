#!/usr/bin/python3
"""Ansible module: make kafkaform's LUKS volumes ready on a host (security.volumes).

Per volume, in order, each step skipped when already done:
1. the device is probed (blkid -p, the device itself): a LUKS header is kept; a blank device is
   formatted (LUKS2) only when the plan says so (`format`, from --format-devices) and it is neither
   mounted nor held by another device; anything else on it is refused: the plan saw it blank, so
   something wrote it since, and a device with data is never formatted;
2. the key (from the spec's secret reference, base64 in `key_b64`, a no_log parameter) must open a
   key slot (`cryptsetup open --test-passphrase`), and is written to a 0400 root key file that
   /etc/crypttab names, so the volume opens again at boot;
3. the volume is opened as /dev/mapper/kafkaform-<name> (needs device-mapper in the kernel: refused
   with that reason where it is missing), given the spec's filesystem if it has none, entered in
   /etc/fstab and mounted, never over a directory that holds files.

Every command is an argument list (no shell); the key goes to cryptsetup on stdin.
"""

from __future__ import annotations

import base64
import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

KEY_DIR = "/etc/kafkaform/luks"
CRYPTTAB = "/etc/crypttab"
FSTAB = "/etc/fstab"


class Refused(Exception):
    pass


def _probe(module: AnsibleModule, dev: str) -> dict[str, str]:
    rc, out, err = module.run_command(["blkid", "-p", "-o", "export", "--", dev])
    if rc == 2:  # nothing found
        return {}
    if rc != 0:
        raise Refused(f"blkid {dev} failed: {err.strip() or out.strip()}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _in_use(module: AnsibleModule, dev: str) -> str | None:
    real = os.path.realpath(dev)
    holders = f"/sys/class/block/{os.path.basename(real)}/holders"
    if os.path.isdir(holders) and os.listdir(holders):
        return f"held by {', '.join(sorted(os.listdir(holders)))}"
    rc, out, _ = module.run_command(["findmnt", "-n", "-r", "-o", "TARGET", "-S", real])
    if rc == 0 and out.strip():
        return f"mounted at {out.split()[0]}"
    return None


def _device_mapper() -> bool:
    """Whether the kernel has device-mapper (a /dev/mapper/control node can exist without it)."""
    try:
        with open("/proc/misc") as f:
            return any(line.split()[1:] == ["device-mapper"] for line in f)
    except OSError:
        return False


def _write_atomic(path: str, data: bytes, mode: int) -> bool:
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read() == data and stat.S_IMODE(os.stat(path).st_mode) == mode:
                return False
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".kf-")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def _set_line(path: str, first_field: str, line: str) -> bool:
    """The line of `path` whose first field is `first_field` becomes `line` (added if absent)."""
    old = open(path).read().splitlines() if os.path.exists(path) else []
    new: list[str] = []
    for x in old:  # replaced where it is (other lines keep their order), once
        if x.split() and x.split()[0] == first_field:
            if line not in new:
                new.append(line)
            continue
        new.append(x)
    if line not in new:
        new.append(line)
    if new == old:
        return False
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
    return _write_atomic(path, ("\n".join(new) + "\n").encode(), mode)


def _volume(module: AnsibleModule, v: dict) -> dict:
    name, dev, mount, fs = v["name"], v["device"], v["mount"], v["filesystem"]
    key = base64.b64decode(v["key_b64"])
    mapper = f"kafkaform-{name}"
    done: list[str] = []
    try:
        mode = os.stat(dev).st_mode
    except FileNotFoundError:
        raise Refused(f"{dev} does not exist") from None
    if not stat.S_ISBLK(mode):
        raise Refused(f"{dev} is not a block device")
    found = _probe(module, dev)
    if found.get("TYPE") != "crypto_LUKS":
        if found:
            what = found.get("TYPE") or f"{found.get('PTTYPE', 'unknown')} partition table"
            raise Refused(f"{dev} holds {what} now (it was blank when the plan was made); not formatting it")
        if not v["format"]:
            raise Refused(f"{dev} is blank, but the plan does not format it; run plan again")
        busy = _in_use(module, dev)
        if busy:
            raise Refused(f"{dev} is {busy}; not formatting a device in use")
        rc, out, err = module.run_command(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
                                           "--key-file=-", dev], data=key, binary_data=True)
        if rc != 0:
            raise Refused(f"cryptsetup luksFormat {dev} failed: {err.strip() or out.strip()}")
        done.append("formatted")
        found = _probe(module, dev)
    rc, _, _ = module.run_command(["cryptsetup", "open", "--test-passphrase", "--key-file=-", dev],
                                  data=key, binary_data=True)
    if rc != 0:
        raise Refused(f"the key of volume {name} (from the spec) opens no key slot of {dev}; kafkaform does not "
                      "change a volume's key: add it yourself (cryptsetup luksAddKey) or give the old one")
    os.makedirs(KEY_DIR, mode=0o700, exist_ok=True)
    os.chmod(KEY_DIR, 0o700)
    keyfile = f"{KEY_DIR}/{name}.key"
    if _write_atomic(keyfile, key, 0o400):
        done.append("key file written")
    uuid = found.get("UUID", "")
    if _set_line(CRYPTTAB, mapper, f"{mapper} UUID={uuid} {keyfile} luks,nofail"):
        done.append("crypttab")
    if not os.path.exists(f"/dev/mapper/{mapper}"):
        if not _device_mapper():
            raise Refused(f"this host's kernel has no device-mapper (not in /proc/misc): {dev} holds the LUKS "
                          "volume and its key is set, but it cannot be opened here")
        rc, out, err = module.run_command(["cryptsetup", "open", "--type", "luks", "--key-file", keyfile, dev, mapper])
        if rc != 0:
            raise Refused(f"cryptsetup open {dev} failed: {err.strip() or out.strip()}")
        done.append("opened")
    opened = f"/dev/mapper/{mapper}"
    inner = _probe(module, opened).get("TYPE")
    if inner is None:
        argv = ["mkfs.ext4", "-q", "-L", mapper[:16], opened] if fs == "ext4" else ["mkfs.xfs", "-q", opened]
        rc, out, err = module.run_command(argv)
        if rc != 0:
            raise Refused(f"{argv[0]} {opened} failed: {err.strip() or out.strip()}")
        done.append(f"{fs} made")
    elif inner != fs:
        raise Refused(f"{opened} holds {inner}, not the spec's {fs}")
    if _set_line(FSTAB, opened, f"{opened} {mount} {fs} defaults,nofail 0 2"):
        done.append("fstab")
    rc, out, _ = module.run_command(["findmnt", "-n", "-r", "-o", "SOURCE", "--mountpoint", mount])
    if rc != 0 or not out.strip():
        os.makedirs(mount, mode=0o755, exist_ok=True)
        if os.listdir(mount):
            raise Refused(f"{mount} holds files, which mounting the volume would hide")
        rc, out, err = module.run_command(["mount", opened, mount])
        if rc != 0:
            raise Refused(f"mount {opened} {mount} failed: {err.strip() or out.strip()}")
        done.append("mounted")
    elif os.path.realpath(out.split()[0]) != os.path.realpath(opened):
        raise Refused(f"{mount} is a mount point of {out.split()[0]}, not of the volume")
    return {"name": name, "device": dev, "done": done}


def main() -> None:
    module = AnsibleModule(argument_spec={
        "volumes": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "device": {"type": "str", "required": True},
            "mount": {"type": "str", "required": True},
            "filesystem": {"type": "str", "required": True, "choices": ["ext4", "xfs"]},
            "format": {"type": "bool", "required": True},
            "key_b64": {"type": "str", "required": True, "no_log": True},
        }},
    })
    results = []
    for v in module.params["volumes"]:
        try:
            results.append(_volume(module, v))
        except Refused as e:
            module.fail_json(msg=f"volume {v['name']}: {e}", volumes=results)
    module.exit_json(changed=any(r["done"] for r in results), volumes=results)


if __name__ == "__main__":
    main()
