"""A minimal Kafka wire-protocol client for kafkaform's read-only cluster view.

Why not kafka-python here: importing its client costs ≈ 0.25 s of CPU, more than the rest of a
no-op plan's cluster read, and a plan or a health gate needs only seven read requests
(ApiVersions with the finalized features, DescribeCluster, Metadata, ListPartitionReassignments,
DescribeConfigs, DescribeQuorum) on one plaintext or TLS socket per node. kafkaform's own
connections never use SASL (they authenticate with its admin certificate), so there is none here.
Writes (reassignments, features, users, ACLs) stay with kafka-python.

Encoding follows the Kafka protocol's flexible versions (KIP-482): compact strings and arrays
(unsigned varint length + 1, 0 = null) and tagged fields; request header v2, response header v1
(ApiVersions answers with header v0). Decoders return plain dicts keyed like the protocol's field
names (as kafka-python's `to_dict()` does), so the callers' converters read either.
"""

from __future__ import annotations

import socket
import ssl
import struct
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

API_VERSIONS, METADATA, DESCRIBE_CONFIGS = 18, 3, 32
LIST_PARTITION_REASSIGNMENTS, DESCRIBE_QUORUM, DESCRIBE_CLUSTER = 46, 55, 60
API_NAMES = {API_VERSIONS: "ApiVersions", METADATA: "Metadata", DESCRIBE_CONFIGS: "DescribeConfigs",
             LIST_PARTITION_REASSIGNMENTS: "ListPartitionReassignments", DESCRIBE_QUORUM: "DescribeQuorum",
             DESCRIBE_CLUSTER: "DescribeCluster"}
# The versions encoded here (each API's versions we can speak; the highest the node supports wins).
OURS = {API_VERSIONS: (3, 4), METADATA: (12,), DESCRIBE_CONFIGS: (4,), LIST_PARTITION_REASSIGNMENTS: (0,),
        DESCRIBE_QUORUM: (2,), DESCRIBE_CLUSTER: (0, 1, 2)}
ERRORS = {3: "UNKNOWN_TOPIC_OR_PARTITION", 5: "LEADER_NOT_AVAILABLE", 6: "NOT_LEADER_OR_FOLLOWER",
          7: "REQUEST_TIMED_OUT", 15: "COORDINATOR_NOT_AVAILABLE", 29: "TOPIC_AUTHORIZATION_FAILED",
          31: "CLUSTER_AUTHORIZATION_FAILED", 35: "UNSUPPORTED_VERSION", 41: "NOT_CONTROLLER",
          42: "INVALID_REQUEST", 58: "SASL_AUTHENTICATION_FAILED"}
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
CONFIG_SOURCES = {1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
                  4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG", 6: "DYNAMIC_BROKER_LOGGER_CONFIG",
                  7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}
MAX_RESPONSE = 64 * 2**20


class WireError(Exception):
    """A request failed: the connection, the framing, or an error code in the answer."""


class KafkaError(WireError):
    def __init__(self, api: int, code: int, message: str | None = None) -> None:
        self.code = code
        name = ERRORS.get(code, f"error {code}")
        super().__init__(f"{API_NAMES.get(api, api)}: {name}" + (f": {message}" if message else ""))


