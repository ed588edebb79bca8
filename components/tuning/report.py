"""The search's report: one row per trial, and the figure of scores and tuning curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.training.budget import budget_warning, first_best
from components.tuning.space import describe


def _last(history: pd.DataFrame, column: str, default):
    return history[column].iloc[-1] if column in history and len(history) else default


def best_epoch(history: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    """The epoch that ranks first: the best ``metric`` (highest, or lowest with mode min),
    then the lower validation loss."""
    if not len(history) or metric not in history:
        return None
    sign = 1.0 if mode == "max" else -1.0
    key = history[metric] * sign
    ranked = history.assign(_key=key, _neg_loss=-history["val_loss"]).sort_values(
        ["_key", "_neg_loss"], ascending=False, kind="stable"
    )
    return ranked.iloc[0]


def trial_table(record, points: list, metric: str, mode: str = "max") -> pd.DataFrame:
    """One row per trial of a finished search (:class:`~components.tuning.store.SearchRecord`):
    its point, status, best epoch (``metric`` in ``mode``, then loss), timing; ranked best
    first (``best_score`` is the metric at the best epoch)."""
    rows, sign = [], 1.0 if mode == "max" else -1.0
    for trial in record.trials:
        point = points[trial.index]
        history = pd.DataFrame(trial.history)
        best = best_epoch(history, metric, mode)
        attention = point["model"]["attention"]
        rows.append(
            {
                "trial_id": trial.key,
                "index": trial.index,
                "label": describe(point),
                "backbone": point["model"]["backbone"],
                "attention": attention["type"],
                "heads": attention.get("heads"),
                "placement": "+".join(point["model"]["placement"]) or "-",
                "learning_rate": point["learning_rate"],
                "batch_size": point["batch_size"],
                "epochs": point["epochs"],
                "status": trial.status,
                "epochs_run": len(history),
                "best_epoch": int(best["epoch"]) if best is not None else -1,
                "first_best_epoch": int(
                    history["epoch"].iloc[first_best((sign * history[metric]).tolist())]
                )
                if best is not None
                else -1,
                "best_score": float(best[metric]) if best is not None else None,
                "best_val_uf1": float(best["val_uf1"]) if best is not None else None,
                "best_val_loss": float(best["val_loss"]) if best is not None else None,
                "replicas": int(_last(history, "replicas", 0)),
                "stacked_folds": int(_last(history, "stacked_folds", 0)),
                "restored_from_epoch": int(history["restored_from_epoch"].max())
                if "restored_from_epoch" in history and len(history)
                else -1,
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(
        ["best_score", "best_val_loss", "trial_id"],
        ascending=[mode == "min", True, True],
        na_position="last",
        kind="stable",
    ).reset_index(drop=True)


def plot_search(table: pd.DataFrame, record, points: list, path: Path, metric: str) -> None:
    """Each trial's best score (bars) and its curve per epoch (its tuning curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(3.0, 0.32 * len(table) + 1.2)), dpi=110
    )
    ordered = table.sort_values("best_score", ascending=metric != "val_loss")
    colours = {kind: f"C{k}" for k, kind in enumerate(sorted(table.attention.unique()))}
    left.barh(
        ordered.label, ordered.best_score.fillna(0), color=[colours[a] for a in ordered.attention]
    )
    if metric != "val_loss":
        left.set_xlim(0, 1)
    left.set_xlabel(f"best {metric} (validation subjects)")
    left.tick_params(axis="y", labelsize=7)
    for trial in record.trials:
        history = pd.DataFrame(trial.history)
        if metric in history:
            point = points[trial.index]
            right.plot(
                history["epoch"] + 1,
                history[metric],
                color=colours[point["model"]["attention"]["type"]],
                alpha=0.8,
                label=describe(point),
            )
    right.set_xlabel("epoch")
    right.set_ylabel(metric)
    if metric != "val_loss":
        right.set_ylim(0, 1.02)
    stopped = (table.epochs_run < table.epochs).any()
    right.set_title(
        "tuning curves (cut trials end early)" if stopped else "tuning curves", fontsize=9
    )
    handles = [plt.Line2D([], [], color=c, label=k) for k, c in colours.items()]
    right.legend(handles=handles, fontsize=7, title="attention")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def search_budget_warning(table: pd.DataFrame, window: int) -> str | None:
    """Said when most trials that ran every epoch were still improving at the end: the search
    ranked configurations on where their budget ended."""
    full = table[table.epochs_run == table.epochs]
    runs = list(zip(full.first_best_epoch, full.epochs_run, full.epochs, strict=True))
    return budget_warning(runs, window, "full-length trials")
