"""One shell script per host that runs every fact snippet, and the splitter for its output.

One script means one SSH round trip per host. Each section is framed by markers carrying a random
nonce, so nothing a file or command prints can be mistaken for a marker. Each snippet runs in its
own subshell with stderr merged and stdin closed, so one failing snippet cannot break the others.
"""

from __future__ import annotations

import re
import secrets
import shlex

from .facts import FactError

_NAME = re.compile(r"^[a-z0-9_]+$")


def new_nonce() -> str:
    return secrets.token_hex(8)


def _marker(nonce: str) -> str:
    return f"@@kf-{nonce}@@"


def build_script(sections: dict[str, str], nonce: str) -> str:
    """Concatenate snippets under `sh`; section names must be simple identifiers."""
    mark = _marker(nonce)
    lines = ["export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    for name, snippet in sections.items():
        if not _NAME.match(name):
            raise ValueError(f"bad section name {name!r}")
        lines.append(f"printf '%s\\n' '{mark} begin {name}'")
        lines.append(f"( {snippet}\n) </dev/null 2>&1")
        lines.append(f"printf '\\n%s %s\\n' '{mark} end {name}' \"$?\"")
    return "\n".join(lines) + "\n"


def split_output(stdout: str, nonce: str) -> dict[str, tuple[int, str]]:
    """Map section name -> (exit status, text). Sections cut off by a dying script are absent."""
    mark = re.escape(_marker(nonce))
    pattern = re.compile(
        rf"^{mark} begin (?P<name>[a-z0-9_]+)\n(?P<body>.*?)\n{mark} end (?P=name) (?P<rc>\d+)$",
        re.MULTILINE | re.DOTALL,
    )
    return {m["name"]: (int(m["rc"]), m["body"]) for m in pattern.finditer(stdout)}


def section(sections: dict[str, tuple[int, str]], name: str) -> str:
    if name not in sections:
        raise FactError(f"no output for fact {name} (script cut off?)")
    return sections[name][1]


def render_output(script: str, outputs: dict[str, str], rcs: dict[str, int] | None = None) -> str:
    """What `build_script`'s script would print given each section's output; for fakes in tests.

    Accepts the script itself or the `[sudo -n ]sh -c '<script>'` command line collect sends.
    """
    script = script.removeprefix("sudo -n ")
    if script.startswith("sh -c "):
        script = shlex.split(script)[2]
    m = re.search(r"@@kf-([0-9a-f]+)@@ begin", script)
    if not m:
        raise ValueError("not a fact script")
    mark = _marker(m.group(1))
    names = re.findall(rf"^printf '%s\\n' '{re.escape(mark)} begin ([a-z0-9_]+)'$", script, re.MULTILINE)
    parts = []
    for name in names:
        if name not in outputs:
            continue
        parts.append(f"{mark} begin {name}\n{outputs[name]}\n{mark} end {name} {(rcs or {}).get(name, 0)}\n")
    return "".join(parts)
