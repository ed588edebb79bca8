"""The training-budget check: runs that trained every epoch and kept the last one."""

import pandas as pd

from components.training.budget import budget_warning, folds_budget_warning, kept_last_epoch
from components.tuning.report import search_budget_warning


def test_only_runs_that_trained_their_whole_budget_and_kept_the_last_epoch_count() -> None:
    runs = [
        (39, 40, 40),  # kept the last of 40
        (34, 40, 40),  # trained 40, kept an earlier one
        (9, 10, 40),  # stopped early (by patience or a scheduler) at its best
        (9, 10, 10),  # a 10-epoch budget, kept the last
    ]
    assert kept_last_epoch(runs) == 2
    assert kept_last_epoch([]) == 0


def test_the_warning_needs_more_than_half() -> None:
    assert budget_warning(2, 4, 40, "folds") is None
    assert budget_warning(0, 0, 40, "folds") is None
    warning = budget_warning(3, 4, 40, "folds")
    assert warning is not None and warning.startswith("3 of 4 folds kept their last epoch of 40")


def test_evaluate_folds() -> None:
    folds = [{"best_epoch": 39, "epochs_run": 40}] * 9 + [{"best_epoch": 20, "epochs_run": 33}]
    assert folds_budget_warning(folds, 40).startswith("9 of 10 evaluate folds")
    assert folds_budget_warning(folds, 60) is None  # a budget of 60: none ran all of it


def test_a_search_counts_its_full_length_trials_each_with_its_own_budget() -> None:
    table = pd.DataFrame(
        {
            "epochs": [40, 40, 40, 20],
            "epochs_run": [40, 40, 13, 20],  # the third was cut by a scheduler
            "best_epoch": [39, 39, 12, 19],
        }
    )
    warning = search_budget_warning(table)
    assert warning is not None and warning.startswith(
        "3 of 3 full-length trials kept their last epoch of 20–40"
    )
    assert search_budget_warning(table.assign(best_epoch=[39, 30, 12, 10])) is None
