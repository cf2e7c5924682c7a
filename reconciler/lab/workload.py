"""A numbered acks=all producer and a verifier: the "nothing acknowledged is lost" check.

The producer writes message i = b"<i>" continuously (bounded in count and time), retrying
retriable errors, and remembers which numbers the cluster acknowledged and which errors were
final. The verifier reads the topic from the beginning and reports acknowledged numbers missing.
Used by the rolling-change tests and bench/rolling.py; it only talks to the cluster's brokers.
"""

from __future__ import annotations

import collections
import json
import logging
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.apply.state import write_private


@dataclass
class ProducerReport:
    sent: int = 0
    acked: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)  # final (non-retriable or retries exhausted)
    log: list[str] = field(default_factory=list)  # the client's last notices while it ran, to read a failure

    def __repr__(self) -> str:
        return f"ProducerReport(sent={self.sent}, acked={len(self.acked)}, errors={len(self.errors)})"

    def failure(self, lines: int = 80) -> str:
        """What a failed check prints: the first final errors and the client's last notices."""
        return "\n".join(["errors:", *self.errors[:5], f"the client's last {lines} notices:", *self.log[-lines:]])


class _Recent(logging.Handler):
    """The client library's last INFO-and-above lines, each with seconds since the producer began; a
    line repeating the one before only counts, and the first traceback of each error is kept whole."""

    def __init__(self, t0: float, keep: int = 400) -> None:
        super().__init__(logging.INFO)
        self.t0 = t0
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._last = ""
        self._repeats = 0
        self._tracebacks: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.levelname} {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            if text == self._last:
                self._repeats += 1
                return
            self._flush_repeats()
            self._last = text
            self.lines.append(f"{record.created - self.t0:7.1f}s {text}")
            if record.exc_info and text not in self._tracebacks:
                self._tracebacks.add(text)
                self.lines.append(logging.Formatter().formatException(record.exc_info))
        except Exception:  # noqa: BLE001 - a line we cannot format is not worth failing a send for
            pass

    def _flush_repeats(self) -> None:
        if self._repeats:
            self.lines.append(f"         (the line above {self._repeats} more time(s))")
            self._repeats = 0

    def close(self) -> None:
        self._flush_repeats()
        super().close()


class NumberedProducer:
    """Background thread producing numbered messages with acks=all until stopped (or limits hit)."""

    def __init__(self, bootstrap: str, topic: str, rate_per_s: float = 200, max_messages: int = 200_000,
                 max_seconds: float = 900, delivery_timeout_s: float = 180, idempotent: bool = True,
                 client: dict[str, object] | None = None) -> None:
        """`delivery_timeout_s`: how long a message may wait for its acknowledgement before it counts
        as failed (180 s: nothing a safe roll does may fail it; 5 s: a client that tolerates a hiccup).
        `idempotent=False` gives a plain client (5 retries), as most applications run. `client`: more
        kafka-python settings (security: protocol, SASL login, CA file)."""
        self.bootstrap = bootstrap.split(",")
        self.topic = topic
        self.interval = 1.0 / rate_per_s
        self.max_messages = max_messages
        self.max_seconds = max_seconds
        self.delivery_timeout_ms = int(delivery_timeout_s * 1000)
        self.idempotent = idempotent
        self.client = dict(client or {})
        self.report = ProducerReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="numbered-producer", daemon=True)

    def start(self) -> NumberedProducer:
        self._thread.start()
        return self

    def counts(self) -> tuple[int, int]:
        """(acknowledged, failed) so far, for measuring a window of time."""
        with self._lock:
            return len(self.report.acked), len(self.report.errors)

    def stop(self) -> ProducerReport:
        self._stop.set()
        self._thread.join(timeout=240)  # (flush up to 180 s, close up to 30 s)
        return self.report

    def _run(self) -> None:
        kafka_log = logging.getLogger("kafka")
        recent = _Recent(time.time())
        level = kafka_log.level
        kafka_log.addHandler(recent)
        kafka_log.setLevel(logging.INFO)
        try:
            self._produce()
        finally:
            kafka_log.removeHandler(recent)
            kafka_log.setLevel(level)
            recent.close()
            self.report.log = list(recent.lines)

    def _produce(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                 retries=2**31 - 1 if self.idempotent else 5,
                                 enable_idempotence=self.idempotent, max_in_flight_requests_per_connection=5,
                                 delivery_timeout_ms=self.delivery_timeout_ms,
                                 request_timeout_ms=min(30_000, self.delivery_timeout_ms // 2), linger_ms=5,
                                 **self.client)
        t0 = time.monotonic()
        i = 0
        try:
            while not self._stop.is_set() and i < self.max_messages and time.monotonic() - t0 < self.max_seconds:
                n = i
                fut = producer.send(self.topic, str(n).encode())
                fut.add_callback(self._ok, n)
                fut.add_errback(self._err, n)
                i += 1
                self.report.sent = i
                time.sleep(self.interval)
        finally:
            try:
                producer.flush(timeout=180)
                producer.close(timeout=30)
            except Exception as e:  # noqa: BLE001 - what was not acknowledged is already in the report
                self.report.errors.append(f"close: {type(e).__name__}: {e}")

    def _ok(self, n: int, _meta: object) -> None:
        with self._lock:
            self.report.acked.add(n)

    def _err(self, n: int, exc: BaseException) -> None:
        with self._lock:
            self.report.errors.append(f"message {n}: {type(exc).__name__}: {exc}")


def number(value: str, prefix: str | None = None) -> int | None:
    """The number a message carries: NumberedProducer's "<n>", or with `prefix` a ToolProducer's
    "<prefix>.<n>" (None for another prefix's)."""
    if prefix is None:
        return int(value)
    head, _, n = value.partition(".")
    return int(n) if head == prefix else None


def java_log_config(path: Path) -> Path:
    """A log4j2 config for one of Kafka's tool classes run here: warnings and errors, timed, on stderr
    (0600, as it sits beside client configs that do)."""
    write_private(path, "rootLogger.level = warn\nrootLogger.appenderRef.e.ref = e\nappender.e.type = Console\n"
                    "appender.e.name = e\nappender.e.target = SYSTEM_ERR\nappender.e.layout.type = PatternLayout\n"
                    "appender.e.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n\n")
    return path


class ToolProducer:
    """Kafka's own VerifiableProducer (the tool Kafka's system tests use to show that a bounce loses
    no acknowledged message) as a numbered acks=all idempotent producer with the same report.

    For a check that should not rest on a Python client's own retry logic: kafka-python 3.0's
    sender has failed inside its I/O thread during long roll sequences here ("Uncaught error in
    kafka producer I/O thread"), leaving messages neither acknowledged nor failed. Values are
    "<prefix>.<n>" (read them with read_numbers(prefix=...)); `config` is a client properties file
    (kafkaform client-config's), read once at start as a Java client does.
    """

    def __init__(self, bootstrap: str, topic: str, config: Path, classpath: str, prefix: str,
                 rate_per_s: float = 100, delivery_timeout_s: float = 180) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.classpath = classpath
        self.prefix = prefix
        self.rate = rate_per_s
        # the caller's settings plus the producer's own, beside it and as private (it holds a login)
        self.config = config.with_name(f"{config.stem}-producer{config.suffix}")
        write_private(self.config, config.read_text() + f"\nacks=all\nenable.idempotence=true\nretries=2147483647\n"
                               f"linger.ms=5\n"
                               f"delivery.timeout.ms={int(delivery_timeout_s * 1000)}\nrequest.timeout.ms=30000\n")
        self.log_config = java_log_config(config.with_name(f"{config.stem}-producer-log4j2.properties"))
        self.report = ProducerReport()
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> ToolProducer:
        self._proc = subprocess.Popen(
            ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={self.log_config}", "-cp", self.classpath,
             "org.apache.kafka.tools.VerifiableProducer",
             "--bootstrap-server", self.bootstrap, "--topic", self.topic, "--throughput", str(self.rate),
             "--value-prefix", self.prefix, "--command-config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._threads = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.report.acked), len(self.report.errors)

    def stop(self, timeout_s: float = 240) -> ProducerReport:
        """SIGTERM: the tool stops sending, closes its producer (waiting for what is in flight, up to
        the delivery timeout) and prints its totals."""
        assert self._proc is not None
        self._proc.terminate()
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            self.report.errors.append(f"the producer did not stop within {timeout_s:.0f} s")
        if self._proc.returncode not in (0, 143, -15):  # (143: the JVM's exit on SIGTERM)
            self.report.errors.append(f"the producer exited with status {self._proc.returncode}")
        for t in self._threads:
            t.join(timeout=10)
        self.report.log = list(self._stderr)
        return self.report

    def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                self._stderr.append(f"stdout: {line.rstrip()}")
                continue
            name = event.get("name")
            with self._lock:
                if name == "producer_send_success" and (n := number(event["value"], self.prefix)) is not None:
                    self.report.acked.add(n)
                elif name == "producer_send_error":
                    self.report.errors.append(f"message {event.get('value')}: {event.get('exception')}: "
                                              f"{event.get('message')}")
                elif name == "tool_data":
                    self.report.sent = int(event.get("sent", 0))

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int,
                 min_insync_replicas: int | None = None, client: dict[str, object] | None = None) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=30_000, **(client or {}))
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                                      topic_configs=configs)])
    finally:
        admin.close()


def delete_topic(bootstrap: str, topic: str, client: dict[str, object] | None = None) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=30_000, **(client or {}))
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def read_numbers(bootstrap: str, topic: str, expect: set[int], timeout_s: float = 120,
                 client: dict[str, object] | None = None, prefix: str | None = None) -> set[int]:
    """Every number in the topic, read from the beginning until `expect` is covered or time is up;
    with `prefix`, only the values "<prefix>.<n>" (a ToolProducer's), as n."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest",
                             group_id=f"verify-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=3000,
                             max_poll_records=5000, **(client or {}))
    got: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not expect <= got and time.monotonic() < deadline:
            for m in consumer:
                n = number(m.value.decode(), prefix)
                if n is not None:
                    got.add(n)
    finally:
        consumer.close()
    return got
