"""The seed's load on the cluster kafkaform builds vs the same hosts running Kafka's stock setup.

Kafka's own ProducerPerformance (from the kafka-tools jar of the same build, run on the control
machine) at 10,000 records/s of 1,000 bytes with acks=all, to an RF 3 topic with min ISR 2, in
one producer run: a warm-up (30 s by default) that the tool leaves out of its steady-state
statistics (`--warmup-records`), then 60 s measured (its steady-state summary: avg, p50, p99). Against the
default lab cluster as kafkaform builds it (3 KRaft controllers + 3 brokers, Kafka 4.4.0), and on
the same hosts against brokers and controllers started the way Kafka's distribution does it: the
stock `config/broker.properties` / `config/controller.properties` (only ids, addresses and the
quorum filled in) and `kafka-server-start.sh`'s flags (-Xmx1G -Xms1G, the G1 flags). Goal:
kafkaform / stock <= 1.0 (its configuration costs nothing).

With `--rounds N` the two setups take turns N times, the order alternating each round (ours first,
then stock first, ...); every turn starts that setup's JVMs afresh, so each is measured after its
own warm-up, on a fresh topic. The ratio is of the medians.

It also shows why the first run after a create is slow: the warm-up's first intervals, and the
CPU seconds the brokers' JIT compiler threads spent during it.

Usage (root): python3 bench/seed_load.py [--measure-s 60] [--warmup-s 30] [--heap 1g] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _common import REPO, producer_perf, temp_home

from reconciler import artifacts, lab
from reconciler.lab.workload import create_topic, delete_topic
from reconciler.spec import load_spec

SPEC = REPO / "examples" / "lab.yaml"
HOSTS = {"kf1": "10.213.0.11", "kf2": "10.213.0.12", "kf3": "10.213.0.13"}
BOOTSTRAP = ",".join(f"{a}:9092" for a in HOSTS.values())
STOCK_COMMON = """num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""
STOCK_FLAGS = ["-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
               "-Djava.awt.headless=true"]


def jit_cpu_s(unit: str) -> float:
    """CPU seconds the JIT compiler threads of each host's `unit` process used, summed over hosts."""
    total = 0.0
    for name in HOSTS:
        script = (f"p=$(systemctl show -p MainPID --value {unit}); for t in /proc/$p/task/*; do "
                  "case \"$(cat $t/comm)\" in C1*|C2*) awk '{print $14+$15}' $t/stat;; esac; done")
        out = lab.exec_in(name, ["sh", "-c", script]).stdout.split()
        total += sum(int(x) for x in out) / os.sysconf("SC_CLK_TCK")
    return total


def measure(label: str, libs: Path, warmup: int, seconds: int, unit: str) -> dict[str, float]:
    """One turn on a topic of its own, deleted afterwards (each turn writes ~2 GB per replica)."""
    topic = f"seed-{uuid.uuid4().hex[:8]}"
    create_topic(BOOTSTRAP, topic, partitions=6, replication_factor=3, min_insync_replicas=2)
    try:
        return _measure(label, libs, warmup, seconds, unit, topic)
    finally:
        delete_topic(BOOTSTRAP, topic)


def _measure(label: str, libs: Path, warmup: int, seconds: int, unit: str, topic: str) -> dict[str, float]:
    jit0 = jit_cpu_s(unit)
    t0 = time.monotonic()
    whole, result, intervals = producer_perf(libs, BOOTSTRAP, topic, warmup, seconds)
    print(f"-- {label}: {warmup} s warm-up + {seconds} s in one producer run: whole run avg {whole['avg']:.1f} ms, "
          f"max {whole['max']:.0f} ms; brokers' JIT compiler threads used {jit_cpu_s(unit) - jit0:.1f} CPU s "
          f"of {time.monotonic() - t0:.0f} s")
    for line in intervals[:4]:
        print(f"     {line.strip()}")
    print(f"   steady state ({seconds} s after the warm-up): {result['rate']:.0f} rec/s, avg {result['avg']:.2f} ms, "
          f"p50 {result['p50']:.0f} ms, p95 {result['p95']:.0f} ms, p99 {result['p99']:.0f} ms, "
          f"max {result['max']:.0f} ms")
    return result


