"""Fresh copies of the repository run the whole experiment from scratch: every stage reaches a
full LOSO and a champion, and two copies in different folders write the same `dvc.lock` and the
same bytes in every output it records (the outputs hold no absolute path, timing or host name:
tests/test_end_to_end.py). The worse experiment (one epoch) of tests/test_end_to_end.py: wiring,
not accuracy."""

import json
from pathlib import Path

import pytest
import yaml

from tests.test_end_to_end import SMALL, WORSE, fresh_copy, run, set_params

pytestmark = pytest.mark.slow


def copy_run_from_scratch(folder: Path) -> Path:
    folder.mkdir(parents=True)
    copy = fresh_copy(folder)
    set_params(copy, {**SMALL, **WORSE})
    run(copy, "dvc", "repro")
    return copy


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy, deep in a folder of its own, run from scratch."""
    return copy_run_from_scratch(tmp_path_factory.mktemp("elsewhere") / "a" / "deeper" / "folder")


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another fresh copy with the same params, in another folder, run from scratch."""
    return copy_run_from_scratch(tmp_path_factory.mktemp("twin") / "copy")


def test_a_fresh_copy_runs_every_stage_to_a_full_loso_and_a_champion(scratch: Path) -> None:
    """Every stage, from the synthetic videos to the registry (the kernel tier runs this one
    under the CPU kernel set TensorFlow does not pick here: `make test-kernels`)."""
    metrics = json.loads((scratch / "reports/metrics.json").read_text())
    assert metrics["folds_run"] == 8 and metrics["composite"]["samples"] == 72  # every clip
    registration = json.loads((scratch / "reports/register/registration.json").read_text())
    assert registration["version"] == 1 and registration["alias_moved"] is True
    assert "champion" in run(scratch, "mer", "registry").splitlines()[2]


def test_a_copy_in_another_folder_writes_the_same_dvc_lock(scratch: Path, twin: Path) -> None:
    """Every dependency and output `dvc.lock` records, the records and the registration
    included, has the same hash in both copies, and every file under it the same bytes."""
    differences = [
        f"{name}: {a} != {b}"
        for key, a, b in lock_differences(scratch / "dvc.lock", twin / "dvc.lock")
        for name in differing_files(scratch, twin, key)
    ]
    assert not differences, differences
    assert yaml.safe_load((scratch / "dvc.lock").read_text()) == yaml.safe_load(
        (twin / "dvc.lock").read_text()
    )
    assert len(yaml.safe_load((twin / "dvc.lock").read_text())["stages"]) == 6


def lock_differences(first: Path, second: Path) -> list[tuple[str, str, str]]:
    """(path, md5 in first, md5 in second) of every dep or out whose hash differs."""

    def hashes(lock: Path) -> dict[str, str]:
        stages = yaml.safe_load(lock.read_text())["stages"]
        return {
            f"{name}:{kind}:{entry['path']}": str(entry.get("md5"))
            for name, stage in stages.items()
            for kind in ("deps", "outs")
            for entry in stage.get(kind, [])
        }

    a, b = hashes(first), hashes(second)
    return [
        (key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)
    ]


def differing_files(repo: Path, other: Path, key: str) -> list[str]:
    """The files under a lock entry's path whose bytes differ between the two copies."""
    path = key.split(":", 2)[2]
    mine, theirs = repo / path, other / path
    if mine.is_file() or theirs.is_file():
        return (
            [key]
            if not (
                mine.is_file() and theirs.is_file() and mine.read_bytes() == theirs.read_bytes()
            )
            else [f"{key} (same bytes now)"]
        )
    names = {p.relative_to(mine) for p in mine.rglob("*") if p.is_file()} | {
        p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file()
    }
    return [
        f"{key}/{name}"
        for name in sorted(names)
        if not (
            (mine / name).is_file()
            and (theirs / name).is_file()
            and (mine / name).read_bytes() == (theirs / name).read_bytes()
        )
    ] or [f"{key} (same bytes now)"]
