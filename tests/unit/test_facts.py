"""Fact parsers against recorded outputs: tests/unit/facts/<fact>/*.json = {"output", "expected"|"error"}.

Most outputs were captured from a real Debian 12 machine; crafted ones say so in their "source".
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from reconciler.observe.collect import HostTarget, host_script, parse_host
from reconciler.observe.facts import (
    FactError,
    artifacts,
    cpus,
    dir_devices,
    dir_usage,
    files,
    java,
    memory,
    os_release,
    services,
)
from reconciler.observe.script import build_script, split_output

FIXTURES = Path(__file__).parent / "facts"
MODULES: dict[str, ModuleType] = {
    m.NAME: m for m in (os_release, java, memory, cpus, artifacts, files, services, dir_usage, dir_devices)
}
CASES = sorted(FIXTURES.glob("*/*.json"))


def jsonable(v: object) -> object:
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def test_every_fact_has_fixtures() -> None:
    assert {p.parent.name for p in CASES} == set(MODULES)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture(case: Path) -> None:
    doc = json.loads(case.read_text())
    parse = MODULES[case.parent.name].parse
    if "error" in doc:
        with pytest.raises(FactError, match=re.escape(doc["error"])):
            parse(doc["output"])
    else:
        assert jsonable(parse(doc["output"])) == doc["expected"]


def test_redaction_keeps_real_hash() -> None:
    text = "a=1\nssl.key.password=hunter2\n"
    out = files.redact("/etc/kafka/server.properties", text)
    assert out == "a=1\nssl.key.password=(sensitive)\n"
    assert files.redact("/etc/kafka/notes.txt", text) == text


def test_split_ignores_marker_lookalikes_and_keeps_exact_text() -> None:
    out = (
        "@@kf-aaaa@@ begin a\n@@kf-bbbb@@ end a 0\nx\n\n@@kf-aaaa@@ end a 3\n"
        "@@kf-aaaa@@ begin b\n\n@@kf-aaaa@@ end b 0\n"
        "@@kf-aaaa@@ begin c\npartial output, script killed"
    )
    secs = split_output(out, "aaaa")
    assert secs == {"a": (3, "@@kf-bbbb@@ end a 0\nx\n"), "b": (0, "")}


def test_script_sections_survive_a_failing_snippet() -> None:
    script = build_script({"one": "exit 7", "two": "printf 'no newline'", "three": "echo err >&2"}, "beef")
    cp = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    assert split_output(cp.stdout, "beef") == {
        "one": (7, ""),
        "two": (0, "no newline"),
        "three": (0, "err\n"),
    }


def test_whole_host_script_runs_under_local_sh(tmp_path: Path) -> None:
    """The real script under this machine's /bin/sh (dash): every section present and parseable."""
    f = tmp_path / "server.properties"
    f.write_text("broker.id=1\nsasl.jaas.config=x\n")
    sub = tmp_path / "data"
    sub.mkdir()
    (sub / "segment").write_bytes(b"x" * 200_000)
    target = HostTarget(host="local", files=(str(f), str(tmp_path / "nope")),
                        dirs=(str(tmp_path), str(sub), str(tmp_path / "gone")))
    cp = subprocess.run(["sh", "-c", host_script(target, "f00d")], capture_output=True, text=True, timeout=60)
    facts = parse_host("local", cp.stdout, "f00d")
    assert facts.reachable, facts.error
    assert facts.cpus and facts.cpus >= 1 and facts.mem_total_bytes
    assert facts.files[str(f)].content == "broker.id=1\nsasl.jaas.config=(sensitive)\n"
    assert set(facts.services) == {"zookeeper", "kafka-controller", "kafka"}
    # one du for all dirs: a dir nested in another still has its own total; a missing one is left out
    usage = facts.dir_usage_bytes
    assert set(usage) == {str(tmp_path), str(sub)} and usage[str(tmp_path)] >= usage[str(sub)] >= 200_000
    assert facts.os and facts.java_version != "", facts.os
    assert facts.dir_devices[str(tmp_path)].fstype not in ("", "-") and not facts.dir_devices[str(tmp_path)].encrypted
