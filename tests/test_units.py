"""Units of work: stored as they finish, resumed after an interruption, retried when their worker
dies, identical whether trained in one process or on Ray, spread over a cluster's nodes."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.evaluation.units import UnitStore
from tests.builders import mer, small_project, start_mer, wait_until

pytestmark = pytest.mark.slow


def stored(folder: Path) -> dict[str, float]:
    """Finished unit files and their modification times."""
    return {p.name: p.stat().st_mtime for p in (folder / "units").glob("*.npz")}


def results(folder: Path) -> list:
    return UnitStore(folder / "units").stored()


def metrics(folder: Path) -> str:
    return (folder / "reports/metrics.json").read_text()


def evaluated_once(folder: Path, *args: str) -> Path:
    """``mer evaluate ARGS`` of a small project with one fold per unit, its stderr kept."""
    small_project(folder, evaluate={"folds_per_unit": 1})
    done = mer(folder, "evaluate", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder / "evaluate.stderr").write_text(done.stderr)
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted evaluation on the default local Ray, one fold per unit."""
    return evaluated_once(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def straight_single_fold_units(tmp_path_factory) -> Path:
    """The same evaluation in this process (``--local``): what the Ray run and every
    interrupted-and-resumed case must end with (trained once for all of them)."""
    return evaluated_once(tmp_path_factory.mktemp("straight"), "--local")


def progress_count(stderr: str, stage: str = "evaluate") -> tuple[int, int]:
    """The fold-epochs done / to do on the last progress line of ``mer <stage>``."""
    lines = re.findall(rf"^{stage}: (\d+)/(\d+) fold-epochs \((\d+)%\)", stderr, re.M)
    assert lines, stderr[-2000:]
    return int(lines[-1][0]), int(lines[-1][1])


def trained_fold_epochs(folder: Path) -> int:
    return sum(f.epochs_run for r in results(folder) for f in r.folds)


def test_sequential_and_distributed_give_identical_predictions(
    reference: Path, straight_single_fold_units: Path
) -> None:
    local = straight_single_fold_units
    # progress counts every fold-epoch trained, through Ray's workers and in this process
    for folder in (reference, local):
        stderr = (folder / "evaluate.stderr").read_text()
        assert progress_count(stderr) == (trained_fold_epochs(folder),) * 2
    ray_run = pd.read_parquet(reference / "reports/predictions.parquet")
    local_run = pd.read_parquet(local / "reports/predictions.parquet")
    pd.testing.assert_frame_equal(ray_run, local_run, check_exact=True)  # bit for bit
    assert metrics(reference) == metrics(local)
    assert {r.node_id for r in results(local)} == {"local"}
    assert all(r.node_id != "local" for r in results(reference)) and len(results(reference)) == 8


def test_an_interrupted_evaluation_resumes_with_the_missing_units_only(
    straight_single_fold_units: Path, tmp_path: Path
) -> None:
    """Stopped by Ctrl-C (SIGINT: exit 130), then started again and killed (SIGKILL:
    no handler runs): each time nothing is published and the units stored before stay as they
    are; the run after trains the missing units only and ends as one uninterrupted run."""
    small_project(tmp_path, evaluate={"folds_per_unit": 1})  # 8 units
    before: dict[str, float] = {}
    for how, units in ((signal.SIGINT, 2), (signal.SIGKILL, 4)):
        driver = start_mer(tmp_path, "evaluate", "--local")
        wait_until(lambda units=units: len(stored(tmp_path)) >= units, driver)
        driver.send_signal(how)
        out, err = driver.communicate(timeout=120)
        now = stored(tmp_path)
        assert units <= len(now) < 8, (how, driver.returncode, out, err[-2000:])
        assert all(now[name] == when for name, when in before.items())  # kept, not retrained
        assert not (tmp_path / "reports/metrics.json").exists()  # nothing published
        if how == signal.SIGINT:
            assert driver.returncode == 130 and "interrupted" in err
        before = now
    resumed = mer(tmp_path, "evaluate", "--local")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trained = [line for line in resumed.stdout.splitlines() if " unit " in line]
    assert len(trained) == 8 - len(before)  # only the missing units were trained
    after = stored(tmp_path)
    assert len(after) == 8 and all(after[name] == when for name, when in before.items())
    # the same metrics as one uninterrupted run with one fold per unit
    assert metrics(straight_single_fold_units) == metrics(tmp_path)


def test_units_spread_over_two_nodes_and_a_killed_worker_is_retried(
    cluster, tmp_path: Path
) -> None:
    """`mer compare` on a real 2-node Ray cluster: units land on both nodes; a unit whose worker
    process is killed mid-way is retried, and no other unit is lost; the progress counts the
    retried unit's epochs once (not the killed attempt's too)."""
    small_project(
        tmp_path,
        subjects=6,
        compare={"space": {"attention": ["none", "se"], "placement": [["fused"]]}, "seeds": 2},
        evaluate={"folds_per_unit": 2},
    )
    driver = start_mer(tmp_path, "compare", env={"RAY_ADDRESS": cluster.address})
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and driver.poll() is None:
        workers = subprocess.run(
            ["pgrep", "-f", "ray::_ray_unit"], capture_output=True, text=True
        ).stdout.split()
        if workers:
            time.sleep(1.0)  # let it start training
            killed = int(workers[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    _out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err[-3000:]
    assert killed is not None, "no unit worker was seen running"
    units = results(tmp_path)
    assert len(units) == 2 * 3  # 2 types × 3 blocks of 2 folds (each both seeds): none lost
    assert {u.spec.seeds for u in units} == {(3, 4)}
    assert all(u.pid != killed for u in units)  # the killed worker's unit was done again
    assert progress_count(err, "compare") == (trained_fold_epochs(tmp_path),) * 2
    nodes = {n["NodeID"] for n in cluster_nodes(cluster)}
    assert {u.node_id for u in units} == nodes and len(nodes) == 2
    report = (tmp_path / "reports/compare/comparison.md").read_text()
    assert "ststnet/se@fused" in report and "verdict" in report


def cluster_nodes(cluster) -> list[dict]:
    import ray

    ray.init(address=cluster.address)
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


def test_a_fold_and_seed_predict_the_same_alone_or_stacked_with_others(
    straight_single_fold_units: Path, tmp_path: Path
) -> None:
    """Issue 23's acceptance and seeds inside units: a (seed, fold)'s batches, initial weights
    and optimizer steps depend on its seed, its fold's name and size only, so LOSO with one
    fold of one seed per unit and with four folds × two seeds per unit (stacked; seed 3 second
    in its stack, after seed 2) predicts the same class for at least 95% of the samples; the
    rest is Adam-amplified float rounding."""
    small_project(tmp_path, seed=2, evaluate={"seeds": 2, "folds_per_unit": 4, "seeds_per_unit": 2})
    done = mer(tmp_path, "evaluate", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    # progress counts every (seed, fold) member's epochs, planned and trained
    assert progress_count(done.stderr) == (trained_fold_epochs(tmp_path),) * 2
    assert sorted((u.spec.seeds, len(u.spec.folds)) for u in results(tmp_path)) == [
        ((2, 3), 4),
        ((2, 3), 4),
    ]
    alone = pd.read_parquet(straight_single_fold_units / "reports/predictions.parquet")
    together = pd.read_parquet(tmp_path / "reports/predictions.parquet").set_index(["seed", "uid"])
    assert set(alone.seed) == {3} and len(alone) == 48 and len(together) == 2 * 48
    one = alone.set_index("uid").predicted
    agreement = float((one == together.xs(3).predicted.loc[one.index]).mean())
    assert agreement >= 0.95, agreement
    # the seeds in one unit are two trainings (their probabilities differ), not one copied
    assert np.abs(together.xs(2).p_0 - together.xs(3).p_0.loc[together.xs(2).index]).max() > 1e-3
