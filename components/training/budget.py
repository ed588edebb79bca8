"""Was the training budget long enough? A run that trains every epoch it was given and keeps
the last one (by validation UF1, then loss) was still improving when it stopped, so its score
and any ranking built on it depend on where the budget happened to end."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def kept_last_epoch(runs: Iterable[tuple[int, int, int]]) -> int:
    """How many runs, given as ``(best_epoch, epochs_run, epochs)`` (0-based best epoch),
    trained all their epochs and kept the last."""
    return sum(run == epochs and best == epochs - 1 for best, run, epochs in runs)


def budget_warning(kept_last: int, runs: int, epochs: int | str, what: str) -> str | None:
    """A warning when more than half of ``runs`` (folds, trials: ``what``; their budget
    ``epochs``, e.g. 40 or "20–40") kept their last epoch; ``None`` otherwise."""
    if runs == 0 or 2 * kept_last <= runs:
        return None
    return (
        f"{kept_last} of {runs} {what} kept their last epoch of {epochs}: validation was still "
        f"improving when training stopped, so more epochs or a higher learning rate may change "
        f"these results"
    )


def folds_budget_warning(folds: Sequence[Mapping], epochs: int) -> str | None:
    """The warning for an evaluation's per-fold records (``best_epoch``, ``epochs_run``)."""
    kept = kept_last_epoch((f["best_epoch"], f["epochs_run"], epochs) for f in folds)
    return budget_warning(kept, len(folds), epochs, "evaluate folds")
