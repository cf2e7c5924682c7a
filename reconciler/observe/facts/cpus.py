"""Usable CPUs (`nproc`: honours the CPU affinity/cgroup limits a JVM would see)."""

from __future__ import annotations

from . import FactError

NAME = "cpus"


def command() -> str:
    return "nproc"


def parse(text: str) -> int:
    s = text.strip()
    if not s.isdigit():
        raise FactError(f"nproc printed {s[:200]!r}")
    return int(s)
