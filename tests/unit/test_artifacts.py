"""reconciler.artifacts without network or mvn: fake jars, locally built fake release tarballs."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from reconciler import artifacts
from reconciler.artifacts import ArtifactError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("KAFKAFORM_CACHE", str(root))
    return root


KAFKA_JARS = {
    "kafka_2.13-3.9.1.jar": b"kafka main",
    "kafka-clients-3.9.1.jar": b"clients",
    "kafka_2.13-3.9.1-sources.jar": b"sources, not the main jar",
    "slf4j-api-1.7.36.jar": b"slf4j",
}
ZK_JARS = {
    "zookeeper-3.8.4.jar": b"zk main",
    "zookeeper-jute-3.8.4.jar": b"jute",
    "logback-core-1.2.13.jar": b"lb",
}


def make_libs(where: Path, jars: dict[str, bytes]) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name, data in jars.items():
        (where / name).write_bytes(data)
    return where


def make_release(path: Path, top: str, libdir: str, jars: dict[str, bytes]) -> str:
    """A tarball shaped like an Apache release (top dir, bin/, config/, lib[s]/); returns its sha512."""
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add(f"{top}/bin/kafka-server-start.sh", b"#!/bin/sh\n")
        add(f"{top}/config/server.properties", b"broker.id=0\n")
        add(f"{top}/{libdir}/licenses/LICENSE.txt", b"not a jar\n")
        for name, data in jars.items():
            add(f"{top}/{libdir}/{name}", data)
    return hashlib.sha512(path.read_bytes()).hexdigest()


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKAFORM_CACHE")
    assert artifacts.cache_dir() == Path("/var/cache/kafkaform")
    monkeypatch.setenv("KAFKAFORM_CACHE", "/x/y")
    assert artifacts.cache_dir() == Path("/x/y")


def test_from_libs_dir_writes_manifest(tmp_path: Path, cache: Path) -> None:
    src = make_libs(tmp_path / "prepared" / "libs", KAFKA_JARS)
    adir = artifacts.from_libs_dir(src.parent, "kafka")  # parent of libs/ is accepted too
    m = json.loads((adir / "manifest.json").read_text())
    assert m["name"] == "kafka" and m["version"] == "3.9.1"
    assert m["files"] == {n: hashlib.sha256(d).hexdigest() for n, d in KAFKA_JARS.items()}
    lines = "".join(f"{m['files'][n]}  {n}\n" for n in sorted(m["files"]))
    assert m["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert adir == cache / "artifacts" / f"kafka-3.9.1-{m['sha256'][:12]}"
    assert sorted(p.name for p in (adir / "libs").iterdir()) == sorted(KAFKA_JARS)
    # importing the same content again lands in the same place
    assert artifacts.from_libs_dir(src, "kafka", "3.9.1") == adir


def test_from_libs_dir_rejects_wrong_tree(tmp_path: Path) -> None:
    src = make_libs(tmp_path / "libs", ZK_JARS)
    with pytest.raises(ArtifactError, match=r"no kafka main jar \(kafka_<scala>-<version>.jar\)"):
        artifacts.from_libs_dir(src, "kafka")
    with pytest.raises(ArtifactError, match="not a directory"):
        artifacts.from_libs_dir(tmp_path / "missing", "zookeeper")
    with pytest.raises(ArtifactError, match="version '3.9.0' given but the main jar says '3.8.4'"):
        artifacts.from_libs_dir(src, "zookeeper", "3.9.0")
    with pytest.raises(ArtifactError, match="unknown artifact name 'kafak'"):
        artifacts.from_libs_dir(src, "kafak")  # type: ignore[arg-type]
    make_libs(src, {"zookeeper-3.9.2.jar": b"other"})
    with pytest.raises(ArtifactError, match="several zookeeper main jars"):
        artifacts.from_libs_dir(src, "zookeeper")


def test_from_tarball_kafka_and_zookeeper_layouts(tmp_path: Path) -> None:
    ktgz = tmp_path / "kafka_2.13-3.9.1.tgz"
    ksha = make_release(ktgz, "kafka_2.13-3.9.1", "libs", KAFKA_JARS)
    kdir = artifacts.from_tarball(str(ktgz), ksha, "kafka")
    assert sorted(p.name for p in (kdir / "libs").iterdir()) == sorted(KAFKA_JARS)
    km = artifacts.read_manifest(kdir)
    assert (km["version"], km["source"]["kind"], km["source"]["sha512"]) == ("3.9.1", "tarball", ksha)

    ztgz = tmp_path / "apache-zookeeper-3.8.4-bin.tar.gz"
    zsha = make_release(ztgz, "apache-zookeeper-3.8.4-bin", "lib", ZK_JARS)
    zdir = artifacts.from_tarball(ztgz, zsha.upper(), "zookeeper")  # lib/ normalised to libs/
    assert sorted(p.name for p in (zdir / "libs").iterdir()) == sorted(ZK_JARS)
    assert artifacts.read_manifest(zdir)["version"] == "3.8.4"
    assert not (zdir / "lib").exists()


def test_from_tarball_accepts_apache_checksum_file_formats(tmp_path: Path) -> None:
    tgz = tmp_path / "kafka_2.13-3.9.1.tgz"
    sha = make_release(tgz, "kafka_2.13-3.9.1", "libs", KAFKA_JARS)
    gpg_style = "kafka_2.13-3.9.1.tgz: " + " ".join(sha.upper()[i : i + 8] for i in range(0, 128, 8))
    sum_style = f"{sha}  kafka_2.13-3.9.1.tgz\n"
    a = artifacts.from_tarball(str(tgz), gpg_style, "kafka")
    assert artifacts.from_tarball(str(tgz), sum_style, "kafka") == a


def test_from_tarball_wrong_checksum_names_both(tmp_path: Path, cache: Path) -> None:
    tgz = tmp_path / "kafka_2.13-3.9.1.tgz"
    actual = make_release(tgz, "kafka_2.13-3.9.1", "libs", KAFKA_JARS)
    wrong = "ab" * 64
    with pytest.raises(ArtifactError) as e:
        artifacts.from_tarball(str(tgz), wrong, "kafka")
    assert f"expected {wrong}" in str(e.value) and f"actual {actual}" in str(e.value)
    assert not any((cache / "artifacts").glob("kafka-*")), "nothing imported on a checksum mismatch"
    with pytest.raises(ArtifactError, match="not 128 hex digits"):
        artifacts.from_tarball(str(tgz), "deadbeef", "kafka")
    with pytest.raises(ArtifactError, match="tarball not found"):
        artifacts.from_tarball(str(tmp_path / "nope.tgz"), actual, "kafka")


def test_from_tarball_without_libs(tmp_path: Path) -> None:
    tgz = tmp_path / "kafka_2.13-3.9.1-src.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("kafka-3.9.1-src/build.gradle")
        tar.addfile(info, io.BytesIO(b""))
    sha = hashlib.sha512(tgz.read_bytes()).hexdigest()
    with pytest.raises(ArtifactError, match="not a kafka release tarball"):
        artifacts.from_tarball(str(tgz), sha, "kafka")
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"not a tarball")
    with pytest.raises(ArtifactError, match="cannot read tarball"):
        artifacts.from_tarball(str(garbage), hashlib.sha512(b"not a tarball").hexdigest(), "kafka")


def test_pack_is_deterministic_and_cached(tmp_path: Path, cache: Path) -> None:
    adir = artifacts.from_libs_dir(make_libs(tmp_path / "a" / "libs", KAFKA_JARS), "kafka")
    p1 = artifacts.pack(adir)
    m = artifacts.read_manifest(adir)
    assert p1.artifact_id == f"kafka-3.9.1-{m['sha256'][:12]}" and p1.sha256 == m["sha256"]
    assert p1.tarball == cache / "artifacts" / f"{p1.artifact_id}.tar.gz"
    assert p1.tarball_sha256 == hashlib.sha256(p1.tarball.read_bytes()).hexdigest()
    first = p1.tarball.read_bytes()
    p1.tarball.unlink()
    (adir / "libs" / "kafka-clients-3.9.1.jar").touch()  # mtime changes must not matter
    p2 = artifacts.pack(adir)
    assert p2 == p1 and p2.tarball.read_bytes() == first
    with tarfile.open(p2.tarball) as tar:
        members = tar.getmembers()
    assert [t.name for t in members] == ["libs"] + [f"libs/{n}" for n in sorted(KAFKA_JARS)]
    assert {(t.mtime, t.uid, t.gid) for t in members} == {(0, 0, 0)}
    # the same jars imported elsewhere (other mtimes, other path) pack to the same bytes
    other = artifacts.from_libs_dir(make_libs(tmp_path / "b" / "libs", KAFKA_JARS), "kafka")
    assert other == adir


def test_pack_refuses_tampered_dir(tmp_path: Path) -> None:
    adir = artifacts.from_libs_dir(make_libs(tmp_path / "libs", ZK_JARS), "zookeeper")
    (adir / "libs" / "zookeeper-jute-3.8.4.jar").write_bytes(b"tampered")
    (adir / "libs" / "extra-1.0.jar").write_bytes(b"x")
    with pytest.raises(
        ArtifactError, match=r"extra=\['extra-1.0.jar'\], changed=\['zookeeper-jute-3.8.4.jar'\]"
    ):
        artifacts.pack(adir)
    with pytest.raises(ArtifactError, match="no manifest"):
        artifacts.pack(tmp_path)


def test_generate_pom_pins_logging_and_tools() -> None:
    pom = artifacts.generate_pom("kafka", "3.9.1")
    for needle in (
        "<artifactId>kafka_2.13</artifactId><version>3.9.1</version>",
        "<artifactId>kafka-tools</artifactId><version>3.9.1</version>",
        "<artifactId>slf4j-reload4j</artifactId>",
        "<artifactId>reload4j</artifactId>",
        "<exclusion><groupId>ch.qos.logback</groupId>",
    ):
        assert needle in pom
    zpom = artifacts.generate_pom("zookeeper", "3.8.4")
    assert (
        "<artifactId>parent</artifactId><version>3.8.4</version><type>pom</type><scope>import</scope>" in zpom
    )
    assert "<artifactId>metrics-core</artifactId>" in zpom and "<artifactId>snappy-java</artifactId>" in zpom


def test_resolve_maven_uses_cache_without_mvn(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid cached dir from the same pom is returned without running anything."""
    adir = cache / "artifacts" / "zookeeper-3.8.4"
    make_libs(adir / "libs", ZK_JARS)
    pom_sha = hashlib.sha256(artifacts.generate_pom("zookeeper", "3.8.4").encode()).hexdigest()
    artifacts._write_manifest(adir, "zookeeper", "3.8.4", {"kind": "maven", "pom_sha256": pom_sha})

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("mvn must not run when the cache is valid")

    monkeypatch.setattr(subprocess, "run", boom)
    msgs: list[str] = []
    assert artifacts.resolve_maven("zookeeper", "3.8.4", msgs.append) == adir
    assert "cached" in msgs[0]


def test_resolve_maven_errors(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ArtifactError, match="not a release version"):
        artifacts.resolve_maven("kafka", "latest")
    monkeypatch.setattr(artifacts.shutil, "which", lambda _name: None)
    with pytest.raises(ArtifactError, match="mvn not found on PATH"):
        artifacts.resolve_maven("kafka", "3.9.1")
    assert not list((cache / "artifacts").iterdir()), "no temp dirs left behind"
