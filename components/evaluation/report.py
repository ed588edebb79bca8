"""From a protocol run to what people read: pooled UF1/UAR with subject-bootstrap CIs
(composite, per dataset, subjects the search never saw), per seed, figures, plot data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from components.datasets.labels import COMPOSITE_CLASSES, NUM_CLASSES
from components.evaluation import plots
from components.metrics import confusion_matrix, per_class
from components.statistics import (
    Resampling,
    bootstrap,
    per_class_f1_recall,
    percentile_interval,
    seed_mean_metrics,
    subject_confusions,
    uf1_uar,
)


def resampling(resamples: int, seed: int, confidence: float) -> Resampling:
    """The subject bootstrap of the reports (over the composite's classes)."""
    return Resampling(NUM_CLASSES, resamples, seed, confidence)


#: a subject bootstrap over fewer subjects than this says nothing (with 2 subjects every draw
#: is one of three sets): no interval is given, and the reports say so
MIN_SUBJECTS_FOR_CI = 5
TOO_FEW = "too few subjects for a CI"


def with_ci(block: dict, name: str, digits: int = 4) -> str:
    """``0.8123 [0.700, 0.900]``, or the value and why it has no interval."""
    value = f"{block[name]:.{digits}f}"
    low, high = block.get(f"{name}_ci_low"), block.get(f"{name}_ci_high")
    if low is None or high is None:
        return f"{value} ({TOO_FEW})"
    return f"{value} [{low:.3f}, {high:.3f}]"


def subset_block(frame: pd.DataFrame, subjects: Sequence[str], draw: Resampling) -> dict:
    """One subset's metrics: the seed-mean pooled UF1/UAR with CIs, per seed, accuracy,
    per-class F1 and the confusion matrix (counts summed over seeds)."""
    subjects = sorted(subjects)
    mine = frame[frame.subject_id.isin(subjects)]
    intervals = {
        name: interval
        if len(subjects) >= MIN_SUBJECTS_FOR_CI
        else type(interval)(interval.estimate, None, None)
        for name, interval in bootstrap(mine, subjects, draw).items()
    }
    per_seed = {}
    for value, group in mine.groupby("seed"):
        matrix = confusion_matrix(group.true, group.predicted, NUM_CLASSES)
        f1, recall = uf1_uar(matrix)
        per_seed[str(value)] = {"uf1": float(f1), "uar": float(recall)}
    matrix = confusion_matrix(mine.true, mine.predicted, NUM_CLASSES)
    f1_values = per_class(matrix)["f1"]
    f1_intervals = (
        per_class_f1_intervals(mine, subjects, draw) if len(subjects) >= MIN_SUBJECTS_FOR_CI else {}
    )
    return {
        **intervals["uf1"].as_dict("uf1"),
        **intervals["uar"].as_dict("uar"),
        "accuracy": float((mine.true == mine.predicted).mean()),
        "samples": int(mine.uid.nunique()),
        "subjects": len(subjects),
        "per_seed": per_seed,
        "f1_per_class": {
            c: (None if np.isnan(f1_values[i]) else float(f1_values[i]))
            for i, c in enumerate(COMPOSITE_CLASSES)
        },
        "f1_per_class_ci": f1_intervals,
        "confusion_matrix": matrix.tolist(),
    }


def per_class_f1_intervals(
    frame: pd.DataFrame, subjects: Sequence[str], draw: Resampling
) -> dict[str, list[float | None]]:
    """Each class's F1 (predictions pooled over seeds and subjects) with the percentile
    interval of the same subject bootstrap: ``{class: [low, high]}`` (None where a class never
    occurs in a draw)."""
    seeds = sorted(frame.seed.unique())
    per_subject = subject_confusions(frame, subjects, seeds, NUM_CLASSES).sum(axis=0)
    pooled = np.einsum("rn,nij->rij", draw.draws(len(subjects)), per_subject)
    f1 = per_class_f1_recall(pooled)[0]  # (R, K)
    out = {}
    for k, name in enumerate(COMPOSITE_CLASSES):
        if np.isnan(f1[:, k]).all():
            out[name] = [None, None]
        else:
            low, high = percentile_interval(f1[:, k], draw.confidence)
            out[name] = [round(low, 4), round(high, 4)]
    return out


def results_table(summary: dict) -> pd.DataFrame:
    """One row per subset (composite, datasets, ensemble, ...): UF1 and UAR with their CIs,
    each class's F1 with its CI, samples and subjects (the paper's table)."""
    rows = []
    for subset, block in summary.items():
        row = {"subset": subset}
        for metric in ("uf1", "uar"):
            row[metric.upper()] = round(block[metric], 4)
            row[f"{metric.upper()} CI low"] = _rounded(block.get(f"{metric}_ci_low"))
            row[f"{metric.upper()} CI high"] = _rounded(block.get(f"{metric}_ci_high"))
        for name, value in block.get("f1_per_class", {}).items():
            low, high = block.get("f1_per_class_ci", {}).get(name, [None, None])
            row[f"F1 {name}"] = _rounded(value)
            row[f"F1 {name} CI"] = "" if low is None else f"[{low:.3f}, {high:.3f}]"
        row["samples"], row["subjects"] = block.get("samples"), block.get("subjects")
        rows.append(row)
    return pd.DataFrame(rows)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def write_tables(summary: dict, folder: Path) -> None:
    """``results.csv`` and ``results.tex``: :func:`results_table`, an empty CI where there are
    too few subjects for one."""
    table = results_table(summary)
    table.to_csv(folder / "results.csv", index=False)
    (folder / "results.tex").write_text(
        table.to_latex(index=False, escape=True, na_rep="", float_format="%.3f")
    )


def dataset_mean_block(frame: pd.DataFrame, draw: Resampling) -> dict:
    """The mean over datasets of each dataset's UF1/UAR (the leave-one-dataset-out summary),
    with a CI from resampling subjects within every dataset."""
    uf1_draws, uar_draws, uf1_hats, uar_hats = [], [], [], []
    seeds = sorted(frame.seed.unique())
    for dataset in sorted(frame.dataset.unique()):
        subjects = sorted(frame[frame.dataset == dataset].subject_id.unique())
        per_subject = subject_confusions(frame, subjects, seeds, NUM_CLASSES)
        f1, recall = seed_mean_metrics(per_subject, np.ones((1, len(subjects)), np.int64))
        uf1_hats.append(f1[0])
        uar_hats.append(recall[0])
        f1, recall = seed_mean_metrics(per_subject, draw.draws(len(subjects)))
        uf1_draws.append(f1)
        uar_draws.append(recall)
    uf1 = draw.interval(np.mean(uf1_hats), np.mean(uf1_draws, 0))
    uar = draw.interval(np.mean(uar_hats), np.mean(uar_draws, 0))
    return {
        **uf1.as_dict("uf1"),
        **uar.as_dict("uar"),
        "accuracy": float((frame.true == frame.predicted).mean()),
        "samples": int(frame.uid.nunique()),
        "subjects": int(frame.subject_id.nunique()),
    }


#: the subset name of the seeds' probability ensemble (composite, every subject)
ENSEMBLE = "ensemble"


def ensemble_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per sample: the mean of the seeds' class probabilities and its argmax — the
    N-seed ensemble as one model (seed -1)."""
    probability = sorted(c for c in predictions.columns if c.startswith("p_"))
    keys = ["uid", "subject_id", "dataset", "true"]
    mean = predictions.groupby(keys, sort=True)[probability].mean().reset_index()
    mean["predicted"] = mean[probability].to_numpy().argmax(axis=1)
    mean["seed"] = -1
    return mean


def summarise(
    predictions: pd.DataFrame,
    draw: Resampling,
    *,
    untuned: Sequence[str] = (),
    dataset_mean: bool = False,
) -> dict[str, dict]:
    """``composite`` (the mean over seeds), each dataset, ``ensemble`` (with several seeds: the
    seeds' probability ensemble over every subject), ``untuned_subjects`` (when given) and, for
    leave-one-dataset-out, ``dataset_mean`` (the mean of the per-dataset metrics)."""
    subjects = sorted(predictions.subject_id.unique())
    summary = {"composite": subset_block(predictions, subjects, draw)}
    for dataset in sorted(predictions.dataset.unique()):
        own = sorted(predictions[predictions.dataset == dataset].subject_id.unique())
        summary[dataset] = subset_block(predictions, own, draw)
    if predictions.seed.nunique() > 1:
        members = ensemble_predictions(predictions)
        summary[ENSEMBLE] = subset_block(members, subjects, draw)
    untuned = sorted(set(untuned) & set(subjects))
    if untuned:
        summary["untuned_subjects"] = subset_block(predictions, untuned, draw)
    if dataset_mean:
        summary["dataset_mean"] = dataset_mean_block(predictions, draw)
    return summary


def write_figures(
    summary: dict,
    predictions: pd.DataFrame,
    overlays: list[dict],
    folder: Path,
    title: str,
    protocol: str,
) -> None:
    """Confusion matrices, per-class F1 and attention maps under ``folder/figures``, and the
    ``dvc plots`` data under ``folder/plots``."""
    figures, plot_data = folder / "figures", folder / "plots"
    figures.mkdir(parents=True, exist_ok=True)
    plot_data.mkdir(parents=True, exist_ok=True)
    names = np.array(COMPOSITE_CLASSES)
    pd.DataFrame(
        {
            "actual": names[predictions.true.to_numpy()],
            "predicted": names[predictions.predicted.to_numpy()],
        }
    ).to_csv(plot_data / "confusion.csv", index=False)
    pd.DataFrame(
        [  # one bar per subset and class (dvc plots would add bars of the same label)
            {"bar": f"{s}: {c}", "subset": s, "class": c, "f1": f}
            for s, b in summary.items()
            for c, f in b.get("f1_per_class", {}).items()
        ]
    ).to_csv(plot_data / "f1_per_class.csv", index=False)
    for subset, block in summary.items():
        if "confusion_matrix" not in block:
            continue
        plots.confusion_png(
            np.array(block["confusion_matrix"]),
            COMPOSITE_CLASSES,
            f"{subset} {protocol}: UF1 {with_ci(block, 'uf1', 3)}\n"
            f"UAR {with_ci(block, 'uar', 3)}; {title}",
            figures / f"confusion_{subset}.png",
        )
    plots.f1_bars_png(
        {s: b["f1_per_class"] for s, b in summary.items() if "f1_per_class" in b},
        figures / "f1_per_class.png",
        f"F1 per class ({protocol}), {title}",
    )
    plots.attention_grid_png(
        sorted(overlays, key=lambda e: e["caption"]),
        figures / "attention_maps.png",
        f"{title}: each face from the fold where it was the test subject",
    )


def selection_statement(selection: str, candidates: int, inner_folds: int, tuned: bool) -> str:
    """What chose the configuration and the epochs, for the report and the model card."""
    if selection == "nested" and candidates > 1:
        return (
            f"nested: per outer fold, the configuration is chosen among {candidates} candidates "
            f"by {inner_folds}-fold grouped validation on that fold's training subjects, and the "
            "epoch on its validation subjects; the test subject is never seen"
        )
    statement = (
        "given configuration; per fold, the epoch is chosen on validation subjects drawn from "
        "the training subjects; the test subject is never seen by training or selection"
    )
    if tuned:
        statement += (
            ". The configuration and training values were chosen by the tune stage on subjects "
            "outside its holdout, so for those subjects the choice is not nested per outer fold; "
            "'untuned_subjects' covers the held-out subjects, which influenced no choice at all"
        )
    return statement


def print_summary(stage: str, summary: dict, complete: bool, folds: int) -> None:
    """The composite and per-subset lines of a finished evaluation."""
    for subset, block in summary.items():
        name = "composite" if subset == "composite" else f"  {subset}"
        print(
            f"{stage}: {name}: UF1 {with_ci(block, 'uf1')}, UAR {with_ci(block, 'uar')} over "
            f"{block['samples']} samples, {block['subjects']} "
            f"subjects" + ("" if complete or subset != "composite" else f" (ONLY {folds} folds)")
        )
