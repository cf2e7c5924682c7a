"""`kafkaform demo`: the README's main job end to end on the embedded lab spec.

lab up -> apply (auto-approved) -> create an RF-3 topic, produce and consume with acks=all ->
print the bootstrap brokers. It shells out to the kafkaform CLI for the stages so the demo shows
exactly what a user would run.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

from reconciler.spec import load_spec


def _run(*args: str) -> None:
    print(f"$ kafkaform {' '.join(args)}", flush=True)
    rc = subprocess.call([sys.executable, "-m", "reconciler.cli", *args])
    if rc != 0:
        raise SystemExit(rc)


def produce_consume(bootstrap: str, topic: str, count: int = 10, timeout_s: float = 60,
                    replication_factor: int = 3) -> int:
    """Create `topic`, write `count` messages with acks=all, read them all back; return how many came back."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    servers = bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=30000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=replication_factor)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", retries=10, linger_ms=5)
    sent = {f"{topic}-{i}".encode() for i in range(count)}
    futures = [producer.send(topic, v) for v in sorted(sent)]
    for f in futures:
        f.get(timeout=timeout_s)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                             group_id=f"demo-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=2000)
    got: set[bytes] = set()
    deadline = time.monotonic() + timeout_s
    while got != sent and time.monotonic() < deadline:
        for msg in consumer:
            got.add(msg.value)
    consumer.close()
    return len(got & sent)


def consume_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 60) -> list[bytes]:
    """Read `topic` from the beginning until `expect` messages arrived or the time is up."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest",
                             group_id=f"read-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=2000)
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expect and time.monotonic() < deadline:
        got += [m.value for m in consumer]
    consumer.close()
    return got


def run(spec_path: Path, keep: bool = True) -> int:
    spec = load_spec(spec_path)
    _run("lab", "up", str(spec_path))
    try:
        _run("apply", str(spec_path), "--auto-approve")
        n = produce_consume(spec.bootstrap_brokers(), "kafkaform-demo", count=10)
        print(f"Produced 10 messages with acks=all and consumed {n} back.")
        print("Bootstrap brokers:")
        _run("get-bootstrap-brokers", str(spec_path))
        return 0 if n == 10 else 1
    finally:
        if not keep:
            _run("lab", "down")
        else:
            print("The lab is still up (its hosts keep running). Take it down with: "
                  f"{Path(sys.executable).parent / 'kafkaform'} lab down", flush=True)
