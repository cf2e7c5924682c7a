"""The devices `security.volumes` names on a host, and what is on them: whether the device exists,
the signature on it (blkid, probing the device itself, not a cache), whether kafkaform's LUKS
mapping of it is open and where that is mounted, and whether the mount point already holds files
(a volume mounted there would hide them). Also whether the kernel has device-mapper (no LUKS
volume opens without it; /proc/misc lists it, while a /dev/mapper/control node can exist without
it) and whether cryptsetup is installed.

One line per volume: `vol NAME STATE TYPE PTTYPE UUID OPEN MOUNTED RAWMOUNT NONEMPTY`, `-` for
none. Nothing is printed for a host without volumes (a no-op plan pays nothing for this).
"""

from __future__ import annotations

from ..model import HostVolumes, VolumeState
from . import FactError, sh_quote

NAME = "volumes"

_BODY = r"""(
printf 'dm %s\n' "$(grep -q ' device-mapper$' /proc/misc 2>/dev/null && echo 1 || echo 0)"
printf 'cryptsetup %s\n' "$(command -v cryptsetup >/dev/null 2>&1 && echo 1 || echo 0)"
while [ $# -gt 0 ]; do
  n=$1; dev=$2; m=$3; shift 3
  s=block; t=-; p=-; u=-
  if [ ! -e "$dev" ]; then s=missing; elif [ ! -b "$dev" ]; then s=notblock; else
    t=$(blkid -p -o value -s TYPE -- "$dev" 2>/dev/null); p=$(blkid -p -o value -s PTTYPE -- "$dev" 2>/dev/null)
    u=$(blkid -p -o value -s UUID -- "$dev" 2>/dev/null); t=${t:--}; p=${p:--}; u=${u:--}
  fi
  o=0; mp=-; [ -e "/dev/mapper/kafkaform-$n" ] && o=1
  [ $o = 1 ] && mp=$(findmnt -n -r -o TARGET -S "/dev/mapper/kafkaform-$n" 2>/dev/null | head -n 1)
  rm=-; [ $s = block ] && rm=$(findmnt -n -r -o TARGET -S "$dev" 2>/dev/null | head -n 1)
  ne=0; [ -d "$m" ] && [ -n "$(ls -A -- "$m" 2>/dev/null | head -n 1)" ] && ne=1
  printf 'vol %s %s %s %s %s %s %s %s %s\n' "$n" "$s" "$t" "$p" "$u" "$o" "${mp:--}" "${rm:--}" "$ne"
done
)"""


def command(volumes: tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]]) -> str:
    """`volumes`: (name, device, mount point) of each volume on this host."""
    if not volumes:
        return ":"
    args = " ".join(sh_quote(x) for v in volumes for x in v)
    return f"set -- {args}\n{_BODY}"


def _dash(v: str) -> str | None:
    return None if v == "-" else v


def parse(text: str) -> HostVolumes:
    dm: bool | None = None
    cs: bool | None = None
    out: dict[str, VolumeState] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ")
        if parts[0] == "dm" and len(parts) == 2:
            dm = parts[1] == "1"
        elif parts[0] == "cryptsetup" and len(parts) == 2:
            cs = parts[1] == "1"
        elif parts[0] == "vol" and len(parts) == 10:
            _, name, state, typ, pt, uuid, opened, mp, raw, nonempty = parts
            if state not in ("block", "missing", "notblock"):
                raise FactError(f"unexpected volume state {state!r}")
            out[name] = VolumeState(state=state, signature=_dash(typ), partition_table=_dash(pt), uuid=_dash(uuid),
                                    open=opened == "1", mounted_at=_dash(mp), device_mounted_at=_dash(raw),
                                    mount_has_files=nonempty == "1")
        else:
            raise FactError(f"unexpected volumes line: {line[:200]!r}")
    return HostVolumes(device_mapper=dm, cryptsetup=cs, volumes=out)
