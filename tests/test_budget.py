"""The training-budget check: runs that trained every epoch and were still improving."""

import pandas as pd

from components.training.budget import (
    budget_warning,
    first_best,
    fold_runs,
    folds_budget_warning,
    still_improving,
)
from components.tuning.report import search_budget_warning


def test_the_first_epoch_at_the_best_score() -> None:
    assert first_best([0.2, 0.9, 0.5, 0.9, 0.9]) == 1
    assert first_best([0.3]) == 0


def test_only_runs_that_trained_their_whole_budget_and_rose_late_count() -> None:
    runs = [  # (first best epoch, epochs run, epochs), window 12: 28..39 is late for 40
        (39, 40, 40),
        (28, 40, 40),
        (27, 40, 40),  # best first reached 13 epochs before the end: settled
        (9, 10, 40),  # stopped early (patience or a scheduler)
        (9, 10, 10),  # a 10-epoch budget
    ]
    assert still_improving(runs, 12) == 3
    assert still_improving(runs, 1) == 2
    assert still_improving([], 12) == 0


def test_the_warning_needs_more_than_half() -> None:
    rising, settled = (39, 40, 40), (10, 40, 40)
    assert budget_warning([rising, rising, settled, settled], 12, "folds") is None
    assert budget_warning([], 12, "folds") is None
    warning = budget_warning([rising, rising, rising, settled], 12, "folds")
    assert warning is not None and warning.startswith(
        "3 of 4 folds trained all 40 epochs and first reached their best validation UF1 in the "
        "last 12 (train.patience)"
    )


def history(uf1: list[float]) -> list[dict]:
    return [{"epoch": e, "val_uf1": u, "val_loss": 1.0 - e / 100} for e, u in enumerate(uf1)]


def test_evaluate_folds_count_uf1_not_the_loss_tie_break() -> None:
    rising = {"history": history([0.1] * 35 + [0.5] * 5), "epochs_run": 40, "best_epoch": 39}
    # UF1 settled at epoch 10; the loss kept falling, so the selection kept the last epoch
    settled = {"history": history([0.1] * 10 + [0.8] * 30), "epochs_run": 40, "best_epoch": 39}
    no_validation = {"history": [], "epochs_run": 40, "best_epoch": -1}
    assert fold_runs([rising, settled, no_validation], 40) == [(35, 40, 40), (10, 40, 40)]
    assert folds_budget_warning([rising, rising, settled], 40, 12).startswith("2 of 3 evaluate")
    assert folds_budget_warning([rising, settled, settled], 40, 12) is None
    assert folds_budget_warning([rising, rising, settled], 60, 12) is None  # none ran all 60


def test_a_search_counts_its_full_length_trials_each_with_its_own_budget() -> None:
    table = pd.DataFrame(
        {
            "epochs": [40, 40, 40, 20],
            "epochs_run": [40, 40, 13, 20],  # the third was cut by a scheduler
            "first_best_epoch": [39, 30, 12, 19],
        }
    )
    warning = search_budget_warning(table, 12)
    assert warning is not None and warning.startswith(
        "3 of 3 full-length trials trained all 20–40 epochs"
    )
    assert search_budget_warning(table.assign(first_best_epoch=[39, 20, 12, 5]), 12) is None
