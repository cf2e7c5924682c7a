"""The lab network: bridge ``kflab0`` with the gateway address, one netns + veth per host, and the
check that the lab's /24 is not already used on this machine."""

from __future__ import annotations

import json
from pathlib import Path

from .control import _run
from .paths import BRIDGE, GATEWAY, NET_PREFIX, PREFIX_LEN, LabError
from .state import LabHost


def _links() -> list[dict]:
    return json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")


def _check_address_space() -> None:
    """Refuse when 10.213.0.0/24 is already used by something that is not the lab's bridge."""
    addrs = json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            if a.get("local", "").startswith(NET_PREFIX + ".") and link["ifname"] != BRIDGE:
                raise LabError(
                    f"address {a['local']} is already in use on interface {link['ifname']}: the lab "
                    f"needs {NET_PREFIX}.0/{PREFIX_LEN} for itself"
                )
            if link["ifname"] == BRIDGE and a.get("local") not in (None, GATEWAY):
                raise LabError(
                    f"bridge {BRIDGE} exists with unexpected address {a['local']} (expected {GATEWAY}); "
                    "run `lab down` or remove it"
                )
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    for r in routes:
        dst = r.get("dst", "")
        if dst.startswith(NET_PREFIX + ".") and r.get("dev") != BRIDGE:
            raise LabError(
                f"route {dst} via {r.get('dev')} overlaps the lab network {NET_PREFIX}.0/{PREFIX_LEN}"
            )


def _ensure_bridge() -> None:
    names = {link["ifname"] for link in _links()}
    if BRIDGE not in names:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{GATEWAY}/{PREFIX_LEN}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def _ensure_netns(h: LabHost) -> None:
    """Network namespace ``kf<i>`` with ``eth0`` = address; host side ``kf<i>-br`` on the bridge."""
    if not Path(f"/run/netns/{h.name}").exists():
        _run(["ip", "netns", "add", h.name])
    names = {link["ifname"] for link in _links()}
    veth = f"{h.name}-br"
    if veth not in names:
        # a namespace left without its eth0 (half-made lab) is rebuilt by recreating the pair
        cp = _run(["ip", "-n", h.name, "link", "show", "eth0"], check=False)
        if cp.returncode == 0:
            _run(["ip", "-n", h.name, "link", "del", "eth0"])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.name])
    _run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    addr = _run(["ip", "-n", h.name, "-j", "-4", "addr", "show", "dev", "eth0"]).stdout
    if f'"{h.address}"' not in addr:
        _run(["ip", "-n", h.name, "addr", "add", f"{h.address}/{PREFIX_LEN}", "dev", "eth0"])
    _run(["ip", "-n", h.name, "link", "set", "eth0", "up"])
    _run(["ip", "-n", h.name, "link", "set", "lo", "up"])
    # No default route on purpose: hosts have no outbound network anyway, and without one a stray packet
    # to any non-lab address fails at once ("network unreachable") instead of leaving via the control
    # machine. The connected /24 is all the lab needs (hosts <-> hosts, hosts <-> control machine).
    _run(["ip", "-n", h.name, "route", "del", "default"], check=False)
