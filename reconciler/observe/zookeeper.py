"""Cluster view from ZooKeeper: registered brokers, controller, and each ensemble member's mode.

Modes come from the `srvr` four-letter word sent over a raw socket to *every* member (kazoo's
`client.command` only reaches the one server it is connected to). ZooKeeper 3.5+ answers 4lw
commands only when whitelisted: zoo.cfg needs `4lw.commands.whitelist=srvr,mntr,ruok`; otherwise
the mode is reported as "unknown".

With ZooKeeper TLS (`security.zookeeper_tls`) the client port is TLS-only and asks for a
client certificate: kazoo sessions and the 4lw reads both connect with kafkaform's admin
certificate (`ZkTls`), verifying the server's certificate and name against the cluster CA.

Nothing here raises to the caller: failures become `zookeeper_reachable=False` plus a reason.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.retry import KazooRetry

from .model import ClusterState, PartitionState

if TYPE_CHECKING:
    from reconciler.security.zookeeper import ZkTls

_K = TypeVar("_K", bound=Hashable)

log = logging.getLogger(__name__)
# kazoo logs every dropped connection attempt; the outcome is already in zookeeper_error.
logging.getLogger("kazoo").addHandler(logging.NullHandler())

_MODE = re.compile(r"^Mode:\s*(\S+)", re.MULTILINE)


def split_hostport(hostport: str, default_port: int = 2181) -> tuple[str, int]:
    """`host:port`, `host` or `[v6]:port` -> (host, port)."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or ":" in host:
        return hostport, default_port
    return host, int(port)


