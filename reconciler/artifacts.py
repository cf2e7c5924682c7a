"""Kafka / ZooKeeper artifacts: resolve, import, pack.

An *artifact dir* is `<dir>/libs/*.jar` + `<dir>/manifest.json`; it is the only thing the rest of
kafkaform sees, whether the jars came from Maven Central (lab, CI), an Apache release tarball or a
prepared libs/ tree (real users). Services start with `java -cp '<home>/libs/*' <main class>`, so a
flat directory of jars is all a host needs.

Identity is content: the manifest sha256 hashes the sorted `(sha256, jar name)` lines, so the same
jars give the same `artifact_id` no matter how they were obtained or compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from reconciler.diff import ArtifactIds
    from reconciler.spec import Artifact, ClusterSpec

ArtifactName = Literal["kafka", "zookeeper"]
Progress = Callable[[str], None]

SCALA_VERSION = "2.13"
DEFAULT_KAFKA_VERSION = "3.9.1"
SECOND_KAFKA_VERSION = "3.8.1"
# What org.apache.kafka:kafka_2.13:3.9.1 itself depends on.
DEFAULT_ZOOKEEPER_VERSION = "3.8.4"
# Logging a release tarball ships in libs/ (slf4j 1.7 binding to reload4j) but the Maven pom lacks.
SLF4J_VERSION = "1.7.36"
RELOAD4J_VERSION = "1.2.25"
LOG4J2_SLF4J_VERSION = "2.25.5"  # Kafka 4.x: slf4j 1.7 -> log4j2
DEPENDENCY_PLUGIN_VERSION = "3.6.1"

MAIN_JAR_PATTERNS: dict[str, re.Pattern[str]] = {
    "kafka": re.compile(r"^kafka_\d+\.\d+-(?P<version>\d[\w.\-]*?)\.jar$"),
    "zookeeper": re.compile(r"^zookeeper-(?P<version>\d[\w.\-]*?)\.jar$"),
}
_NOT_MAIN = re.compile(r"-(sources|javadoc|test|tests|test-sources)\.jar$")
MANIFEST = "manifest.json"


class ArtifactError(Exception):
    """An artifact cannot be resolved, verified or imported; the message says which and why."""


@dataclass(frozen=True)
class PackedArtifact:
    """A tar.gz of `libs/` ready to push to hosts (unpacks to `/opt/<name>/<artifact_id>/libs`)."""

    name: str
    version: str
    tarball: Path
    sha256: str  # content identity: the manifest sha256 of the jars
    tarball_sha256: str  # of the .tar.gz file itself, for transfer verification

    @property
    def artifact_id(self) -> str:
        """`<name>-<version>-<sha12>`: directory name on hosts and tarball stem in the cache."""
        return f"{self.name}-{self.version}-{self.sha256[:12]}"


def cache_dir() -> Path:
    """Control-machine cache root: `$KAFKAFORM_CACHE`, default `/var/cache/kafkaform`."""
    return Path(os.environ.get("KAFKAFORM_CACHE") or "/var/cache/kafkaform")


def _artifacts_root() -> Path:
    root = cache_dir() / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _check_name(name: str) -> None:
    if name not in MAIN_JAR_PATTERNS:
        raise ArtifactError(f"unknown artifact name {name!r}: expected 'kafka' or 'zookeeper'")


def _file_sha(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_jars(libs: Path) -> dict[str, str]:
    return {p.name: _file_sha(p) for p in sorted(libs.iterdir()) if p.is_file() and p.suffix == ".jar"}


def manifest_sha256(files: dict[str, str]) -> str:
    """Hash over sorted `<sha256>  <jar>` lines (sha256sum format), independent of how jars arrived."""
    lines = "".join(f"{files[n]}  {n}\n" for n in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _write_manifest(artifact_dir: Path, name: str, version: str, source: dict[str, str]) -> dict:
    files = _hash_jars(artifact_dir / "libs")
    manifest = {
        "name": name,
        "version": version,
        "files": files,
        "sha256": manifest_sha256(files),
        "source": source,
    }
    (artifact_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(artifact_dir: Path) -> dict:
    """Load `manifest.json` of an artifact dir (raises ArtifactError when missing or malformed)."""
    path = Path(artifact_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no manifest; not an artifact dir") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: malformed manifest ({e})") from None
    for key in ("name", "version", "files", "sha256"):
        if key not in manifest:
            raise ArtifactError(f"{path}: manifest lacks {key!r}")
    return manifest


VERIFIED = ".verified.json"


def _stat_signature(paths: list[Path]) -> list[list[object]]:
    out: list[list[object]] = []
    for p in sorted(paths):
        st = p.stat()
        out.append([p.name, st.st_size, st.st_mtime_ns, st.st_ino])
    return out


def verify(artifact_dir: Path, *, full: bool = False) -> dict:
    """Re-hash libs/ and compare with the manifest; returns the manifest, raises on any mismatch.

    A full re-hash of ~130 MB of jars costs more than the rest of a no-op plan, so a successful
    verification records the jars' (size, mtime, inode); later calls with an identical stat
    signature trust it. `full=True` (apply) always re-hashes.
    """
    manifest = read_manifest(artifact_dir)
    libs = Path(artifact_dir) / "libs"
    stamp = Path(artifact_dir) / VERIFIED
    jars = list(libs.glob("*.jar")) if libs.is_dir() else []
    signature = {"manifest": manifest["sha256"], "stat": _stat_signature(jars)}
    if not full and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == json.loads(json.dumps(signature)):
                return manifest
        except (OSError, ValueError):
            pass
    actual = _hash_jars(libs) if libs.is_dir() else {}
    expected = manifest["files"]
    if actual != expected:
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        changed = sorted(n for n in set(expected) & set(actual) if expected[n] != actual[n])
        raise ArtifactError(
            f"{artifact_dir}: jars do not match manifest "
            f"(missing={missing}, extra={extra}, changed={changed})"
        )
    if manifest_sha256(expected) != manifest["sha256"]:
        raise ArtifactError(f"{artifact_dir}: manifest sha256 does not match its file list")
    try:
        stamp.write_text(json.dumps(signature))
    except OSError:
        pass  # a read-only cache still verifies, just every time
    return manifest


def _is_valid(artifact_dir: Path) -> bool:
    try:
        verify(artifact_dir)
    except ArtifactError:
        return False
    return True


def _install_atomically(tmp: Path, final: Path) -> Path:
    """Rename a finished temp dir into place; an existing identical dir (same manifest) wins."""
    if final.exists():
        if _is_valid(final) and read_manifest(final) == read_manifest(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            return final
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def _maven_deps(name: ArtifactName, version: str) -> list[tuple[str, str, str, list[str]]]:
    """(groupId, artifactId, version, excluded groupIds) the generated pom depends on."""
    if name == "zookeeper":
        # zookeeper's pom already brings logback-classic (its logging backend), but marks jars the
        # server needs as `provided`: without metrics-core QuorumPeerMain dies with NoClassDefFoundError
        # com/codahale/metrics/Reservoir, without snappy-java with org/xerial/snappy/SnappyInputStream.
        # Versions come from the imported zookeeper parent pom (empty version below). Jetty (admin
        # server) is left out on purpose: kafkaform sets admin.enableServer=false.
        return [
            ("org.apache.zookeeper", "zookeeper", version, []),
            ("io.dropwizard.metrics", "metrics-core", "", []),
            ("org.xerial.snappy", "snappy-java", "", []),
            ("commons-cli", "commons-cli", "", []),  # ZooKeeper's own CLI tools (SnapshotFormatter &c.)
        ]
    if int(version.split(".", 1)[0]) >= 4:
        # Kafka 4 logs through log4j2 (its pom brings log4j-api/-core) via slf4j-api 1.7, whose
        # binding the pom does not declare: log4j-slf4j-impl (the slf4j2 binding would not bind).
        return [
            ("org.apache.kafka", f"kafka_{SCALA_VERSION}", version, ["ch.qos.logback"]),
            ("org.apache.kafka", "kafka-tools", version, ["ch.qos.logback"]),
            ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J2_SLF4J_VERSION, []),
        ]
    return [
        # ZooKeeper's logback would be a second slf4j binding; a tarball install has only reload4j.
        ("org.apache.kafka", f"kafka_{SCALA_VERSION}", version, ["ch.qos.logback"]),
        ("org.apache.kafka", "kafka-tools", version, ["ch.qos.logback"]),  # ReassignPartitionsCommand etc.
        ("org.slf4j", "slf4j-reload4j", SLF4J_VERSION, []),
        ("ch.qos.reload4j", "reload4j", RELOAD4J_VERSION, []),
    ]


def generate_pom(name: ArtifactName, version: str) -> str:
    """A throwaway pom whose runtime dependency closure is the service's libs/."""
    deps = []
    for group, artifact, ver, excludes in _maven_deps(name, version):
        excl = "".join(
            f"<exclusion><groupId>{g}</groupId><artifactId>*</artifactId></exclusion>" for g in excludes
        )
        excl_xml = f"<exclusions>{excl}</exclusions>" if excl else ""
        ver_xml = f"<version>{ver}</version>" if ver else ""
        deps.append(
            f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"{ver_xml}{excl_xml}</dependency>"
        )
    managed = ""
    if name == "zookeeper":
        managed = (
            "  <dependencyManagement><dependencies><dependency><groupId>org.apache.zookeeper</groupId>"
            f"<artifactId>parent</artifactId><version>{version}</version><type>pom</type>"
            "<scope>import</scope></dependency></dependencies></dependencyManagement>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        f"  <groupId>kafkaform.artifacts</groupId><artifactId>{name}-libs</artifactId>"
        f"<version>{version}</version>\n"
        "  <packaging>pom</packaging>\n"
        + managed
        + "  <dependencies>\n"
        + "\n".join(deps)
        + "\n  </dependencies>\n"
        "  <build><plugins><plugin><groupId>org.apache.maven.plugins</groupId>"
        f"<artifactId>maven-dependency-plugin</artifactId><version>{DEPENDENCY_PLUGIN_VERSION}</version>"
        "</plugin></plugins></build>\n"
        "</project>\n"
    )


