"""The lab reads its hosts' cgroup trees while units inside the hosts start and stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.lab import cgroups


def _tree(root: Path) -> None:
    for rel, pids in {
        "": "1\n",
        "payload": "",
        "payload/system.slice/kafka.service": "7\n8\n",
        "payload/system.slice/sshd.service": "9\n",
    }.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "cgroup.procs").write_text(pids)


def test_pids_of_a_subtree_are_read_at_every_depth(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert cgroups._subtree_pids(tmp_path) == {1, 7, 8, 9}
    assert cgroups._subtree_pids(tmp_path / "absent") == set()


def test_a_cgroup_removed_during_the_walk_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit stopping inside a host removes its cgroup between listing its parent and entering it."""
    _tree(tmp_path)
    doomed = tmp_path / "payload/system.slice/kafka.service"
    real_scandir = os.scandir

    class Listing(list[os.DirEntry[str]]):
        def __enter__(self) -> Listing:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def __next__(self) -> os.DirEntry[str]:
            if not self:
                raise StopIteration
            return self.pop(0)

    def scandir_then_stop_kafka(path: str | os.PathLike[str]) -> Listing:
        with real_scandir(path) as it:
            listing = Listing(it)
        if Path(path) == doomed.parent:
            (doomed / "cgroup.procs").unlink()
            doomed.rmdir()
        return listing

    monkeypatch.setattr(os, "scandir", scandir_then_stop_kafka)
    assert cgroups._subtree_pids(tmp_path) == {1, 9}
