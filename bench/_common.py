"""Shared bits for benchmarks: timing, inventory files for plain Ansible baselines, the seed's load
(Kafka's own ProducerPerformance)."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def temp_home(prefix: str) -> str:
    """A KAFKAFORM_HOME for one benchmark run; when the run ends (even by an error), its SSH master
    connections end and the dir (with the 0700 /tmp dir of their sockets, for a long path) goes."""
    home = tempfile.mkdtemp(prefix=prefix)

    def remove() -> None:
        from reconciler.observe import openssh

        openssh.close_masters(Path(home), remove_dir=True)
        shutil.rmtree(home, ignore_errors=True)

    atexit.register(remove)
    return home


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    """Median wall time of `runs` calls (and all samples, and the last result)."""
    samples = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples, result


def run(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    # Bytecode is written and reused, as for an installed kafkaform (this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which would recompile every module on every run of both tools).
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    p = subprocess.run(argv, text=True, capture_output=True, env={**base, **(env or {})})
    if check and p.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(argv)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def write_inventory(inv: dict[str, Any], path: Path) -> Path:
    """The inventory as kafkaform's runs see it (file contents base64, no template syntax)."""
    from reconciler.apply.runner import check_no_templates

    check_no_templates(inv)
    path.write_text(json.dumps(inv))
    return path


def fmt(samples: list[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in samples) + "]"


# The seed's load: 10,000 records/s x 1,000 B, acks=all, through Kafka's own ProducerPerformance.
RATE, SIZE = 10_000, 1_000
SUMMARY = re.compile(r"(\d+) records sent, ([\d.]+) records/sec .*?, ([\d.]+) ms avg latency, ([\d.]+) ms max "
                     r"latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")
STEADY = re.compile(r"(\d+) steady state records sent, ([\d.]+) records/sec .*?, ([\d.]+) ms avg latency, ([\d.]+) ms "
                    r"max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")
INTERVAL = re.compile(r"(\d+) records sent, ([\d.]+) records/sec .*?, ([\d.]+) ms avg latency, ([\d.]+) ms max")


def _stats(m: re.Match[str]) -> dict[str, float]:
    return {"records": float(m[1]), "rate": float(m[2]), "avg": float(m[3]), "max": float(m[4]),
            "p50": float(m[5]), "p95": float(m[6]), "p99": float(m[7])}


def producer_perf(libs: Path, bootstrap: str, topic: str, warmup_s: int, seconds: int,
                  props: Path | None = None) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """One ProducerPerformance run at the seed's rate: `warmup_s` seconds of records it leaves out
    of its steady-state statistics (--warmup-records), then `seconds` measured; one JVM, so the
    measured part does not pay for a cold producer. (whole-run summary, steady-state summary (the
    whole run's without a warm-up), interval lines)."""
    cmd = ["java", "-Xmx512m", f"-Dlog4j2.configurationFile={libs.parent / 'tools-log4j2.properties'}",
           "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
           "--num-records", str(RATE * (warmup_s + seconds)), "--warmup-records", str(RATE * warmup_s),
           "--record-size", str(SIZE), "--throughput", str(RATE),
           *(["--command-config", str(props)] if props is not None else []),
           "--command-property", "acks=all", f"bootstrap.servers={bootstrap}"]
    out = subprocess.run(cmd, text=True, capture_output=True, timeout=(warmup_s + seconds) * 4 + 120)
    lines = out.stdout.splitlines()
    whole = next((SUMMARY.search(x) for x in lines if SUMMARY.search(x)), None)
    steady = next((STEADY.search(x) for x in lines if STEADY.search(x)), None)
    if whole is None or (steady is None and warmup_s > 0):
        raise SystemExit(f"ProducerPerformance printed no summary:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return _stats(whole), _stats(steady or whole), [x for x in lines if INTERVAL.search(x)]
