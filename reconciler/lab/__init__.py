"""Local lab hosts: real systemd machines as ``systemd-nspawn --boot`` containers on this machine.

Everything in this package is lab, test and demo support, never used by plan/apply on real hosts.

Port of the measured recipe in ``/work/shared/lab-reference/nspawn-lab.sh`` with real state, errors
and cleanup. Each lab host is a Debian 12 rootfs booted by systemd-nspawn:

* one cached base rootfs (debootstrap minbase) shared read-only by all hosts as the overlayfs lower dir;
  each host's overlay *upper* dir is its disk (it survives ``stop_host``/``start_host``);
* one network namespace per host with a veth whose host side sits on the bridge ``kflab0``
  (10.213.0.1/24); host *i* is ``kf<i>`` at ``10.213.0.(10+i)``;
* one cgroup per host (``kflab/<name>`` in the ``name=systemd`` and ``unified`` hierarchies) so that
  ``down`` can kill everything a host runs even when its shutdown hangs.

Why these choices (see the reference README): the control machine has no systemd/D-Bus, so nspawn runs
with ``--register=no --keep-unit``; without a per-host cgroup all containers would share the caller's;
``down`` must never rely on a clean shutdown (a broker that lost ZooKeeper hangs its stop for minutes).

The package only exposes functions; the CLI is wired elsewhere. Long operations take an optional
``progress`` callback receiving one human-readable line per step.

Modules, each importing only those above it: ``paths`` (names, addresses, places, LabError),
``control`` (commands, prerequisites, lock), ``cgroups`` (processes, cgroups, mounts), ``state``
(state.json), ``rootfs`` (base image, key, host disks), ``network`` (bridge, netns), ``hosts`` (one
host's lifecycle, exec_in), ``lifecycle`` (up, down). ``workload`` (numbered producer, verifier) and
``demo`` (``kafkaform demo``) talk to a lab cluster's brokers; they are imported by name, not here.
"""

from __future__ import annotations

from .control import check_prerequisites
from .hosts import exec_in, host_memory_pss_kib, start_host, stop_host
from .lifecycle import down, up
from .paths import (
    BRIDGE,
    GATEWAY,
    MAX_HOSTS,
    LabError,
    base_dir,
    cache_dir,
    host_address,
    host_name,
    key_path,
    known_hosts_path,
    lab_dir,
)
from .rootfs import ensure_base, ensure_key
from .state import LabHost, LabState, status

__all__ = [
    "BRIDGE",
    "GATEWAY",
    "MAX_HOSTS",
    "LabError",
    "LabHost",
    "LabState",
    "base_dir",
    "cache_dir",
    "check_prerequisites",
    "down",
    "ensure_base",
    "ensure_key",
    "exec_in",
    "host_address",
    "host_memory_pss_kib",
    "host_name",
    "key_path",
    "known_hosts_path",
    "lab_dir",
    "start_host",
    "status",
    "stop_host",
    "up",
]