def tls_context(tls: ZkTls) -> ssl.SSLContext:
    """A client context trusting the cluster's CAs only (not the system's), with kafkaform's
    certificate, verifying the server's name (its certificate's SAN is the node's host)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca)
    ctx.load_cert_chain(tls.certfile, tls.keyfile)
    return ctx


def kazoo_tls_args(tls: ZkTls | None) -> dict[str, Any]:
    """KazooClient's TLS arguments (none for a plaintext ensemble). kazoo builds its own context and
    also loads the system's CAs; the server's name is checked (check_hostname)."""
    if tls is None:
        return {}
    return {"use_ssl": True, "ca": tls.ca, "certfile": tls.certfile, "keyfile": tls.keyfile,
            "verify_certs": True, "check_hostname": True}


def four_letter_word(hostport: str, word: bytes, timeout: float, tls: ZkTls | None = None) -> str:
    """Send a 4lw command and return the whole reply (the server closes the socket when done).
    Over TLS on a TLS-only client port (ZooKeeper's Netty server answers 4lw after the handshake)."""
    host, port = split_hostport(hostport)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        s = tls_context(tls).wrap_socket(raw, server_hostname=host) if tls is not None else raw
        with s:
            s.settimeout(timeout)
            s.sendall(word)
            chunks: list[bytes] = []
            while (chunk := s.recv(65536)) and sum(map(len, chunks)) < 1 << 20:
                chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def parse_srvr(reply: str) -> str:
    """Mode from a `srvr` reply: leader/follower/standalone/observer, or why there is none."""
    m = _MODE.search(reply)
    if m:
        return m.group(1)
    if "not in the whitelist" in reply or "not executed" in reply:
        return "unknown"  # 4lw not whitelisted in zoo.cfg
    if "not currently serving" in reply:
        return "not-serving"  # up, but no quorum
    return "unknown"


def ensemble_mode(hostport: str, timeout: float, tls: ZkTls | None = None) -> str:
    try:
        return parse_srvr(four_letter_word(hostport, b"srvr", timeout, tls))
    except OSError:  # (ssl.SSLError too: a server that is starting, or refuses the handshake)
        return "down"


def _broker_endpoint(data: dict) -> str:
    endpoints = data.get("endpoints") or []
    if endpoints:
        return ",".join(str(e) for e in endpoints)
    return f"PLAINTEXT://{data.get('host')}:{data.get('port')}"


def read_cluster(zk_hosts: list[str], timeout: float = 3.0, auth: list[tuple[str, str]] | None = None,
                 tls: ZkTls | None = None) -> ClusterState:
    """Broker registrations, controller and ensemble modes (keyed by host); partitions: see kafka_admin."""
    if not zk_hosts:
        return ClusterState(zookeeper_error="no ZooKeeper hosts given")
    with ThreadPoolExecutor(max_workers=len(zk_hosts) + 1) as ex:
        modes_f = {h: ex.submit(ensemble_mode, h, timeout, tls) for h in zk_hosts}
        try:
            state = _read_znodes(zk_hosts, timeout, auth, tls)
        except Exception as e:  # never raise to the caller: the plan reports it instead
            state = ClusterState(zookeeper_error=_reason(e, zk_hosts, timeout))
        hosts = [split_hostport(h)[0] for h in modes_f]
        # Keyed by host (what plan/diff look up); only when one host runs several servers (tests)
        # would that collide, and then those keep their host:port.
        modes: dict[str, str] = {}
        for h, f in modes_f.items():
            host = split_hostport(h)[0]
            modes[host if hosts.count(host) == 1 else h] = f.result()
    return state.model_copy(update={"zookeeper_modes": modes})


def _reason(e: Exception, zk_hosts: list[str], timeout: float) -> str:
    name = type(e).__name__
    if name in ("KazooTimeoutError", "TimeoutError"):
        return f"no ZooKeeper session with {','.join(zk_hosts)} within {timeout:g}s"
    return f"{name}: {e}" if str(e) else name


TOPIC_THROTTLES = ("leader.replication.throttled.replicas", "follower.replication.throttled.replicas")
BROKER_THROTTLES = ("leader.replication.throttled.rate", "follower.replication.throttled.rate")


def _configs(client: KazooClient, paths: Mapping[_K, str]) -> dict[_K, dict[str, str]]:
    """Dynamic config overrides (`/config/...` znodes), pipelined; missing znodes are skipped."""
    pending = {k: client.get_async(p) for k, p in paths.items()}
    out: dict[_K, dict[str, str]] = {}
    for k, res in pending.items():
        try:
            raw, _ = res.get()
        except NoNodeError:
            continue
        out[k] = {str(a): str(b) for a, b in (json.loads(raw.decode("utf-8")).get("config") or {}).items()}
    return out


def read_topic_configs(client: KazooClient, topics: list[str]) -> tuple[dict[str, int], tuple[str, ...]]:
    """Topic-level min.insync.replicas overrides, and topics carrying replication throttles."""
    configs = _configs(client, {t: f"/config/topics/{t}" for t in topics})
    min_isr: dict[str, int] = {}
    throttled: list[str] = []
    for t, cfg in configs.items():
        value = cfg.get("min.insync.replicas")
        if value is not None and value.strip().isdigit():
            min_isr[str(t)] = int(value)
        if any(cfg.get(k) for k in TOPIC_THROTTLES):
            throttled.append(str(t))
    return min_isr, tuple(sorted(throttled))


def read_throttled_brokers(client: KazooClient, broker_ids: list[int]) -> tuple[int, ...]:
    configs = _configs(client, {b: f"/config/brokers/{b}" for b in broker_ids})
    return tuple(sorted(int(b) for b, cfg in configs.items() if any(cfg.get(k) for k in BROKER_THROTTLES)))


def read_partitions(client: KazooClient) -> tuple[PartitionState, ...]:
    """Replica assignments and ISR/leader of every partition, from the znodes the controller writes.

    In ZooKeeper mode these znodes are the source of truth (the Admin API answers from the
    controller's copy of them). All reads are pipelined (`get_async`), so thousands of partitions
    cost a few round trips, and no Kafka client has to be loaded for a plan.
    """
    try:
        topics = client.get_children("/brokers/topics")
    except NoNodeError:
        return ()
    assign = {t: client.get_async(f"/brokers/topics/{t}") for t in topics}
    replicas: dict[tuple[str, int], tuple[int, ...]] = {}
    moving: set[tuple[str, int]] = set()
    for t, res in assign.items():
        try:
            raw, _ = res.get()
        except NoNodeError:
            continue  # topic deleted between list and read
        doc = json.loads(raw.decode("utf-8"))
        for p, reps in (doc.get("partitions") or {}).items():
            replicas[(t, int(p))] = tuple(int(r) for r in reps)
        for field in ("adding_replicas", "removing_replicas"):  # a reassignment in progress (2.4+)
            moving.update((t, int(p)) for p, reps in (doc.get(field) or {}).items() if reps)
    states = {k: client.get_async(f"/brokers/topics/{k[0]}/partitions/{k[1]}/state") for k in replicas}
    out: list[PartitionState] = []
    for (t, p), res in states.items():
        try:
            raw, _ = res.get()
            st = json.loads(raw.decode("utf-8"))
        except NoNodeError:
            st = {}  # created but no leader elected yet
        leader = st.get("leader", -1)
        out.append(PartitionState(topic=t, partition=p, replicas=replicas[(t, p)],
                                  isr=tuple(int(r) for r in st.get("isr", ())),
                                  leader=None if leader is None or int(leader) < 0 else int(leader),
                                  reassigning=(t, p) in moving))
    return tuple(sorted(out, key=lambda x: (x.topic, x.partition)))


# Kafka's znodes made at a broker's first start. On a cluster that turned zookeeper.set.acl on
# later these stay world-writable (new znodes get ACLs, old ones keep theirs) until Kafka's
# ZkSecurityMigrator sets them; any of them writable by anyone means that has not happened.
KAFKA_ZNODES = ("/admin", "/brokers", "/brokers/ids", "/brokers/topics", "/cluster", "/cluster/id", "/config",
                "/config/changes", "/config/topics", "/controller_epoch")
_WRITE = 2 | 4 | 8 | 16  # ZooKeeper perms: WRITE, CREATE, DELETE, ADMIN


def read_open_znodes(client: KazooClient) -> tuple[str, ...]:
    """Which of Kafka's znodes anyone may change (world:anyone with more than READ), pipelined."""
    pending = {p: client.get_acls_async(p) for p in KAFKA_ZNODES}
    out = []
    for path, res in pending.items():
        try:
            acls, _ = res.get()
        except NoNodeError:
            continue
        if any(a.id.scheme == "world" and a.perms & _WRITE for a in acls):
            out.append(path)
    return tuple(out)


def parse_members(config: str) -> dict[int, str]:
    """`server.<myid>=<spec>` lines of ZooKeeper's /zookeeper/config (the `version=` line dropped)."""
    out: dict[int, str] = {}
    for line in config.splitlines():
        key, _, value = line.strip().partition("=")
        if key.startswith("server.") and key[7:].isdigit():
            out[int(key[7:])] = value
    return out


def read_members(client: KazooClient) -> dict[int, str]:
    try:
        raw, _ = client.get("/zookeeper/config")
    except NoNodeError:
        return {}
    return parse_members(raw.decode("utf-8"))


def _client(zk_hosts: list[str], timeout: float, auth: list[tuple[str, str]] | None = None,
            tls: ZkTls | None = None) -> KazooClient:
    """A session for kafkaform's reads; `auth`: its login (the super user's digest on a secured
    cluster, whose sensitive znodes only the brokers' and the super user may read); `tls`: its
    certificate, on a TLS ensemble."""
    return KazooClient(
        auth_data=auth or None,
        hosts=",".join(zk_hosts),
        timeout=max(timeout * 2, 4.0),  # session timeout; servers clamp to 2..20 ticks anyway
        connection_retry=KazooRetry(max_tries=0, ignore_expire=False),
        command_retry=KazooRetry(max_tries=1, deadline=timeout),
        read_only=True,
        **kazoo_tls_args(tls),
    )


def _close(client: KazooClient) -> None:
    try:
        client.stop()
        client.close()
    except Exception:  # pragma: no cover - best effort cleanup
        log.debug("kazoo cleanup failed", exc_info=True)


def read_state(client: KazooClient, acls: bool = False) -> ClusterState:
    """Registrations, controller, assignments, ISR and topic min ISR through a started client;
    `acls`: also which of Kafka's znodes anyone may change (plans need it, health polls do not)."""
    endpoints: dict[int, str] = {}
    try:
        ids = client.get_children("/brokers/ids")
    except NoNodeError:
        ids = []
    for bid in ids:
        try:
            raw, _ = client.get(f"/brokers/ids/{bid}")
        except NoNodeError:
            continue  # broker deregistered between list and read
        endpoints[int(bid)] = _broker_endpoint(json.loads(raw.decode("utf-8")))
    controller = None
    try:
        raw, _ = client.get("/controller")
        controller = json.loads(raw.decode("utf-8")).get("brokerid")
    except NoNodeError:
        pass
    parts = read_partitions(client)
    min_isr, throttled_topics = read_topic_configs(client, sorted({p.topic for p in parts}))
    return ClusterState(
        zookeeper_members=read_members(client),
        open_znodes=read_open_znodes(client) if acls else (),
        throttled_topics=throttled_topics,
        throttled_brokers=read_throttled_brokers(client, sorted(endpoints)),
        zookeeper_reachable=True,
        broker_ids=tuple(sorted(endpoints)),
        broker_endpoints=endpoints,
        controller_id=int(controller) if controller is not None else None,
        partitions=parts,
        topic_min_isr=min_isr,
    )


def _read_znodes(zk_hosts: list[str], timeout: float, auth: list[tuple[str, str]] | None = None,
                 tls: ZkTls | None = None) -> ClusterState:
    client = _client(zk_hosts, timeout, auth, tls)
    try:
        client.start(timeout=timeout)
        return read_state(client, acls=True)
    finally:
        _close(client)


class SessionReader:
    """One ZooKeeper session reused across many reads (health gates poll several times a second
    through a roll; a new session per poll would cost more than the read). Reconnects when the
    session is lost; never raises from read()."""

    def __init__(self, zk_hosts: list[str], timeout: float = 3.0, auth: list[tuple[str, str]] | None = None,
                 tls: ZkTls | None = None) -> None:
        self.zk_hosts = zk_hosts
        self.timeout = timeout
        self.auth = auth
        self.tls = tls
        self._client: KazooClient | None = None

    def read(self) -> ClusterState:
        try:
            if self._client is None or not self._client.connected:
                self.close()
                self._client = _client(self.zk_hosts, self.timeout, self.auth, self.tls)
                self._client.start(timeout=self.timeout)
            return read_state(self._client)
        except Exception as e:  # the caller's gate reports it and keeps polling
            self.close()
            return ClusterState(zookeeper_error=_reason(e, self.zk_hosts, self.timeout))

    def close(self) -> None:
        if self._client is not None:
            _close(self._client)
            self._client = None
