"""Fuzzing the spec model: every spec kafkaform accepts renders files that mean exactly the spec.

Hypothesis draws lab-shaped specs with awkward strings in every free field. For each one the
spec model accepts:
- server.properties and zoo.cfg read back, with kafkaform's reader and with Java's own
  `Properties.load` (one JVM over all files at the end), to exactly the spec's values;
- the ZooKeeper ExecStartPre script passes `sh -n`;
- the units hold no raw control character (systemd itself checks them on a lab host:
  tests/integration/test_cluster.py).
Refused specs are fine (that is the point of the field checks); the test also asserts that a good
share of the drawn specs are accepted, so it keeps testing rendering and not only refusal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

from reconciler import files as F
from reconciler.render.formats import parse_properties
from reconciler.spec import ClusterSpec, SpecError, broker_config, parse_spec
from tests.fuzz_specs import spec_dicts

REPO = Path(__file__).resolve().parents[2]
DUMP = REPO / "tests" / "tools" / "PropertiesDump.java"
EXAMPLES = 500


def expected_broker_props(spec: ClusterSpec, broker_id: int) -> dict[str, str]:
    b = next(x for x in spec.brokers if x.id == broker_id)
    listeners = ",".join(f"{lst.name}://{b.host}:{lst.port}" for lst in spec.kafka.listeners)
    want = {"broker.id": str(b.id), "listeners": listeners, "advertised.listeners": listeners,
            "log.dirs": ",".join(b.data_dirs), "zookeeper.connect": spec.zookeeper_connect()}
    if b.rack is not None:
        want["broker.rack"] = b.rack
    want.update({k: F.format_value(v) for k, v in broker_config(spec).items()})
    return want


def render_all(spec: ClusterSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    for b in spec.brokers:
        d = F.broker_desired(spec, b, "kafka-3.9.1-0123456789ab")
        out.update({f"{b.id}:{f.path}": f.content for f in d.files})
    z = F.zookeeper_desired(spec, spec.zookeeper.nodes[0], "zookeeper-3.8.4-0123456789ab")
    out.update({f"zk:{f.path}": f.content for f in z.files})
    return out


def test_accepted_specs_render_exactly_what_they_say(tmp_path: Path) -> None:
    accepted: list[tuple[str, dict[str, str]]] = []  # (properties text, expected values)
    counts = {"accepted": 0, "refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(spec_dicts())
    def check(data: dict[str, Any]) -> None:
        try:
            spec = parse_spec(data)
        except SpecError as e:
            assert e.issues and all(i.message for i in e.issues)
            counts["refused"] += 1
            return
        counts["accepted"] += 1
        rendered = render_all(spec)
        for b in spec.brokers:
            text = rendered[f"{b.id}:{F.SERVER_PROPERTIES}"]
            want = expected_broker_props(spec, b.id)
            got = parse_properties(text)
            assert {k: got.get(k) for k in want} == want
            assert text.isascii(), "properties files are read as ISO 8859-1: non-ASCII must be escaped"
            accepted.append((text, want))
        zoo = rendered[f"zk:{F.ZOO_CFG}"]
        got = parse_properties(zoo)
        for k, v in spec.zookeeper.config.items():
            assert got[k] == F.format_value(v)
        assert got["dataDir"] == spec.zookeeper.data_dir
        accepted.append((zoo, {**{k: F.format_value(v) for k, v in spec.zookeeper.config.items()},
                               "dataDir": spec.zookeeper.data_dir}))
        script = rendered[f"zk:{F.ZK_RUNTIME_SCRIPT}"]
        sh = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
        assert sh.returncode == 0, sh.stderr
        for key, text in rendered.items():
            if key.endswith(".service"):
                assert all(c == "\n" or ord(c) >= 0x20 for c in text), key

    check()
    assert counts["accepted"] >= EXAMPLES // 10, counts  # the strategy still reaches the renderers

    # Java's own reader, over every accepted file in one JVM
    assert shutil.which("java"), "a JDK is needed to read the files with java.util.Properties"
    paths = []
    for i, (text, _) in enumerate(accepted):
        p = tmp_path / f"{i}.properties"
        p.write_text(text, encoding="ascii")
        paths.append(str(p))
    res = subprocess.run(["java", "-Xshare:auto", str(DUMP), *paths], text=True, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == len(accepted)
    for line, (text, want) in zip(lines, accepted, strict=True):
        java = json.loads(line)
        assert {k: java.get(k) for k in want} == want, text
        assert java == parse_properties(text), "kafkaform's reader and Java's disagree"
