"""The metadata-mode seam: ZooKeeper mode or KRaft, decided once per spec.

A `Mode` says which services a spec implies on which hosts (and how their files render), where
the cluster's state is read from, which service holds the metadata quorum, in which order its
nodes restart and what proves a quorum node may restart. Diff, plan, executor and gates ask the
mode; nothing else branches on the metadata mode.
"""

from __future__ import annotations

from reconciler.modes.base import Mode
from reconciler.modes.kraft import KRaftMode
from reconciler.modes.zookeeper import ZooKeeperMode
from reconciler.spec import ClusterSpec

ZOOKEEPER = ZooKeeperMode()
KRAFT = KRaftMode()


def mode_of(spec: ClusterSpec) -> Mode:
    return KRAFT if spec.kraft else ZOOKEEPER


__all__ = ["KRAFT", "ZOOKEEPER", "KRaftMode", "Mode", "ZooKeeperMode", "mode_of"]