UNITS = {"ours": ("kafka-controller.service", "kafka.service"),
         "stock": ("stock-controller.service", "stock-broker.service")}


def stop(setup: str) -> None:
    """Every broker first, then the controllers: a broker stopping after the quorum lost its
    majority waits out its whole controlled-shutdown timeout."""
    for unit in reversed(UNITS[setup]):
        for name in HOSTS:
            r = lab.exec_in(name, ["systemctl", "stop", unit])
            if r.returncode not in (0, 5):  # 5: not loaded (a transient stock unit that never ran or ended)
                raise lab.LabError(f"{name}: systemctl stop {unit}: {r.stderr.strip()}")


def start_ours() -> None:
    stop("stock")
    stop("ours")  # (the previous turn may have been ours: start afresh, or its JVMs come in warm)
    for unit in UNITS["ours"]:
        for name in HOSTS:
            lab.exec_in(name, ["systemctl", "start", unit], check=True)
    wait_brokers()


def start_stock(libs_on_host: str) -> None:
    """Kafka's stock setup on the same hosts, kafkaform's units stopped: formatted the first time,
    then started by the script that left on each host."""
    stop("ours")
    stop("stock")  # (the previous turn may have been the stock setup's: start it afresh too)
    if lab.exec_in("kf1", ["test", "-x", "/etc/stock/start.sh"]).returncode != 0:
        stock_cluster(libs_on_host)
    for name in HOSTS:
        lab.exec_in(name, ["/etc/stock/start.sh"], check=True, timeout=120)
    wait_brokers()


def stock_cluster(libs_on_host: str) -> None:
    """Format the stock controller's and broker's storage; write their start script."""
    cluster_id = subprocess.run(["java", "-cp", f"{libs_on_host_local()}/*", "kafka.tools.StorageTool",
                                 "random-uuid"], text=True, capture_output=True, check=True).stdout.strip()
    from reconciler.pipeline import new_kafka_uuid

    voters = ",".join(f"{100 + i}@{a}:9093:{new_kafka_uuid()}" for i, a in enumerate(HOSTS.values(), 1))
    quorum = ",".join(f"{a}:9093" for a in HOSTS.values())
    for i, (name, addr) in enumerate(HOSTS.items(), 1):
        ctrl = (f"process.roles=controller\nnode.id={100 + i}\ncontroller.quorum.bootstrap.servers={quorum}\n"
                f"listeners=CONTROLLER://{addr}:9093\nadvertised.listeners=CONTROLLER://{addr}:9093\n"
                "controller.listener.names=CONTROLLER\nlog.dirs=/var/lib/stock/controller\n"
                "num.recovery.threads.per.data.dir=1\n" + STOCK_COMMON)
        broker = (f"process.roles=broker\nnode.id={i}\ncontroller.quorum.bootstrap.servers={quorum}\n"
                  f"listeners=PLAINTEXT://{addr}:9092\ninter.broker.listener.name=PLAINTEXT\n"
                  f"advertised.listeners=PLAINTEXT://{addr}:9092\ncontroller.listener.names=CONTROLLER\n"
                  "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,"
                  "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\nlog.dirs=/var/lib/stock/broker\n"
                  "num.recovery.threads.per.data.dir=2\n" + STOCK_COMMON)
        script = f"""set -e
mkdir -p /var/lib/stock /etc/stock
cat > /etc/stock/controller.properties <<'EOF'
{ctrl}EOF
cat > /etc/stock/broker.properties <<'EOF'
{broker}EOF
cp /etc/kafka/log4j2.properties /etc/stock/log4j2.properties
java -cp '{libs_on_host}/*' kafka.tools.StorageTool format -c /etc/stock/controller.properties -t {cluster_id} \
  --initial-controllers '{voters}' >/dev/null
java -cp '{libs_on_host}/*' kafka.tools.StorageTool format -c /etc/stock/broker.properties -t {cluster_id} >/dev/null
chown -R kafka:kafka /var/lib/stock
cat > /etc/stock/start.sh <<'EOF'
#!/bin/sh
set -e
for role in controller broker; do
  systemctl reset-failed stock-$role 2>/dev/null || true  # stopped Java exits 143: a failed unit
  systemd-run --collect --unit=stock-$role -p User=kafka /usr/bin/java {' '.join(STOCK_FLAGS)} \
    -Dkafka.logs.dir=/var/lib/stock/logs-$role -Dlog4j2.configurationFile=/etc/stock/log4j2.properties \
    -cp '{libs_on_host}/*' kafka.Kafka /etc/stock/$role.properties
done
EOF
chmod 0755 /etc/stock/start.sh
"""
        lab.exec_in(name, ["sh", "-c", script], check=True, timeout=300)


