"""Desired state of each host, computed from the spec: every managed file's exact content.

Pure functions. Playbooks write these contents verbatim, and observe reads the same paths back,
so drift detection is an exact hash comparison and the plan can show which keys differ. Spec
values reach the text only through the escaping rules of `reconciler.render.formats`. The
renderers live in `reconciler.render` (common, kafka, zookeeper); this module is their one
import point.
"""

from __future__ import annotations

from reconciler.render.common import *  # noqa: F403
from reconciler.render.common import (
    CONTROLLER_ETC,
    CONTROLLER_PROPERTIES,
    CONTROLLER_UNIT,
    FIXED_DIRS,
    KAFKA_ETC,
    KAFKA_UNIT,
    META_PROPERTIES,
    SERVER_PROPERTIES,
    ZK_ETC,
    ZK_RUNTIME_SCRIPT,
    ZK_UNIT,
    ZOO_CFG,
    owner_marker,
)
from reconciler.render.formats import parse_properties  # noqa: F401  (the reader for these files)
from reconciler.render.kafka import *  # noqa: F403
from reconciler.render.kafka import KAFKA_ZK_KEYSTORE, KAFKA_ZK_TRUSTSTORE
from reconciler.render.zookeeper import *  # noqa: F403
from reconciler.render.zookeeper import ZK_KEYSTORE, ZK_TRUSTSTORE
from reconciler.spec import ClusterSpec


def managed_paths(spec: ClusterSpec) -> tuple[str, ...]:
    """Every file path observe should read on a host of this cluster: the files of every service
    kafkaform may run there, the owner markers, and (KRaft) each storage dir's meta.properties."""
    data = {d for b in spec.brokers for d in b.data_dirs} | {c.metadata_dir for c in spec.controllers}
    if spec.zookeeper is not None:
        data.add(spec.zookeeper.data_dir)
    paths = [SERVER_PROPERTIES, f"{KAFKA_ETC}/log4j.properties", f"{KAFKA_ETC}/log4j2.properties", KAFKA_UNIT,
             CONTROLLER_PROPERTIES, f"{CONTROLLER_ETC}/log4j.properties", f"{CONTROLLER_ETC}/log4j2.properties",
             CONTROLLER_UNIT, ZOO_CFG, f"{ZK_ETC}/logback.xml", ZK_RUNTIME_SCRIPT, ZK_UNIT,
             f"{ZK_ETC}/jaas.conf", f"{ZK_ETC}/security.args", f"{KAFKA_ETC}/zookeeper-jaas.conf",
             ZK_KEYSTORE, ZK_TRUSTSTORE, KAFKA_ZK_KEYSTORE, KAFKA_ZK_TRUSTSTORE]
    if spec.zookeeper is not None:
        paths.append(f"{spec.zookeeper.data_dir}/myid")
    paths += [owner_marker(d) for d in sorted(data | set(FIXED_DIRS))]
    if spec.kraft:
        paths += [f"{d}/{META_PROPERTIES}" for d in sorted(data)]
    return tuple(paths)