class Out:
    """Builds one request body."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def bytes(self) -> bytes:
        return b"".join(self.parts)

    def int8(self, v: int) -> Out:
        self.parts.append(struct.pack(">b", v))
        return self

    def int16(self, v: int) -> Out:
        self.parts.append(struct.pack(">h", v))
        return self

    def int32(self, v: int) -> Out:
        self.parts.append(struct.pack(">i", v))
        return self

    def bool(self, v: bool) -> Out:
        return self.int8(1 if v else 0)

    def uvarint(self, v: int) -> Out:
        out = bytearray()
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
        self.parts.append(bytes(out))
        return self

    def compact_string(self, v: str | None) -> Out:
        if v is None:
            return self.uvarint(0)
        raw = v.encode("utf-8")
        self.uvarint(len(raw) + 1)
        self.parts.append(raw)
        return self

    def string(self, v: str) -> Out:  # the request header's client id (not compact)
        raw = v.encode("utf-8")
        self.int16(len(raw))
        self.parts.append(raw)
        return self

    def compact_array(self, items: list[T] | None, each: Callable[[Out, T], object]) -> Out:
        if items is None:
            return self.uvarint(0)
        self.uvarint(len(items) + 1)
        for item in items:
            each(self, item)
        return self

    def tags(self) -> Out:  # no tagged fields
        return self.uvarint(0)


class In:
    """Reads one response body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError("response truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt: str, n: int) -> int:
        v: int = struct.unpack(fmt, self._take(n))[0]
        return v

    def int8(self) -> int:
        return self._unpack(">b", 1)

    def int16(self) -> int:
        return self._unpack(">h", 2)

    def uint16(self) -> int:
        return self._unpack(">H", 2)

    def int32(self) -> int:
        return self._unpack(">i", 4)

    def int64(self) -> int:
        return self._unpack(">q", 8)

    def bool(self) -> bool:
        return self.int8() != 0

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise WireError("varint too long")

    def uuid(self) -> str:
        return str(uuid.UUID(bytes=self._take(16)))

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode("utf-8")

    def compact_array(self, each: Callable[[In], T]) -> list[T]:
        n = self.uvarint()
        return [each(self) for _ in range(n - 1)] if n else []

    def int32_array(self) -> list[int]:
        return self.compact_array(In.int32)

    def tags(self, handlers: dict[int, Callable[[In], Any]] | None = None) -> dict[int, Any]:
        """Tagged fields: the handled ones decoded, the others skipped."""
        out: dict[int, Any] = {}
        for _ in range(self.uvarint()):
            tag, size = self.uvarint(), self.uvarint()
            raw = self._take(size)
            if handlers and tag in handlers:
                out[tag] = handlers[tag](In(raw))
        return out


def tagged(read: Callable[[In], T]) -> Callable[[In], T]:
    """A struct's reader: its fields (`read`), then its tagged fields, skipped."""

    def struct(i: In) -> T:
        value = read(i)
        i.tags()
        return value

    return struct


class Connection:
    """One socket to one node, requests answered in order. Not thread-safe."""

    def __init__(self, address: str, timeout: float, tls: ssl.SSLContext | None = None,
                 client_id: str = "kafkaform") -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.client_id = client_id
        self._correlation = 0
        raw = socket.create_connection((host, int(port)), timeout=timeout)
        try:
            self.sock: socket.socket = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
            self.sock.settimeout(timeout)
        except BaseException:
            raw.close()
            raise
        self.versions: dict[int, tuple[int, int]] = {}

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, api: int, version: int, body: bytes) -> In:
        """One request, its response positioned after the response header."""
        self._correlation += 1
        cid = self._correlation
        head = Out().int16(api).int16(version).int32(cid).string(self.client_id).tags().bytes()
        msg = head + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._recv(4))[0]
        if not 4 <= size <= MAX_RESPONSE:
            raise WireError(f"{self.address}: bad response size {size}")
        resp = In(self._recv(size))
        if resp.int32() != cid:
            raise WireError(f"{self.address}: response out of order")
        if api != API_VERSIONS:  # ApiVersions always answers with header v0 (no tagged fields)
            resp.tags()
        return resp

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise WireError(f"{self.address}: connection closed mid-response")
            buf += chunk
        return bytes(buf)

    def version(self, api: int) -> int:
        """The highest version of `api` both sides speak (asks ApiVersions first if not yet)."""
        if not self.versions:
            self._api_versions(3)
        lo, hi = self.versions.get(api, (0, -1))
        usable = [v for v in OURS[api] if lo <= v <= hi]
        if not usable:
            raise WireError(f"{self.address}: {API_NAMES[api]} versions {lo}-{hi} not supported by kafkaform's reader")
        return max(usable)

    # --- the requests -------------------------------------------------------------------------

    def api_versions(self) -> dict[str, Any]:
        """ApiVersions: the node's API version ranges (kept for `version`) and its features:
        {"supported": {name: (min, max)}, "finalized": {name: max_level}}. Below v4 a node leaves out
        the features it supports from level 0 (KAFKA-17011), so a v3 answer that offers v4 is asked
        again in v4."""
        first = not self.versions
        doc = self._api_versions(self.version(API_VERSIONS) if not first else 3)
        if first and self.version(API_VERSIONS) > 3:
            doc = self._api_versions(self.version(API_VERSIONS))
        return doc

    def _api_versions(self, version: int) -> dict[str, Any]:
        body = Out().compact_string("kafkaform").compact_string("1").tags().bytes()
        r = self.send(API_VERSIONS, version, body)
        code = r.int16()
        if code:  # (then the rest is in v0's layout)
            raise KafkaError(API_VERSIONS, code)
        keys = r.compact_array(lambda i: (i.int16(), i.int16(), i.int16(), i.tags())[:3])
        self.versions = {k: (lo, hi) for k, lo, hi in keys}
        r.int32()  # throttle
        tags = r.tags({
            0: lambda i: i.compact_array(lambda j: (j.compact_string(), j.int16(), j.int16(), j.tags())[:3]),
            2: lambda i: i.compact_array(lambda j: (j.compact_string(), j.int16(), j.int16(), j.tags())[:3]),
        })
        return {"supported": {n: (lo, hi) for n, lo, hi in tags.get(0, [])},
                "finalized": {n: hi for n, hi, _lo in tags.get(2, [])}}

    def describe_cluster(self) -> dict[str, Any]:
        """DescribeCluster (v2 on Kafka >= 4.0 lists fenced brokers too, flagged `is_fenced`)."""
        v = self.version(DESCRIBE_CLUSTER)
        body = Out().bool(False)
        if v >= 1:
            body.int8(1)  # endpoint type: brokers
        if v >= 2:
            body.bool(True)  # include fenced brokers
        r = self.send(DESCRIBE_CLUSTER, v, body.tags().bytes())
        r.int32()
        code, message = r.int16(), r.compact_string()
        if code:
            raise KafkaError(DESCRIBE_CLUSTER, code, message)
        if v >= 1:
            r.int8()
        cluster_id, controller_id = r.compact_string(), r.int32()

        def broker(i: In) -> dict[str, Any]:
            b: dict[str, Any] = {"broker_id": i.int32(), "host": i.compact_string(), "port": i.int32(),
                                 "rack": i.compact_string()}
            b["is_fenced"] = i.bool() if v >= 2 else False
            i.tags()
            return b

        return {"cluster_id": cluster_id, "controller_id": controller_id, "brokers": r.compact_array(broker)}

    def metadata(self) -> list[dict[str, Any]]:
        """Metadata v12 for every topic: name, partitions with replicas, ISR and leader."""
        body = Out().uvarint(0).bool(False).bool(False).tags().bytes()  # topics: null = all
        r = self.send(METADATA, self.version(METADATA), body)
        r.int32()
        r.compact_array(lambda i: (i.int32(), i.compact_string(), i.int32(), i.compact_string(), i.tags()))
        r.compact_string()
        r.int32()

        partition = tagged(lambda i: {
            "error_code": i.int16(), "partition_index": i.int32(), "leader_id": i.int32(),
            "leader_epoch": i.int32(), "replica_nodes": i.int32_array(), "isr_nodes": i.int32_array(),
            "offline_replicas": i.int32_array()})

        def topic(i: In) -> dict[str, Any]:
            t = {"error_code": i.int16(), "name": i.compact_string(), "topic_id": i.uuid(), "is_internal": i.bool(),
                 "partitions": i.compact_array(partition)}
            i.int32()
            i.tags()
            return t

        return r.compact_array(topic)

    def list_partition_reassignments(self, timeout_ms: int) -> list[tuple[str, int]]:
        """The (topic, partition) pairs whose reassignment is running."""
        body = Out().int32(timeout_ms).uvarint(0).tags().bytes()  # topics: null = all
        r = self.send(LIST_PARTITION_REASSIGNMENTS, self.version(LIST_PARTITION_REASSIGNMENTS), body)
        r.int32()
        code, message = r.int16(), r.compact_string()
        if code:
            raise KafkaError(LIST_PARTITION_REASSIGNMENTS, code, message)

        def part(i: In) -> int:
            index = i.int32()
            i.int32_array(), i.int32_array(), i.int32_array(), i.tags()
            return index

        def topic(i: In) -> list[tuple[str, int]]:
            name = i.compact_string() or ""
            parts = i.compact_array(part)
            i.tags()
            return [(name, p) for p in parts]

        return [tp for t in r.compact_array(topic) for tp in t]

    def describe_configs(self, resource_type: int, names: list[str], keys: list[str]
                         ) -> dict[str, dict[str, dict[str, Any]]]:
        """DescribeConfigs v4: {resource name: {config name: {"value", "config_source"}}} (only the
        asked keys). A topic deleted since it was listed is left out; other errors raise."""
        body = Out().compact_array(names, lambda o, n: o.int8(resource_type).compact_string(n).compact_array(
            keys, Out.compact_string).tags()).bool(False).bool(False).tags().bytes()
        r = self.send(DESCRIBE_CONFIGS, self.version(DESCRIBE_CONFIGS), body)
        r.int32()
        out: dict[str, dict[str, dict[str, Any]]] = {}

        def config(i: In) -> tuple[str, dict[str, Any]]:
            name, value = i.compact_string() or "", i.compact_string()
            i.bool()
            source = i.int8()
            i.bool()
            i.compact_array(lambda j: (j.compact_string(), j.compact_string(), j.int8(), j.tags()))
            i.int8()
            i.compact_string()
            i.tags()
            return name, {"value": value, "config_source": CONFIG_SOURCES.get(source, str(source))}

        def result(i: In) -> None:
            code, message = i.int16(), i.compact_string()
            i.int8()
            name = i.compact_string() or ""
            configs = dict(i.compact_array(config))
            i.tags()
            if code == 3 and resource_type == RESOURCE_TOPIC:
                return
            if code:
                raise KafkaError(DESCRIBE_CONFIGS, code, message)
            out[name] = configs

        r.compact_array(result)
        return out

    def describe_quorum(self) -> dict[str, Any]:
        """DescribeQuorum v2 for __cluster_metadata (answered by the controllers, KIP-919)."""
        body = Out().compact_array(["__cluster_metadata"], lambda o, t: o.compact_string(t).compact_array(
            [0], lambda o2, p: o2.int32(p).tags()).tags()).tags().bytes()
        r = self.send(DESCRIBE_QUORUM, 2, body)

        replica = tagged(lambda i: {
            "replica_id": i.int32(), "replica_directory_id": i.uuid(), "log_end_offset": i.int64(),
            "last_fetch_timestamp": i.int64(), "last_caught_up_timestamp": i.int64()})
        partition = tagged(lambda i: {
            "partition_index": i.int32(), "error_code": i.int16(), "error_message": i.compact_string(),
            "leader_id": i.int32(), "leader_epoch": i.int32(), "high_watermark": i.int64(),
            "current_voters": i.compact_array(replica), "observers": i.compact_array(replica)})
        topic = tagged(lambda i: {"topic_name": i.compact_string(), "partitions": i.compact_array(partition)})
        listener = tagged(lambda i: {"name": i.compact_string(), "host": i.compact_string(), "port": i.uint16()})
        node = tagged(lambda i: {"node_id": i.int32(), "listeners": i.compact_array(listener)})

        doc = {"error_code": r.int16(), "error_message": r.compact_string(), "topics": r.compact_array(topic),
               "nodes": r.compact_array(node)}
        r.tags()
        return doc