def resolve_maven(name: ArtifactName, version: str, progress: Progress | None = None) -> Path:
    """Resolve `<name>` `<version>` with its runtime deps from Maven into the cache; cached by manifest."""
    _check_name(name)
    if not re.fullmatch(r"\d+\.\d+\.\d+[\w.\-]*", version):
        raise ArtifactError(f"{name} version {version!r} is not a release version like 3.9.1")
    say = progress or (lambda _msg: None)
    pom_xml = generate_pom(name, version)
    source = {"kind": "maven", "pom_sha256": hashlib.sha256(pom_xml.encode()).hexdigest()}
    final = _artifacts_root() / f"{name}-{version}"
    if _is_valid(final) and read_manifest(final).get("source") == source:
        say(f"{name} {version}: cached at {final}")
        return final
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ArtifactError("mvn not found on PATH: install Maven, or import a release tarball instead")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{version}-", dir=_artifacts_root()))
    try:
        libs = tmp / "libs"
        with tempfile.TemporaryDirectory(prefix="kafkaform-pom-") as pomdir:
            pom = Path(pomdir) / "pom.xml"
            pom.write_text(pom_xml)
            say(f"{name} {version}: resolving with mvn (dependency:copy-dependencies)")
            cmd = [
                mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                "-DincludeScope=runtime", f"-DoutputDirectory={libs}",
            ]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=pomdir)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
            raise ArtifactError(f"mvn could not resolve {name} {version} (exit {res.returncode}):\n{tail}")
        _main_jar(libs, name)
        manifest = _write_manifest(tmp, name, version, source)
        say(f"{name} {version}: {len(manifest['files'])} jars, sha256 {manifest['sha256'][:12]}")
        return _install_atomically(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _main_jar(libs: Path, name: str) -> tuple[Path, str]:
    """The service's main jar in libs/ and the version its file name carries."""
    pattern = MAIN_JAR_PATTERNS[name]
    found = []
    if libs.is_dir():
        for p in sorted(libs.iterdir()):
            m = pattern.match(p.name)
            if m and not _NOT_MAIN.search(p.name):
                found.append((p, m.group("version")))
    if not found:
        want = "kafka_<scala>-<version>.jar" if name == "kafka" else "zookeeper-<version>.jar"
        raise ArtifactError(f"{libs}: no {name} main jar ({want}) found; is this a {name} libs/ directory?")
    if len({v for _, v in found}) > 1:
        raise ArtifactError(f"{libs}: several {name} main jars: {[p.name for p, _ in found]}")
    return found[0]


def _import_libs(src_libs: Path, name: ArtifactName, version: str | None, source: dict[str, str]) -> Path:
    """Copy jars into a temp artifact dir, write the manifest, move to `<name>-<version>-<sha12>`."""
    _, jar_version = _main_jar(src_libs, name)
    if version is not None and version != jar_version:
        raise ArtifactError(f"{src_libs}: version {version!r} given but the main jar says {jar_version!r}")
    version = version or jar_version
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=_artifacts_root()))
    try:
        (tmp / "libs").mkdir()
        for jar in sorted(src_libs.iterdir()):
            if jar.is_file() and jar.suffix == ".jar":
                shutil.copyfile(jar, tmp / "libs" / jar.name)
        manifest = _write_manifest(tmp, name, version, source)
        final = _artifacts_root() / f"{name}-{version}-{manifest['sha256'][:12]}"
        return _install_atomically(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def from_libs_dir(path: str | Path, name: ArtifactName, version: str | None = None) -> Path:
    """Import a prepared libs/ tree (the dir itself or its parent) into the cache."""
    _check_name(name)
    src = Path(path)
    if (src / "libs").is_dir():
        src = src / "libs"
    if not src.is_dir():
        raise ArtifactError(f"{path}: not a directory")
    return _import_libs(src, name, version, {"kind": "libs_dir", "path": str(Path(path).resolve())})


def _normalise_sha512(value: str) -> str:
    """Accept plain hex, `sha512sum` lines and Apache's `gpg --print-md` style (`file: AB CD ...`)."""
    text = value.strip()
    if re.match(r"[0-9a-fA-F]{128}\s", text):  # sha512sum: "<hex>  <file>"
        text = text.split()[0]
    elif ":" in text:  # gpg --print-md: "<file>: 1A2B 3C4D ..."
        text = text.split(":", 1)[1]
    hexes = re.sub(r"\s+", "", text).lower()
    if not re.fullmatch(r"[0-9a-f]{128}", hexes):
        raise ArtifactError(f"sha512 {value!r} is not 128 hex digits")
    return hexes


def _fetch(url: str) -> Path:
    """Download a release tarball into `<cache>/downloads/` (reused when present)."""
    dest_dir = cache_dir() / "downloads"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / Path(urllib.parse.urlparse(url).path).name
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".part")
    try:
        from urllib.request import urlopen  # lazily: pulls in http/ssl, only for URL downloads

        with urlopen(url, timeout=60) as resp, tmp.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ArtifactError(f"cannot download {url}: {e}") from None
    os.replace(tmp, dest)
    return dest