def libs_on_host_local() -> Path:
    return artifacts.resolve_maven("kafka", load_spec(SPEC).kafka.version) / "libs"


def wait_brokers(timeout: float = 180) -> None:
    from reconciler.observe import kraft
    from reconciler.observe.connect import Endpoint

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = kraft.read_cluster(Endpoint(tuple(BOOTSTRAP.split(","))),
                                Endpoint(tuple(f"{a}:9093" for a in HOSTS.values())))
        if len(st.unfenced_brokers) == 3 and st.quorum and st.quorum.leader_id:
            return
        time.sleep(1)
    raise SystemExit("the stock cluster did not come up")


def summary(results: dict[str, list[dict[str, float]]]) -> None:
    """Each run's figure and the ratio of the medians."""
    for key in ("avg", "p50", "p99"):
        a = [x[key] for x in results["ours"]]
        b = [x[key] for x in results["stock"]]
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{key}: kafkaform {fmt_ms(a)} median {ma:.2f} ms; stock {fmt_ms(b)} median {mb:.2f} ms; "
              f"ratio of medians {ma / max(mb, 1e-9):.2f} (goal <= 1.0)")


def fmt_ms(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.1f}" for x in xs) + "]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure-s", type=int, default=60)
    ap.add_argument("--warmup-s", type=int, default=30)
    ap.add_argument("--heap", help="give kafkaform's brokers and controllers this heap (e.g. 1g, the stock "
                    "start script's) instead of the lab spec's, to tell heap from configuration")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure both setups this many times, alternating which goes first")
    args = ap.parse_args()
    home = temp_home("kf-bench-seed-")
    spec = SPEC
    if args.heap:
        import yaml

        data = yaml.safe_load(SPEC.read_text())
        data["kafka"]["heap"] = data["kafka"]["controller_heap"] = args.heap
        spec = Path(home) / "lab-heap.yaml"
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "KAFKAFORM_HOME": home}
    cli = [sys.executable, "-m", "reconciler.cli"]
    libs = libs_on_host_local()
    (libs.parent / "tools-log4j2.properties").write_text("rootLogger.level = warn\n")
    try:
        for args_ in (["lab", "up", str(spec)], ["apply", str(spec), "--auto-approve"]):
            p = subprocess.run(cli + args_, env=env, text=True, capture_output=True)
            if p.returncode != 0:
                raise SystemExit(p.stdout[-2000:] + p.stderr[-2000:])
        home_on_host = lab.exec_in("kf1", ["sh", "-c", "ls -d /opt/kafka/kafka-*"], check=True).stdout.strip()
        results: dict[str, list[dict[str, float]]] = {"ours": [], "stock": []}
        for r in range(args.rounds):
            for setup in (("ours", "stock") if r % 2 == 0 else ("stock", "ours")):
                if setup == "ours":
                    if r > 0:
                        start_ours()
                    label = f"round {r + 1}: kafkaform's cluster ({'just created' if r == 0 else 'started afresh'})"
                    results["ours"].append(measure(label, libs, args.warmup_s, args.measure_s, "kafka"))
                else:
                    start_stock(f"{home_on_host}/libs")
                    label = f"round {r + 1}: stock setup on the same hosts (started afresh)"
                    results["stock"].append(measure(label, libs, args.warmup_s, args.measure_s, "stock-broker"))
        summary(results)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
