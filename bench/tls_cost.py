"""What TLS + SASL/SCRAM costs clients on a cluster kafkaform secured, against PLAINTEXT on the
same cluster in the same run.

The lab's secured KRaft cluster (examples/lab-secure.yaml: 3 controllers + 3 brokers, Kafka
4.4.0, node certificates between brokers and controllers) with one more listener, PLAINTEXT on
9095 (so `security.allow_anonymous: true` for this benchmark only). Then, same cluster, same topic
(RF 3, min ISR 2, 6 partitions):

1. the seed's load, Kafka's own ProducerPerformance (4.4.0 kafka-tools, on this machine) at
   10,000 records/s x 1,000 B, acks=all, against the PLAINTEXT listener and against the SASL_SSL
   listener (client properties from `kafkaform client-config`): first one unmeasured run of
   `--warmup-s` on each (right after the create the JIT compilers hold the cores), then turns
   in alternating order (P,S then
   S,P, ...: a cluster still warming up, JIT and page cache, must not favour whichever goes
   second). Each turn is one producer run: `--warmup-s` of records it leaves out of its
   steady-state statistics (--warmup-records), then `--measure-s` measured; avg, p50, p99 latency
   of both (median over the rounds) and their ratio (goal: p50 <= 1.3 x PLAINTEXT);
2. a reconnect storm: 1,000 new connections, 20 at a time, each made ready to serve requests
   (PLAINTEXT: TCP + ApiVersions; SASL_SSL: TCP + TLS handshake with host name verification +
   SaslHandshake + the two SCRAM-SHA-512 SaslAuthenticate round trips + ApiVersions).

Usage (root): python3 bench/tls_cost.py [--measure-s 60] [--warmup-s 30] [--rounds 2] [--connections 1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from _common import RATE, REPO, SIZE, producer_perf, temp_home

from reconciler import artifacts, lab
from reconciler.lab.workload import create_topic

HOSTS = ["10.213.0.11", "10.213.0.12", "10.213.0.13"]
PLAIN = ",".join(f"{h}:9095" for h in HOSTS)
SCRAM = ",".join(f"{h}:9094" for h in HOSTS)
PASSWORD = "bench-scram-password-0001"


def _frame(req: object, version: int, correlation: int) -> bytes:
    req.with_header(correlation_id=correlation, client_id="tls-cost")  # type: ignore[attr-defined]
    return req.encode(version=version, header=True, framed=True)  # type: ignore[attr-defined]


def _recv(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    return exactly(struct.unpack(">i", exactly(4))[0])


def connect_plain(host: str, port: int) -> None:
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest

    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(_frame(ApiVersionsRequest(version=3, client_software_name="tls-cost",
                                            client_software_version="1"), 3, 1))
        _recv(s)


def connect_scram(host: str, port: int, ctx: ssl.SSLContext, user: str, password: str) -> None:
    from kafka.net.sasl.scram import ScramClient
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest
    from kafka.protocol.sasl import SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest

    with socket.create_connection((host, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(_frame(SaslHandshakeRequest(version=1, mechanism="SCRAM-SHA-512"), 1, 1))
        _recv(s)
        scram = ScramClient(user, password, "SCRAM-SHA-512")
        s.sendall(_frame(SaslAuthenticateRequest(version=1, auth_bytes=scram.first_message()), 1, 2))
        first = SaslAuthenticateResponse.decode(_recv(s), version=1, header=True)
        if first.error_code:
            raise ConnectionError(f"SCRAM refused: {first.error_message}")
        scram.process_server_first_message(first.auth_bytes)
        s.sendall(_frame(SaslAuthenticateRequest(version=1, auth_bytes=scram.final_message()), 1, 3))
        final = SaslAuthenticateResponse.decode(_recv(s), version=1, header=True)
        if final.error_code:
            raise ConnectionError(f"SCRAM refused: {final.error_message}")
        scram.process_server_final_message(final.auth_bytes)
        s.sendall(_frame(ApiVersionsRequest(version=3, client_software_name="tls-cost",
                                            client_software_version="1"), 3, 4))
        _recv(s)


def storm(n: int, connect: object) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as ex:
        list(ex.map(lambda i: connect(HOSTS[i % 3]), range(n)))  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure-s", type=int, default=60)
    ap.add_argument("--warmup-s", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=1000)
    args = ap.parse_args()
    work = Path(temp_home("kf-bench-tls-"))  # kafkaform's home, and the spec and client files
    env = {**os.environ, "KAFKAFORM_HOME": str(work)}
    cli = [sys.executable, "-m", "reconciler.cli"]

    def kf(*a: str) -> str:
        p = subprocess.run(cli + list(a), env=env, text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"kafkaform {' '.join(a)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p.stdout

    pw = work / "bench.pw"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    data = yaml.safe_load((REPO / "examples" / "lab-secure.yaml").read_text())
    data["kafka"]["listeners"].append({"name": "PLAIN", "port": 9095, "protocol": "PLAINTEXT"})
    data["security"] = {"allow_anonymous": True, "users": [{"name": "bench", "password": {"file": str(pw)}}],
                        "acls": []}
    spec = work / "tls-cost.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        kf("lab", "up", str(spec))
        kf("apply", str(spec), "--auto-approve")
        tls_dir = work / "clusters" / "secure" / "tls"
        admin = {"security_protocol": "SSL", "ssl_cafile": str(tls_dir / "ca.crt"),
                 "ssl_certfile": str(tls_dir / "admin.crt"), "ssl_keyfile": str(tls_dir / "admin.key")}
        create_topic(",".join(f"{h}:9092" for h in HOSTS), "tls-cost", partitions=6, replication_factor=3,
                     min_insync_replicas=2, client=admin)
        scram_props = work / "bench.properties"
        kf("client-config", str(spec), "--user", "bench", "--out", str(scram_props))
        plain_props = work / "plain.properties"
        plain_props.write_text("security.protocol=PLAINTEXT\n")
        libs = artifacts.resolve_maven("kafka", data["kafka"]["version"]) / "libs"
        listeners = [("PLAINTEXT", plain_props, PLAIN), ("SASL_SSL", scram_props, SCRAM)]
        for _, props, bootstrap in listeners:  # the cluster's first minutes under load are the JIT's: not measured
            producer_perf(libs, bootstrap, "tls-cost", 0, args.warmup_s, props)
        runs: dict[str, list[dict[str, float]]] = {"PLAINTEXT": [], "SASL_SSL": []}
        for i in range(args.rounds):  # each turn: one producer run, its warm-up left out of the statistics
            for label, props, bootstrap in (listeners if i % 2 == 0 else listeners[::-1]):
                whole, r, _ = producer_perf(libs, bootstrap, "tls-cost", args.warmup_s, args.measure_s, props)
                runs[label].append(r)
                print(f"round {i + 1} {label:9} {args.warmup_s} s warm-up + {args.measure_s} s at {RATE} rec/s x "
                      f"{SIZE} B, acks=all: {r['rate']:.0f} rec/s, avg {r['avg']:.2f} ms, p50 {r['p50']:.0f} ms, "
                      f"p95 {r['p95']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms "
                      f"(whole run with the warm-up: avg {whole['avg']:.1f} ms)", flush=True)
        results = {label: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for label, rs in runs.items()}
        for label, r in results.items():
            print(f"median {label:9} avg {r['avg']:.2f} ms, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms")
        p, s = results["PLAINTEXT"], results["SASL_SSL"]
        ratio = s["p50"] / p["p50"] if p["p50"] else float("inf")
        print(f"SASL_SSL / PLAINTEXT: avg {s['avg'] / p['avg']:.2f}x, p50 {ratio:.2f}x (goal <= 1.3), "
              f"p99 {s['p99'] / max(p['p99'], 1e-9):.2f}x")
        ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        t_plain = storm(args.connections, lambda h: connect_plain(h, 9095))
        t_scram = storm(args.connections, lambda h: connect_scram(h, 9094, ctx, "bench", PASSWORD))
        print(f"reconnect storm, {args.connections} connections (20 at a time): PLAINTEXT {t_plain:.2f} s "
              f"({args.connections / t_plain:.0f}/s), SASL_SSL + SCRAM-SHA-512 {t_scram:.2f} s "
              f"({args.connections / t_scram:.0f}/s): {t_scram / t_plain:.1f}x")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
