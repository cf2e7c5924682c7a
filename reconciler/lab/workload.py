"""A numbered acks=all producer and a verifier: the "nothing acknowledged is lost" check.

The producer writes message i = b"<i>" continuously (bounded in count and time), retrying
retriable errors, and remembers which numbers the cluster acknowledged and which errors were
final. The verifier reads the topic from the beginning and reports acknowledged numbers missing.
Used by the rolling-change tests and bench/rolling.py; it only talks to the cluster's brokers.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class ProducerReport:
    sent: int = 0
    acked: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)  # final (non-retriable or retries exhausted)


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
        self._thread.join(timeout=180)
        return self.report

    def _run(self) -> None:
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
                 client: dict[str, object] | None = None) -> set[int]:
    """Every number in the topic, read from the beginning until `expect` is covered or time is up."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest",
                             group_id=f"verify-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=3000,
                             max_poll_records=5000, **(client or {}))
    got: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not expect <= got and time.monotonic() < deadline:
            for m in consumer:
                got.add(int(m.value))
    finally:
        consumer.close()
    return got
