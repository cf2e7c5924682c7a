"""reconciler.artifacts.resolve_maven against Maven Central for real (cached in $KAFKAFORM_CACHE)."""

from __future__ import annotations

import hashlib
import shutil
import tarfile

import pytest

from reconciler import artifacts

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mvn") is None, reason="needs mvn and Maven Central"),
]


def test_resolve_kafka_391_manifest_matches_jars() -> None:
    adir = artifacts.resolve_maven("kafka", artifacts.DEFAULT_KAFKA_VERSION)
    assert adir == artifacts.cache_dir() / "artifacts" / "kafka-3.9.1"
    libs = adir / "libs"
    m = artifacts.verify(adir)
    assert (m["name"], m["version"]) == ("kafka", "3.9.1")
    for jar in (
        "kafka_2.13-3.9.1.jar",
        "kafka-tools-3.9.1.jar",  # ReassignPartitionsCommand & co.
        "kafka-clients-3.9.1.jar",
        "zookeeper-3.8.4.jar",
        "slf4j-reload4j-1.7.36.jar",
        "reload4j-1.2.25.jar",
    ):
        assert jar in m["files"], jar
    assert not [j for j in m["files"] if j.startswith("logback")], "only one slf4j binding (reload4j)"
    for jar, sha in m["files"].items():
        assert hashlib.sha256((libs / jar).read_bytes()).hexdigest() == sha, jar
    assert sorted(p.name for p in libs.iterdir()) == sorted(m["files"])
    # second call is a cache hit
    msgs: list[str] = []
    assert artifacts.resolve_maven("kafka", "3.9.1", msgs.append) == adir
    assert msgs and "cached" in msgs[0]


def test_resolve_zookeeper_and_pack() -> None:
    adir = artifacts.resolve_maven("zookeeper", artifacts.DEFAULT_ZOOKEEPER_VERSION)
    m = artifacts.verify(adir)
    for jar in ("zookeeper-3.8.4.jar", "logback-classic-1.2.13.jar", "metrics-core-4.1.12.1.jar"):
        assert jar in m["files"], jar
    packed = artifacts.pack(adir)
    assert packed.artifact_id == f"zookeeper-3.8.4-{m['sha256'][:12]}"
    with tarfile.open(packed.tarball) as tar:
        assert sorted(tar.getnames()) == ["libs"] + sorted(f"libs/{j}" for j in m["files"])
    assert artifacts.pack(adir) == packed