def from_tarball(
    path_or_url: str | Path, sha512: str, name: ArtifactName, version: str | None = None
) -> Path:
    """Verify and import an Apache release tarball (Kafka `libs/`, ZooKeeper `lib/`) into the cache."""
    _check_name(name)
    expected = _normalise_sha512(sha512)
    src = str(path_or_url)
    if src.startswith(("http://", "https://")):
        path = _fetch(src)
    else:
        path = Path(src)
        if not path.is_file():
            raise ArtifactError(f"{src}: tarball not found")
    actual = _file_sha(path, "sha512")
    if actual != expected:
        raise ArtifactError(f"{path}: sha512 mismatch: expected {expected}, actual {actual}")
    with tempfile.TemporaryDirectory(prefix=".tmp-extract-", dir=_artifacts_root()) as tmpd:
        libs = Path(tmpd) / "libs"
        libs.mkdir()
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    parts = Path(member.name).parts
                    # <top>/libs/x.jar (Kafka) or <top>/lib/x.jar (ZooKeeper); plain files only.
                    if (
                        len(parts) == 3
                        and parts[1] in ("libs", "lib")
                        and parts[2].endswith(".jar")
                        and member.isfile()
                    ):
                        fobj = tar.extractfile(member)
                        if fobj is None:
                            continue
                        with fobj, (libs / parts[2]).open("wb") as out:
                            shutil.copyfileobj(fobj, out)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ArtifactError(f"{path}: cannot read tarball ({e})") from None
        if not any(libs.iterdir()):
            raise ArtifactError(
                f"{path}: no <top>/libs/*.jar or <top>/lib/*.jar inside; not a {name} release tarball"
            )
        return _import_libs(libs, name, version, {"kind": "tarball", "path": str(path), "sha512": expected})


