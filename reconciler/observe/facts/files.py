"""Managed files: sha256 of the real bytes, plus content (for text diffs) when smaller than 64 KiB.

Values of keys that look secret (password, secret, jaas, ...: the same `spec.is_sensitive` test the
renderer and diff use) in .properties/.cfg content are replaced by `(sensitive)` so plans and logs
never show them; the hash is of the real content, so a changed password is still drift.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile

from reconciler.spec import is_sensitive

from ..model import ManagedFile
from . import FactError, b64decode, sh_quote

NAME = "files"

MAX_CONTENT = 64 * 1024
REDACTED = "(sensitive)"
_KEY_SEP = re.compile(r"^(\s*)((?:[^\\=:\s]|\\.)+)(\s*[=:]\s*|\s+)(.*)$", re.DOTALL)


def command(paths: tuple[str, ...] | list[str]) -> str:
    # A handful of processes whatever the number of files: one find sorts the paths (a missing one
    # prints nothing: missing), one tar | base64 carries every small file (hashed here, from the
    # bytes received), sha256sum runs only for a large one. Paths are checked service paths (no
    # newline), so the line-based lists split them right.
    if not paths:
        return ":"
    quoted = " ".join(sh_quote(p) for p in paths)
    return (
        f"list=$(find -L {quoted} -maxdepth 0 \\( \\( ! -type f -o ! -readable \\) -printf 'U %p\\n' \\)"
        f" -o \\( -size +{MAX_CONTENT - 1}c -printf 'L %p\\n' \\) -o -printf 'S %p\\n' 2>/dev/null)\n"
        "printf '%s\\n' \"$list\" | while read -r k p; do case $k in\n"
        "  U) printf 'unreadable - - %s\\n' \"$p\" ;;\n"
        "  L) h=$(sha256sum < \"$p\"); printf 'file %s - %s\\n' \"${h%% *}\" \"$p\" ;;\n"
        "esac; done\n"
        "printf 'tar - b64:'; printf '%s\\n' \"$list\" |"
        " while IFS= read -r l; do case $l in 'S '*) printf '%s\\n' \"${l#S }\" ;; esac; done |"
        " tar -c -f - -P -h --no-recursion -T - 2>/dev/null | base64 -w0; printf ' small files\\n'"
    )


def _ends_with_continuation(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


# Files that are secrets as a whole (JAAS logins, java @argfiles with the super digest, PEM key
# stores: a private key and its chain): observe keeps only their hash.
SECRET_FILES = ("jaas.conf", ".args", ".key.pem")


def redact(path: str, text: str) -> str:
    """Hide secret values in Java .properties / zoo.cfg style text, including continued lines; a
    file that is a secret as a whole becomes the mask."""
    if path.endswith(SECRET_FILES):
        return REDACTED
    if not path.endswith((".properties", ".cfg")):
        return text
    out: list[str] = []
    swallowing = False
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if swallowing:
            swallowing = _ends_with_continuation(body)
            continue
        stripped = body.lstrip()
        m = _KEY_SEP.match(body)
        if stripped and stripped[0] not in "#!" and m and is_sensitive(m.group(2)) and m.group(4):
            out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}{line[len(body) :]}")
            swallowing = _ends_with_continuation(body)
        else:
            out.append(line)
    return "".join(out)


def _from_tar(data: bytes) -> dict[str, ManagedFile]:
    """The regular files of a tar stream (read, never extracted)."""
    out: dict[str, ManagedFile] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar:
                f = tar.extractfile(m) if m.isfile() else None
                if f is None:
                    continue
                raw = f.read()
                path = m.name if m.name.startswith("/") else "/" + m.name
                out[path] = ManagedFile(path=path, sha256=hashlib.sha256(raw).hexdigest(),
                                        content=redact(path, raw.decode("utf-8", "replace")))
    except tarfile.TarError as e:
        raise FactError(f"cannot read the small files' archive: {e}") from e
    return out


def parse(text: str) -> dict[str, ManagedFile]:
    files: dict[str, ManagedFile] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 3)
        if len(parts) != 4:
            raise FactError(f"unexpected files line: {line[:200]!r}")
        kind, digest, blob, path = parts
        if kind == "missing":
            continue
        if kind == "tar":
            files.update(_from_tar(b64decode(blob.removeprefix("b64:"), "the small files' archive")))
            continue
        if kind == "unreadable":
            raise FactError(f"{path} exists but is not a readable regular file")
        if kind != "file" or not (re.fullmatch(r"[0-9a-f]{64}", digest)
                                  or (digest == "-" and blob.startswith("b64:"))):
            raise FactError(f"unexpected files line: {line[:200]!r}")
        content = None
        if blob.startswith("b64:"):
            raw = b64decode(blob[4:], path)
            # Hash and content come from two reads; trust the bytes we actually got.
            digest = hashlib.sha256(raw).hexdigest()
            content = redact(path, raw.decode("utf-8", "replace"))
        files[path] = ManagedFile(path=path, sha256=digest, content=content)
    return files
