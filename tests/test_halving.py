"""Synchronous successive halving: the rung arithmetic, and a real Ray Tune search on the
two-node test cluster in which the early arrivals must not go on by arriving first."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from components.tuning.halving import EPOCHS_DONE, SynchronousHalving, replay, rungs


def test_rungs_and_the_epochs_a_search_runs() -> None:
    assert rungs(13, 4, 40) == [13]
    assert rungs(5, 3, 40) == [5, 15]
    assert rungs(40, 3, 40) == []
    # 4 trials: all to 13, then ceil(4/4) = 1 to 40
    assert SynchronousHalving.epochs(4, 13, 4, 40) == 4 * 13 + 27
    # 9 trials, rf 3: 9 to 5, 3 to 15, 1 to 40
    assert SynchronousHalving.epochs(9, 5, 3, 40) == 9 * 5 + 3 * 10 + 25
    assert SynchronousHalving.epochs(4, 40, 4, 40) == 4 * 40  # no rung below max_t: a grid


# per trial, the validation UF1 of epochs 1 and 2 (then flat). At the rung (epoch 2) trial 3's
# best so far (0.9) leads although its epoch-2 score (0.65) is below trials 0's (0.7): the
# halving ranks by the best epoch so far, as the search's result does.
CURVES = {0: [0.5, 0.7], 1: [0.4, 0.6], 2: [0.3, 0.5], 3: [0.9, 0.65]}


def curve(scores: list[float], epochs: int) -> list[tuple[float, float]]:
    """(val_uf1, val_loss) per epoch, flat after the given scores, loss = 1 − score."""
    return [(s, 1 - s) for s in scores + [scores[-1]] * (epochs - len(scores))]


def test_replaying_a_grid_cuts_by_the_best_epoch_so_far() -> None:
    grid = {k: curve(v, 6) for k, v in CURVES.items()}
    assert replay(grid, 2, 4, 6) == {0: 2, 1: 2, 2: 2, 3: 6}
    # rf 2: rungs at 2 and 4; trials 3 and 0 reach 4, then 3 goes on (0.9 > 0.7)
    assert replay(grid, 2, 2, 6) == {0: 4, 1: 2, 2: 2, 3: 6}
    # equal UF1: the lower validation loss goes on
    tied = {"a": [(0.8, 0.5), (0.8, 0.5)], "b": [(0.8, 0.4), (0.8, 0.4)]}
    assert replay(tied, 1, 2, 2) == {"a": 1, "b": 2}
    assert replay(grid, 6, 4, 6) == dict.fromkeys(CURVES, 6)  # no rung: the grid


@pytest.mark.parametrize("trials", [1, 4, 9, 27])
@pytest.mark.parametrize(("grace", "factor"), [(1, 2), (5, 3), (13, 4), (40, 3)])
def test_a_replay_runs_the_epochs_the_schedule_allows(trials: int, grace: int, factor: int) -> None:
    rng = np.random.default_rng(trials * 100 + grace)
    grid = {f"t{k}": [tuple(x) for x in rng.uniform(size=(40, 2)).round(2)] for k in range(trials)}
    assert sum(replay(grid, grace, factor, 40).values()) == SynchronousHalving.epochs(
        trials, grace, factor, 40
    )


@pytest.mark.slow
def test_only_the_best_trial_at_the_rung_goes_on_whatever_the_arrival_order(cluster) -> None:
    import ray
    from ray import tune

    curves = CURVES

    def trainable(config: dict) -> None:
        start = 0
        if checkpoint := tune.get_checkpoint():  # paused at the rung, then resumed
            with checkpoint.as_directory() as folder:
                start = json.loads((Path(folder) / "state.json").read_text())["epoch"]
        for epoch in range(start, 6):
            curve = curves[config["index"]]
            score = curve[min(epoch, len(curve) - 1)]
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch + 1}))
                tune.report(
                    {
                        "val_uf1": score,
                        "val_loss": 1 - score,
                        "epoch": epoch,
                        EPOCHS_DONE: epoch + 1,
                    },
                    checkpoint=tune.Checkpoint.from_directory(folder),
                )

    ray.init(address=cluster.address)
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={"index": tune.grid_search([0, 1, 2, 3])},
                tune_config=tune.TuneConfig(
                    metric="val_uf1",
                    mode="max",
                    scheduler=SynchronousHalving(
                        max_t=6, grace_period=2, reduction_factor=4, trials=4
                    ),
                ),
                run_config=tune.RunConfig(storage_path=storage, name="halving", verbose=0),
            )
            results = tuner.fit()
            epochs = {r.config["index"]: len(r.metrics_dataframe) for r in results}
    finally:
        ray.shutdown()
    assert epochs == {0: 2, 1: 2, 2: 2, 3: 6}
    assert epochs == replay({k: curve(v, 6) for k, v in curves.items()}, 2, 4, 6)
    assert sum(epochs.values()) == SynchronousHalving.epochs(4, 2, 4, 6)
