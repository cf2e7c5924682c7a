"""What each data directory is stored on: its filesystem and the block devices beneath it.

`security.encryption_at_rest: required` needs every data dir on dm-crypt. A dir that does not
exist yet (a new broker) is judged by its nearest existing parent, where it would be created.
The device stack comes from `lsblk --inverse` (the mount's device, then every device it sits on),
so LUKS beneath LVM or a partition counts; a filesystem without a block device (overlay, tmpfs)
has an empty stack.
"""

from __future__ import annotations

from ..model import DirDevice
from . import FactError, each_dir

NAME = "dir_devices"


def command(dirs: tuple[str, ...] | list[str]) -> str:
    return each_dir(
        dirs,
        '  a="$d"; while [ ! -e "$a" ] && [ "$a" != / ]; do a=$(dirname -- "$a"); done\n'
        '  set -- $(findmnt -n -r -o SOURCE,FSTYPE -T "$a" 2>/dev/null); s="${1:--}"; t="${2:--}"\n'
        '  k=-; case "$s" in /dev/*) k=$(lsblk -s -n -r -o TYPE -- "$s" 2>/dev/null | paste -sd, -);; esac\n'
        "  printf 'mount %s %s %s\\n' \"$t\" \"${k:--}\" \"$d\"\n",
    )


def parse(text: str) -> dict[str, DirDevice]:
    out: dict[str, DirDevice] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 3)
        if len(parts) != 4 or parts[0] != "mount":
            raise FactError(f"unexpected dir_devices line: {line[:200]!r}")
        _, fstype, stack, path = parts
        out[path] = DirDevice(fstype=fstype, stack=tuple(x for x in stack.split(",") if x and x != "-"))
    return out
