#!/usr/bin/python3
"""Ansible module: write a service's rendered files and directories in one task, byte for byte.

Contents arrive base64-encoded (`content_b64`), so no spec value can ever be read by Ansible as a
template, and a file is rewritten only when its sha256 differs (atomically: a temp file in the
same directory, owner and mode set, fsync, rename). Directories are created with their owner and
mode. `seed_files` are written only where absent (a service owns them once it runs). Returns the
changed paths and whether a systemd unit changed (the caller reloads systemd then).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _ids(owner: str) -> tuple[int, int]:
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(owner).gr_gid


def _ensure_dir(path: str, owner: str, mode: int) -> bool:
    changed = False
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o755, exist_ok=True)
        changed = True
    uid, gid = _ids(owner)
    st = os.stat(path)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    if st.st_mode & 0o7777 != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def _write(path: str, data: bytes, owner: str, mode: int, force: bool) -> bool:
    uid, gid = _ids(owner)
    if os.path.lexists(path):
        if not force:
            return False
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                same = hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
            if same:
                st = os.stat(path)
                fixed = False
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.chown(path, uid, gid)
                    fixed = True
                if st.st_mode & 0o7777 != mode:
                    os.chmod(path, mode)
                    fixed = True
                return fixed
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kf-", dir=parent)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def main() -> None:
    spec = {"type": "list", "elements": "dict", "default": []}
    module = AnsibleModule(argument_spec={"dirs": dict(spec), "files": dict(spec), "seed_files": dict(spec)},
                           supports_check_mode=False)
    changed: list[str] = []
    try:
        for d in module.params["dirs"]:
            if _ensure_dir(str(d["path"]), str(d["owner"]), int(str(d["mode"]), 8)):
                changed.append(str(d["path"]))
        for key, force in (("files", True), ("seed_files", False)):
            for f in module.params[key]:
                data = base64.b64decode(str(f["content_b64"]), validate=True)
                if _write(str(f["path"]), data, str(f["owner"]), int(str(f["mode"]), 8), force):
                    changed.append(str(f["path"]))
    except (OSError, KeyError, ValueError) as e:
        module.fail_json(msg=f"{type(e).__name__}: {e}", changed_paths=changed)
    module.exit_json(changed=bool(changed), changed_paths=changed,
                     units_changed=any(p.endswith(".service") for p in changed))


if __name__ == "__main__":
    main()
