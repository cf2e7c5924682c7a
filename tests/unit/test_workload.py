"""The lab producer's report: what a failed "nothing lost" check prints must let a reader see what the
client library went through (its errors once with their traceback, repeats counted), not thousands
of acknowledged numbers."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from reconciler.lab.workload import ProducerReport, _Recent


def test_recent_keeps_each_errors_traceback_once_and_counts_repeats() -> None:
    recent = _Recent(time.time())
    log = logging.getLogger("kafka.test-workload")
    log.addHandler(recent)
    log.setLevel(logging.INFO)
    try:
        for _ in range(3):
            try:
                raise ValueError("heap out of order")
            except ValueError:
                log.exception("Uncaught error in kafka producer I/O thread")
        log.info("Connected")
        log.debug("not kept")
    finally:
        log.removeHandler(recent)
        recent.close()
    text = "\n".join(recent.lines)
    assert text.count("Uncaught error in kafka producer I/O thread: ValueError: heap out of order") == 1
    assert text.count("Traceback (most recent call last)") == 1
    assert "(the line above 2 more time(s))" in text
    assert text.rstrip().endswith("INFO Connected") and "not kept" not in text


def test_report_prints_counts_not_every_number() -> None:
    report = ProducerReport(sent=5000, acked=set(range(4990)), errors=["message 4995: KafkaTimeoutError: x"],
                            log=[f"{i:7.1f}s INFO line {i}" for i in range(200)])
    assert repr(report) == "ProducerReport(sent=5000, acked=4990, errors=1)"
    out = report.failure(lines=10)
    assert "message 4995: KafkaTimeoutError: x" in out
    assert "line 199" in out and "line 189" not in out


def test_tool_producer_reads_kafkas_verifiable_producer_events(tmp_path: Path) -> None:
    """The JSON lines VerifiableProducer prints become the same report: acknowledged numbers (its
    values are "<prefix>.<n>"), failed sends with Kafka's exception, and its count of sends."""
    import subprocess

    from reconciler.lab.workload import ToolProducer

    config = tmp_path / "app.properties"
    config.write_text("security.protocol=SASL_SSL\n")
    p = ToolProducer("10.213.0.11:9094", "orders", config, "/nonexistent/*", prefix="2")
    assert "delivery.timeout.ms=180000" in p.config.read_text() and p.config.stat().st_mode & 0o077 == 0
    events = [{"name": "startup_complete"},
              {"name": "producer_send_success", "value": "2.0", "partition": 1, "offset": 0},
              {"name": "producer_send_success", "value": "2.1", "partition": 2, "offset": 0},
              {"name": "producer_send_error", "value": "2.2", "exception": "class org.apache.kafka.common.errors"
               ".TimeoutException", "message": "Expiring 1 record(s)"},
              {"name": "shutdown_complete"}, {"name": "tool_data", "sent": 3, "acked": 2}]
    lines = "".join(json.dumps(e) + "\n" for e in events) + "not json\n"
    p._proc = subprocess.Popen(["printf", "%s", lines], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p._read_events()
    p._proc.wait()
    assert p.report.acked == {0, 1} and p.report.sent == 3 and p.counts() == (2, 1)
    assert p.report.errors == ["message 2.2: class org.apache.kafka.common.errors.TimeoutException: "
                               "Expiring 1 record(s)"]


def test_number_reads_each_producers_values() -> None:
    from reconciler.lab.workload import number

    assert number("7") == 7 and number("2.15", prefix="2") == 15 and number("1.15", prefix="2") is None
