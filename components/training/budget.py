"""Was the training budget long enough? A run that trains every epoch it was given and first
reaches its best validation UF1 within the last ``window`` epochs (``train.patience``: the
stretch without improvement after which early stopping calls a run done) may still have been
improving when it stopped, so its score, and any ranking built on it, may depend on where the
budget ended. (On a noisy plateau a late maximum can also be chance: the check says "may".)

Not "kept its last epoch": selection breaks UF1 ties by the lower validation loss, which on
nearly separable data keeps falling long after UF1 has settled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def first_best(scores: Sequence[float]) -> int:
    """The 0-based epoch at which ``scores`` first reach their maximum."""
    return max(range(len(scores)), key=lambda epoch: (scores[epoch], -epoch))


def still_improving(runs: Iterable[tuple[int, int, int]], window: int) -> int:
    """How many runs, given as ``(first best epoch, epochs run, epochs)``, trained all their
    epochs and first reached their best within the last ``window``."""
    return sum(run == epochs and best >= epochs - window for best, run, epochs in runs)


def budget_warning(runs: Sequence[tuple[int, int, int]], window: int, what: str) -> str | None:
    """A warning when more than half of ``runs`` (folds, trials: ``what``; as in
    :func:`still_improving`) were still improving; ``None`` otherwise."""
    improving = still_improving(runs, window)
    if not runs or 2 * improving <= len(runs):
        return None
    low, high = min(r[2] for r in runs), max(r[2] for r in runs)
    epochs = f"{low}–{high}" if low < high else high
    return (
        f"{improving} of {len(runs)} {what} trained all {epochs} epochs and first reached their best "
        f"validation UF1 in the last {window} (train.patience): they may still have been "
        f"improving when training stopped, and more epochs or a higher learning rate may change "
        f"these results"
    )


def fold_runs(folds: Sequence[Mapping], epochs: int) -> list[tuple[int, int, int]]:
    """An evaluation's per-fold records (``history``, ``epochs_run``) as runs."""
    return [
        (first_best([h["val_uf1"] for h in f["history"]]), f["epochs_run"], epochs)
        for f in folds
        if f["history"]
    ]


def folds_budget_warning(folds: Sequence[Mapping], epochs: int, window: int) -> str | None:
    """The warning for an evaluation's per-fold records."""
    return budget_warning(fold_runs(folds, epochs), window, "evaluate folds")
