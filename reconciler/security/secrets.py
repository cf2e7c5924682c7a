"""Secrets the spec refers to, read when the spec is used and never shown.

A `Secret` hides its value from str/repr/format, so an f-string or a log line cannot print it by
accident; `.reveal()` is the one way to the value, used only where it is written into a 0600 file
or sent to Kafka. Every value read (and every secret kafkaform makes, such as private keys) is
also registered with `scrub`, which the CLI, the journal and Ansible output pass text through,
so a secret that found its way into an error message still comes out masked.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from pathlib import Path
from typing import Any, TextIO

from reconciler.security.spec import SecretRef

MASK = "(sensitive)"
MAX_SECRET_BYTES = 64 * 1024
_MIN_SCRUB_LEN = 6  # shorter values would mask ordinary words; a secret that short is refused anyway

_known: set[str] = set()
_lock = threading.Lock()


class Secret:
    """A secret value that never prints itself."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # where it came from, e.g. "file /etc/kafkaform/app.pw" (safe to show)
        register(value)

    def reveal(self) -> str:
        return self._value

    def fingerprint(self, key: bytes) -> str:
        """A keyed digest (HMAC-SHA256 with a key only this machine holds): tells whether a secret
        changed between plan and apply without storing the secret or a plain hash of it."""
        return hmac.new(key, self._value.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"Secret({MASK} from {self.source})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("secret", self.source))


class SecretError(Exception):
    """A secret reference that cannot be read; the message names the reference, never a value."""


def register(value: str) -> None:
    """Mask this value (and each of its lines) wherever kafkaform prints or records text."""
    with _lock:
        for part in [value, *value.splitlines()]:
            part = part.strip()
            if len(part) >= _MIN_SCRUB_LEN:
                _known.add(part)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by the mask."""
    if not _known or not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return text


def read(ref: SecretRef, *, min_len: int = 8, what: str = "the secret", one_line: bool = True) -> Secret:
    """The secret `ref` points to. Files must be regular, not world-readable, UTF-8, non-empty
    (one trailing newline is dropped); environment variables must be set and non-empty."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise SecretError(f"environment variable {ref.env} is not set")
        if value == "":
            raise SecretError(f"environment variable {ref.env} is empty")
    else:
        assert ref.file is not None
        value = _read_file(Path(ref.file).expanduser())
    if "\x00" in value or (one_line and ("\n" in value or "\r" in value)):
        raise SecretError(f"{ref.describe()}: {what} must be one line of text")
    if len(value) < min_len:
        raise SecretError(f"{ref.describe()}: {what} is shorter than {min_len} characters")
    return Secret(value, ref.describe())


def _read_file(p: Path) -> str:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SecretError(f"file {p}: no such file") from None
    except OSError as e:
        raise SecretError(f"file {p}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"file {p}: not a regular file")
    if st.st_mode & 0o004:
        raise SecretError(f"file {p} is readable by every user (mode {oct(st.st_mode & 0o777)}); chmod o-r it")
    if st.st_size > MAX_SECRET_BYTES:
        raise SecretError(f"file {p} is larger than {MAX_SECRET_BYTES // 1024} KiB; a secret file holds one secret")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SecretError(f"file {p}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"file {p} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise SecretError(f"file {p} is empty")
    return text


class ScrubbedStream:
    """A text stream that masks registered secrets in everything written to it (the CLI wraps
    stdout and stderr in it: whatever path a secret takes into a message, it is not printed)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
