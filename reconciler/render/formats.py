"""One escaping rule per target format. Every renderer goes through these; nothing else builds
file, unit or shell text from spec values.

The rules assume values already passed their field's character class (`reconciler.fields`):
control characters never get here, so each rule only has to make the *remaining* characters mean
themselves in the target format.

- Java `.properties` (server.properties, zoo.cfg): read by `java.util.Properties.load`, which turns
  `\\t`, `\\n`, `\\uXXXX` ... into characters, drops leading whitespace of a value and reads an
  InputStream as ISO 8859-1. So backslashes are doubled, a leading space is escaped and anything
  outside printable ASCII becomes `\\uXXXX` (UTF-16 units, as Java stores strings). `parse_properties`
  is the same reader in Python (the one observe and the tests use to read files back).
- systemd units: specifiers (`%`) are expanded on the whole line, then words are split with
  C-style unquoting, then `$VAR` is expanded at exec time. Each argument is double-quoted with `\\`
  and `"` escaped, `%` written `%%` and `$` written `$$`.
- POSIX shell: `shlex.quote`.
"""

from __future__ import annotations

import re
import shlex

# --- Java .properties --------------------------------------------------------------------------

_PROP_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class FormatError(ValueError):
    """A value that the target format cannot hold (callers validate first; this is the backstop)."""


def _escape_chars(text: str, newlines: bool = False) -> str:
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n" and newlines:
            out.append("\\n")
        elif 0x20 <= code <= 0x7E:
            out.append(ch)
        elif code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
            raise FormatError(f"control character U+{code:04X} cannot be written to a properties file")
        elif code > 0xFFFF:  # Java strings are UTF-16: a supplementary character is two units
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


class Multiline(str):
    """A value kafkaform itself made (a PEM certificate or key) whose line breaks are part of it:
    written as `\\n` escapes, which Properties.load turns back into line breaks. Spec values are
    never Multiline (their field classes refuse line breaks)."""


def properties_value(value: str) -> str:
    """A value as Properties.load reads it back exactly."""
    text = _escape_chars(value, newlines=isinstance(value, Multiline))
    if text[:1] in (" ", "\t", "\f"):  # load() skips whitespace before a value
        text = "\\" + text
    return text


def properties_line(key: str, value: str) -> str:
    if not _PROP_KEY.fullmatch(key):
        raise FormatError(f"{key!r} cannot be a properties key (letters, digits, '.', '_', '-')")
    return f"{key}={properties_value(value)}\n"


_WS = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str) -> list[str]:
    """Java's LineReader: natural lines end at \\n, \\r or \\r\\n; a line ending in an odd number of
    backslashes continues on the next, whose leading whitespace is dropped; comment and blank
    lines are skipped (a comment never continues)."""
    natural = re.split(r"\r\n|\r|\n", text)
    out: list[str] = []
    buf: str | None = None
    for raw in natural:
        line = raw.lstrip(_WS)
        if buf is None:
            if not line or line[0] in "#!":
                continue
            buf = ""
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            buf += line[:-1]
            continue
        out.append(buf + line)
        buf = None
    if buf is not None:
        out.append(buf)
    return out


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        i += 1
        if i >= len(text):
            break  # Java drops a lone trailing backslash
        nxt = text[i]
        if nxt == "u":
            digits = text[i + 1 : i + 5]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise FormatError(f"malformed \\uxxxx escape in {text[:80]!r}")
            out.append(chr(int(digits, 16)))
            i += 5
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 1
    # join UTF-16 surrogate pairs the way a Java String holds them
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def _split_key(line: str) -> tuple[str, str]:
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=:" or ch in _WS:
            break
        i += 1
    key = line[:i]
    j = i
    while j < n and line[j] in _WS:
        j += 1
    if j < n and line[j] in "=:" :
        j += 1
        while j < n and line[j] in _WS:
            j += 1
    return key, line[j:]


def parse_properties(text: str) -> dict[str, str]:
    """`java.util.Properties.load` in Python: what Kafka and ZooKeeper read from a file."""
    out: dict[str, str] = {}
    for line in _logical_lines(text):
        key, value = _split_key(line)
        try:
            out[_unescape(key)] = _unescape(value)
        except FormatError:
            out[key] = value  # Java would refuse the file; keep the raw text so it shows as drift
    return out


# --- systemd units -----------------------------------------------------------------------------


_SYSTEMD_BARE = re.compile(r"[A-Za-z0-9_./:=+,@*-]+")  # means itself unquoted: no quote, escape, %, $, ;


def systemd_arg(value: str) -> str:
    """One ExecStart= argument that systemd passes to the process exactly as `value`."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise FormatError("control characters cannot be written to a systemd unit")
    if _SYSTEMD_BARE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_command(argv: list[str]) -> str:
    """An ExecStart= command line: the executable (an absolute path, unquoted) and quoted arguments."""
    exe, *args = argv
    if not re.fullmatch(r"/[A-Za-z0-9._/+-]+", exe):
        raise FormatError(f"{exe!r} cannot be a unit's executable path")
    return " ".join([exe, *(systemd_arg(a) for a in args)])


# --- POSIX shell -------------------------------------------------------------------------------


def sh(value: str) -> str:
    """A shell word that means exactly `value`."""
    if "\x00" in value:
        raise FormatError("NUL cannot be passed through a shell")
    return shlex.quote(value)
