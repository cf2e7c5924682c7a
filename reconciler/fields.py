"""Character classes of spec fields and the safe-path rule, in one place.

Every string of a spec is checked here for its field before anything renders it, so a value can
never carry a line break, a quote or an option into the file, unit, shell line or SSH command it
ends up in (the renderers escape as well: `reconciler.render.formats`). All patterns are matched
with `fullmatch`, so a trailing newline cannot slip past a `$`.

Each checker raises ValueError with a message that names what is allowed; pydantic puts the
field path in front of it.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata

NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # cluster name
HEAP = re.compile(r"[1-9][0-9]{0,6}[kKmMgG]")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
RACK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CONFIG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,248}")
TAG_KEY = re.compile(r"[A-Za-z0-9 _.:/=+@-]{1,128}")
TAG_VALUE = re.compile(r"[A-Za-z0-9 _.:/=+@-]{0,256}")
VERSION = re.compile(r"[0-9]{1,4}(?:\.[0-9]{1,4}){1,3}")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_PATH_CHARS = r"A-Za-z0-9._+@\-"
SERVICE_PATH = re.compile(rf"/[{_PATH_CHARS}/]*")  # a path on a managed host
LOCAL_OPTION_PATH = re.compile(rf"(?:~/)?[{_PATH_CHARS}/]+")  # a control-machine path given to ssh
URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")

MAX_VALUE_LEN = 64 * 1024

# Directories of the operating system: a service dir may not be one of them or contain one, and
# may not sit inside the ones that belong to the OS or the kernel.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
    "/usr/include", "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/sbin", "/usr/share",
    "/usr/src", "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log",
    "/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp", "/lost+found",
})
OS_TREES = ("/proc", "/sys", "/dev", "/run", "/boot", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
            "/libx32", "/usr", "/tmp", "/var/tmp", "/var/run", "/var/lock", "/var/log", "/root")
OS_TREE_EXCEPTIONS = ("/usr/local/",)  # /usr/local/<name> is a place for software of our own


def fullmatch(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{_show(value)} is not {what}")
    return value


def _show(value: str) -> str:
    """A value quoted for an error message, control characters visible, long ones cut."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return repr(text)


def control_chars(value: str) -> list[str]:
    """Control and line-separator characters (C0, DEL, C1, U+2028/2029...) in a value."""
    return [f"U+{ord(c):04X}" for c in value
            if unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in "\ufeff"]


def check_text(value: str, what: str = "a value", max_len: int = MAX_VALUE_LEN) -> str:
    """Free text that ends up in a file (config values): any printable character, no control
    character or line separator (they would start a new line or change how the next one reads)."""
    bad = control_chars(value)
    if bad:
        raise ValueError(f"{_show(value)}: {what} cannot contain control characters or line breaks "
                         f"(found {', '.join(sorted(set(bad)))})")
    if len(value) > max_len:
        raise ValueError(f"{what} is {len(value)} characters long, at most {max_len} are allowed")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError(f"{_show(value)}: {what} contains a lone UTF-16 surrogate")
    return value


def check_service_path(value: str) -> str:
    """A directory kafkaform creates, chowns and may delete on a host: absolute, normalised, of
    plain characters, not a system directory, not a parent of one, not inside the OS's own trees."""
    if not value.startswith("/"):
        raise ValueError(f"{_show(value)} is not an absolute path")
    if not SERVICE_PATH.fullmatch(value):
        raise ValueError(f"{_show(value)}: paths may hold only letters, digits, '/' and . _ + @ -")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise ValueError(f"{_show(value)}: '.' and '..' are not allowed in paths")
    if posixpath.normpath(value) != value or "//" in value:
        raise ValueError(f"{_show(value)} is not a normalised path (write {posixpath.normpath(value)!r})")
    if value in SYSTEM_DIRS:
        raise ValueError(f"{value} is a system directory; use a directory of its own (e.g. {value.rstrip('/')}/kafka)"
                         if value != "/" else "/ is the root directory; use a directory of its own")
    under = [s for s in SYSTEM_DIRS if s != "/" and s.startswith(value + "/")]
    if under:
        raise ValueError(f"{value} contains the system directory {sorted(under)[0]}")
    for tree in OS_TREES:
        if value.startswith(tree + "/") and not value.startswith(OS_TREE_EXCEPTIONS):
            raise ValueError(f"{value} is inside {tree}, which belongs to the operating system")
    return value


def nested(a: str, b: str) -> bool:
    """Whether two normalised absolute paths are the same or one contains the other."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def check_local_option_path(value: str) -> str:
    """A control-machine file given to ssh/Ansible as an option value (key, known_hosts): a path
    only, so it can never carry option text (`-o ProxyCommand=...`)."""
    if not LOCAL_OPTION_PATH.fullmatch(value) or value.startswith("-"):
        raise ValueError(f"{_show(value)}: this path is passed to ssh, so it may hold only letters, digits, "
                         "'/', '~/' at the start and . _ + @ -")
    return value