def _tar_add(tar: tarfile.TarFile, arcname: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def pack(artifact_dir: str | Path, *, full_verify: bool = False) -> PackedArtifact:
    """Deterministic `libs/` tar.gz at `<cache>/artifacts/<artifact_id>.tar.gz` (cached by content)."""
    adir = Path(artifact_dir)
    manifest = verify(adir, full=full_verify)
    name, version, sha = manifest["name"], manifest["version"], manifest["sha256"]
    artifact_id = f"{name}-{version}-{sha[:12]}"
    out = _artifacts_root() / f"{artifact_id}.tar.gz"
    if not out.exists():
        tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
        try:
            with tmp.open("wb") as raw:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                    with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                        _tar_add(tar, "libs", None, 0o755)
                        for jar in sorted(manifest["files"]):
                            _tar_add(tar, f"libs/{jar}", (adir / "libs" / jar).read_bytes(), 0o644)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return PackedArtifact(name, version, out, sha, _tarball_sha(out, full_verify))


def _tarball_sha(path: Path, full: bool) -> str:
    """sha256 of a packed tarball, remembered beside it keyed by (size, mtime, inode)."""
    side = path.with_name(path.name + ".sha256")
    st = path.stat()
    key = f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"
    if not full and side.exists():
        parts = side.read_text().split()
        if len(parts) == 4 and " ".join(parts[1:]) == key:
            return parts[0]
    sha = _file_sha(path)
    try:
        side.write_text(f"{sha} {key}\n")
    except OSError:
        pass
    return sha


# --- the two artifacts a cluster spec names -----------------------------------------------------


@dataclass(frozen=True)
class SpecArtifacts:
    kafka: PackedArtifact
    zookeeper: PackedArtifact | None = None  # ZooKeeper mode only

    @property
    def ids(self) -> ArtifactIds:
        from reconciler.diff import ArtifactIds

        return ArtifactIds(kafka=self.kafka.artifact_id,
                           zookeeper=self.zookeeper.artifact_id if self.zookeeper else None)

    def all(self) -> list[PackedArtifact]:
        return [self.kafka, *([self.zookeeper] if self.zookeeper else [])]


def _resolve_one(name: ArtifactName, version: str, art: Artifact, progress: Progress | None,
                 full_verify: bool) -> PackedArtifact:
    if art.maven:
        d = resolve_maven(name, version, progress=progress)
    elif art.libs:
        d = from_libs_dir(art.libs, name, version)
    else:
        d = from_tarball(art.url or art.path or "", art.sha512 or "", name)
    packed = pack(d, full_verify=full_verify)
    if packed.version != version:
        raise ArtifactError(
            f"{name}.artifact holds {name} {packed.version}, but {name}.version is {version}")
    return packed


def resolve_for_spec(spec: ClusterSpec, progress: Progress | None = None, full_verify: bool = False) -> SpecArtifacts:
    """Fetch/verify/pack both artifacts on the control machine (cached; no host touched).

    `full_verify` re-hashes every jar and the tarball (apply does, before pushing anything).
    """
    zk = spec.zookeeper
    return SpecArtifacts(
        kafka=_resolve_one("kafka", spec.kafka.version, spec.kafka.artifact, progress, full_verify),
        zookeeper=_resolve_one("zookeeper", zk.version, zk.artifact, progress, full_verify) if zk else None,
    )
