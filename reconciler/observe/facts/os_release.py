"""OS name from /etc/os-release PRETTY_NAME (shell-style assignment, usually double-quoted)."""

from __future__ import annotations

import shlex

NAME = "os"


def command() -> str:
    return "cat /etc/os-release"


def parse(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            try:
                parts = shlex.split(line[len("PRETTY_NAME=") :])
            except ValueError:
                return line[len("PRETTY_NAME=") :].strip() or None
            return " ".join(parts) or None
    return None
