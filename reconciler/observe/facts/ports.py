"""Listening TCP ports from `ss -ltnH` (LISTEN sockets, numeric, no header).

Strict on purpose: if `ss` is missing its error must not read as "nothing is listening".
"""

from __future__ import annotations

from . import FactError

NAME = "ports"


def command() -> str:
    return "ss -ltnH"


def parse(text: str) -> tuple[int, ...]:
    ports: set[int] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] != "LISTEN" or len(fields) < 5:
            raise FactError(f"unexpected ss output: {line[:200]!r}")
        port = fields[3].rsplit(":", 1)[-1]
        if port.isdigit():
            ports.add(int(port))
    return tuple(sorted(ports))
