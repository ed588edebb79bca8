"""The search's report: one row per trial, and the figure of scores and tuning curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.training.budget import budget_warning, first_best
from components.tuning.space import describe


def _last(history: pd.DataFrame, column: str, default):
    return history[column].iloc[-1] if column in history and len(history) else default


def trial_table(results, points: list, metric: str) -> pd.DataFrame:
    """One row per trial: its point, status, best epoch (objective, then loss), timing."""
    statuses = {t.trial_id: t.status for t in results._experiment_analysis.trials}
    rows = []
    for result in results:
        index = result.config["index"]
        point = points[index]
        history = (
            result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        )
        best = None
        if len(history) and metric in history:
            ranked = history.assign(_neg_loss=-history.get("val_loss", 0)).sort_values(
                [metric, "_neg_loss"], ascending=False
            )
            best = ranked.iloc[0]
        attention = point["model"]["attention"]
        trial_id = Path(result.path).name.split("_")[1] if "_" in Path(result.path).name else ""
        trial_id = (result.metrics or {}).get("trial_id", trial_id)
        rows.append(
            {
                "trial_id": trial_id,
                "index": index,
                "label": describe(point),
                "backbone": point["model"]["backbone"],
                "attention": attention["type"],
                "heads": attention.get("heads"),
                "placement": "+".join(point["model"]["placement"]) or "-",
                "learning_rate": point["learning_rate"],
                "batch_size": point["batch_size"],
                "epochs": point["epochs"],
                "status": "ERROR" if result.error else statuses.get(trial_id, "TERMINATED"),
                "epochs_run": len(history),
                "best_epoch": int(best["epoch"]) if best is not None else -1,
                "first_best_epoch": int(history["epoch"].iloc[first_best(history[metric].tolist())])
                if best is not None
                else -1,
                "best_val_uf1": float(best[metric]) if best is not None else None,
                "best_val_loss": float(best["val_loss"]) if best is not None else None,
                "seconds": float(_last(history, "time_total_s", 0.0)),
                "node_id": str(_last(history, "node_id", "")),
                "replicas": int(_last(history, "replicas", 0)),
                "stacked_folds": int(_last(history, "stacked_folds", 0)),
                "restored_from_epoch": int(history["restored_from_epoch"].max())
                if "restored_from_epoch" in history and len(history)
                else -1,
            }
        )
    return (
        pd.DataFrame(rows)
        .sort_values(["best_val_uf1", "best_val_loss"], ascending=[False, True], na_position="last")
        .reset_index(drop=True)
    )


def plot_search(table: pd.DataFrame, results, points: list, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(3.0, 0.32 * len(table) + 1.2)), dpi=110
    )
    ordered = table.sort_values("best_val_uf1")
    colours = {kind: f"C{k}" for k, kind in enumerate(sorted(table.attention.unique()))}
    left.barh(
        ordered.label, ordered.best_val_uf1.fillna(0), color=[colours[a] for a in ordered.attention]
    )
    left.set_xlim(0, 1)
    left.set_xlabel(f"best {metric} (validation subjects)")
    left.tick_params(axis="y", labelsize=7)
    for result in results:
        history = result.metrics_dataframe
        if history is not None and metric in history:
            point = points[result.config["index"]]
            right.plot(
                history["epoch"] + 1,
                history[metric],
                color=colours[point["model"]["attention"]["type"]],
                alpha=0.8,
                label=describe(point),
            )
    right.set_xlabel("epoch")
    right.set_ylabel(metric)
    right.set_ylim(0, 1.02)
    right.set_title("tuning curves (ASHA stops the weak early)", fontsize=9)
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
