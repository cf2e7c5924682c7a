#!/usr/bin/python3
"""Ansible module: delete exactly the paths a kafkaform plan shows, each only with its proof.

Proofs (see reconciler/removal.py): owner_marker (<dir>/.kafkaform-owner exists), artifact_marker
(<dir>/ARTIFACT exists), kafkaform_header (the file starts with kafkaform's header), empty (rmdir
when empty), incoming (kafkaform's upload dir). A symlink is removed as a link, never followed.
Paths without their proof are kept and reported.
"""

from __future__ import annotations

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

HEADER = b"# Managed by kafkaform"
OWNER_MARKER = ".kafkaform-owner"


def _proven(path: str, proof: str) -> bool:
    if os.path.islink(path):
        return proof != "empty"
    if proof == "owner_marker":
        return os.path.isfile(os.path.join(path, OWNER_MARKER))
    if proof == "artifact_marker":
        return os.path.isfile(os.path.join(path, "ARTIFACT"))
    if proof == "kafkaform_header":
        try:
            with open(path, "rb") as f:
                return f.read(len(HEADER)) == HEADER
        except OSError:
            return False
    if proof == "empty":
        return os.path.isdir(path) and not os.listdir(path)
    return proof == "incoming" and os.path.basename(path) == ".incoming"


def _delete(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def main() -> None:
    module = AnsibleModule(argument_spec={"deletions": {"type": "list", "elements": "dict", "required": True}},
                           supports_check_mode=True)
    deleted, kept = [], []
    for d in module.params["deletions"]:
        path, proof = str(d["path"]), str(d["proof"])
        if not os.path.isabs(path) or os.path.normpath(path) != path or path == "/":
            module.fail_json(msg=f"refusing to delete {path!r}: not a normalised absolute path")
        if not os.path.lexists(path):
            continue
        if not _proven(path, proof):
            kept.append(path)
            continue
        if not module.check_mode:
            try:
                _delete(path)
            except OSError as e:
                module.fail_json(msg=f"cannot delete {path}: {e.strerror}", deleted=deleted, kept=kept)
        deleted.append(path)
    module.exit_json(changed=bool(deleted), deleted=deleted, kept=kept)


if __name__ == "__main__":
    main()
