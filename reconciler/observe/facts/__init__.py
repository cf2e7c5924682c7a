"""Facts, pyinfra-style: each module has a POSIX sh snippet (`command(...)`) and a pure `parse(text)`.

Snippets run on Debian 12 minbase (coreutils, iproute2, procps, systemd) as sections of one script
per host (see `..script`), so a host costs one SSH round trip. Parsers are pure so they can be tested
against captured outputs in `tests/unit/facts/<fact>/*.json`.
"""

from __future__ import annotations

import base64


class FactError(ValueError):
    """A fact's output could not be understood; the host's facts cannot be trusted."""


def b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError as e:
        raise FactError(f"bad base64 for {what}: {e}") from e


def each_dir(dirs: tuple[str, ...] | list[str], body: str) -> str:
    """A POSIX sh loop running `body` (lines ending in newlines) with $d set to each dir; a no-op
    for none."""
    if not dirs:
        return ":"
    return f"for d in {' '.join(sh_quote(d) for d in dirs)}; do\n{body}done"


def sh_quote(s: str) -> str:
    """Single-quote for POSIX sh (shlex.quote, but always quoted so output is predictable)."""
    return "'" + s.replace("'", "'\"'\"'") + "'"
