"""OS name from /etc/os-release PRETTY_NAME (shell-style assignment, usually double-quoted)."""

from __future__ import annotations

import shlex

NAME = "os"


def command() -> str:
    # (the shell's `read`, not cat: one process fewer per host)
    return ("while IFS= read -r l || [ -n \"$l\" ]; do "
            "case $l in PRETTY_NAME=*) printf '%s\\n' \"$l\" ;; esac; done < /etc/os-release")


def parse(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            try:
                parts = shlex.split(line[len("PRETTY_NAME=") :])
            except ValueError:
                return line[len("PRETTY_NAME=") :].strip() or None
            return " ".join(parts) or None
    return None
