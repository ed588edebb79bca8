"""The ``compare`` stage's answers: every model of a space against its backbone's baseline, on the
same folds and seeds.

Per variant: UF1/UAR (mean over seeds, subject-bootstrap CI), each seed's UF1, each dataset's
UF1, and the paired ΔUF1 against the baseline (both rescored on the same drawn subjects) with its
CI, p-value and verdict — unadjusted, and adjusted for the number of comparisons in the sweep
(Holm by default: the family-wise error rate, valid whatever the dependence between comparisons
that share one baseline; Benjamini-Hochberg on request). **Main effects**: for each axis of the
space (attention type, placement, heads, ...) and each of its levels, the mean ΔUF1 of the
variants at that level, with a CI from the same paired draws (so it answers "does attention at
``streams`` help, whatever the type?").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.attention.registry import OPTIONS
from components.config import AttentionConfig, ModelConfig, Params
from components.datasets.labels import NUM_CLASSES
from components.metrics import confusion_matrix
from components.models.space import model_variants
from components.statistics import (
    Resampling,
    Resolution,
    TrainingNoise,
    benjamini_hochberg,
    bootstrap,
    call,
    difference,
    equivalence_call,
    holm,
    paired_draws,
    uf1_uar,
)


@dataclass(frozen=True)
class Sweep:
    """The models a comparison trains: the variants of the space and each one's baseline."""

    variants: list[ModelConfig]
    baseline_of: dict[ModelConfig, ModelConfig]

    @property
    def models(self) -> list[ModelConfig]:
        """Every model to train, baselines included, once each (baselines first)."""
        baselines = list(dict.fromkeys(self.baseline_of.values()))
        return baselines + [v for v in self.variants if v not in baselines]

    @classmethod
    def of(cls, params: Params) -> Sweep:
        cfg = params.compare
        variants = model_variants(cfg.space, params.model.dropout, params.preprocess.input_sizes())
        baseline_of = {}
        for backbone in cfg.space.backbone:
            if cfg.baseline == "none":
                base = ModelConfig(backbone, AttentionConfig("none"), (), params.model.dropout)
            else:
                mine = [
                    v
                    for v in variants
                    if v.backbone == backbone and v.attention.type == cfg.baseline
                ]
                if len(mine) != 1:
                    from components.errors import ConfigError

                    raise ConfigError(
                        f"compare.baseline: {cfg.baseline!r} is {len(mine)} models of "
                        f"{backbone} in compare.space; a baseline must be exactly one"
                    )
                base = mine[0]
            for variant in variants:
                if variant.backbone == backbone:
                    baseline_of[variant] = base
        return cls([v for v in variants if v != baseline_of[v]], baseline_of)


def levels(model: ModelConfig) -> dict[str, str]:
    """A model's level on each axis of a space (what main effects group by)."""
    attention = model.attention.as_dict()
    out = {
        "backbone": model.backbone,
        "attention": attention["type"],
        "placement": "+".join(model.placement) or "-",
    }
    for option in OPTIONS:
        if option in attention:
            out[option] = "default" if attention[option] is None else str(attention[option])
    return out


def per_seed_uf1(frame: pd.DataFrame) -> dict[str, float]:
    return {
        str(s): round(float(uf1_uar(confusion_matrix(g.true, g.predicted, NUM_CLASSES))[0]), 4)
        for s, g in frame.groupby("seed")
    }


def per_dataset_uf1(frame: pd.DataFrame) -> dict[str, float]:
    """Each dataset's UF1 (mean over seeds of its pooled UF1)."""
    out = {}
    for dataset, rows in frame.groupby("dataset"):
        values = [
            uf1_uar(confusion_matrix(g.true, g.predicted, NUM_CLASSES))[0]
            for _, g in rows.groupby("seed")
        ]
        out[str(dataset)] = round(float(np.mean(values)), 4)
    return out


@dataclass
class Answers:
    """What a comparison found: a row per model, the main effects, the paired draws."""

    rows: list[dict]
    effects: list[dict]
    noise: TrainingNoise


def sweep_noise(
    sweep: Sweep, predictions: dict[ModelConfig, pd.DataFrame], draw: Resampling
) -> tuple[list[str], TrainingNoise]:
    """The subjects of a sweep's predictions and the seed noise of its differences, pooled over
    every variant against its baseline."""
    subjects = sorted(next(iter(predictions.values())).subject_id.unique())
    pairs = [
        (predictions[v], predictions[sweep.baseline_of[v]], sweep.baseline_of[v].label)
        for v in sweep.variants
    ]
    return subjects, TrainingNoise.of_differences(pairs, subjects, draw)


def compare(
    sweep: Sweep,
    predictions: dict[ModelConfig, pd.DataFrame],
    draw: Resampling,
    correction: str,
    margin: float,
) -> Answers:
    """Rows (baselines first) and main effects of a finished sweep; each comparison's verdict
    is four-way (:func:`~components.statistics.call`) against ``margin``, with its MDE."""
    subjects, noise = sweep_noise(sweep, predictions, draw)
    rows, draws, estimates = [], {}, {}
    baselines = set(sweep.baseline_of.values())
    for model in sweep.models:
        row = model_row(model, predictions[model], subjects, draw)
        if model in baselines:
            row["verdict"] = "baseline"
        else:
            base = sweep.baseline_of[model]
            found = paired_draws(
                predictions[model], predictions[base], subjects, draw, noise,
                (model.label, base.label),
            )  # fmt: skip
            estimates[model], draws[model] = found["uf1"]
            row.update(comparison_fields(found, base.label, draw.confidence, margin))
        rows.append(row)
    compared = [r for r in rows if r["verdict"] != "baseline"]
    adjust_for_the_family(compared, correction, 1 - draw.confidence, margin)
    order = sweep.variants  # the compared rows' order
    effects = main_effects(
        compared, [estimates[m] for m in order], [draws[m] for m in order], draw, margin
    )
    return Answers(rows, effects, noise)


def model_row(model: ModelConfig, frame: pd.DataFrame, subjects, draw: Resampling) -> dict:
    """A model's row: its levels, UF1 and UAR with their intervals, per seed and dataset."""
    intervals = bootstrap(frame, subjects, draw)
    return {
        "model": model.label,
        **levels(model),
        **{k: round(v, 4) for k, v in intervals["uf1"].as_dict("uf1").items()},
        **{k: round(v, 4) for k, v in intervals["uar"].as_dict("uar").items()},
        "uf1_per_seed": per_seed_uf1(frame),
        "uf1_per_dataset": per_dataset_uf1(frame),
    }


def comparison_fields(found: dict, baseline: str, confidence: float, margin: float) -> dict:
    """A compared row's paired differences from ``baseline`` (from its paired draws
    ``found``), p-value, MDE, equivalence p-value and four-way verdict."""
    delta = {k: difference(e, d, confidence) for k, (e, d) in found.items()}
    resolution = Resolution.of(found["uf1"][1], confidence, margin)
    return {
        "baseline": baseline,
        **{f"delta_{k}": round(v, 4) for k, v in delta["uf1"].as_dict("uf1").items()},
        **{f"delta_{k}": round(v, 4) for k, v in delta["uar"].as_dict("uar").items()},
        "delta_uf1_ci_clipped": delta["uf1"].clipped,
        "p": round(delta["uf1"].p_value, 4),
        "mde_uf1": round(resolution.mde, 4),
        "tost_p": round(resolution.tost_p, 4),
        "verdict": call(delta["uf1"], resolution),
    }


def adjust_for_the_family(compared: list[dict], correction: str, alpha: float, margin: float):
    """Each compared row's p-values adjusted across the sweep (``holm`` or ``bh``) and its
    verdict at the adjusted level: the family's claims of a difference and of equivalence."""
    adjust = holm if correction == "holm" else benjamini_hochberg
    p_values = adjust([r["p"] for r in compared])
    tost_p_values = adjust([r["tost_p"] for r in compared])
    for row, adjusted, tost in zip(compared, p_values, tost_p_values, strict=True):
        row["p_adjusted"] = round(float(adjusted), 4)
        row["tost_p_adjusted"] = round(float(tost), 4)
        row["verdict_adjusted"] = (
            ("better" if row["delta_uf1"] > 0 else "worse")
            if adjusted < alpha
            else equivalence_call(tost < alpha, margin)  # the family's claims controlled too
        )


def main_effects(
    rows: Sequence[dict],
    estimates: Sequence[float],
    draws: Sequence[np.ndarray],
    draw: Resampling,
    margin: float,
) -> list[dict]:
    """For each axis with two levels or more among the compared variants (``rows``, with their
    exact ΔUF1 ``estimates`` and paired ``draws``), and each level: the mean ΔUF1 of the variants
    at that level, with the percentile CI of the mean of their draws (the draws are paired across
    variants: the same subjects each draw)."""
    effects = []
    axes = [a for a in ("backbone", "attention", "placement", *OPTIONS)
            if len({r.get(a) for r in rows if r.get(a) is not None}) > 1]  # fmt: skip
    for axis in axes:
        for level in sorted({str(r[axis]) for r in rows if r.get(axis) is not None}):
            mine = [k for k, r in enumerate(rows) if str(r.get(axis)) == level]
            estimate = float(np.mean([estimates[k] for k in mine]))
            pooled = np.mean([draws[k] for k in mine], axis=0)
            interval = difference(estimate, pooled, draw.confidence)
            resolution = Resolution.of(pooled, draw.confidence, margin)
            effects.append(
                {
                    "axis": axis,
                    "level": level,
                    "variants": len(mine),
                    "delta_uf1": round(interval.estimate, 4),
                    "delta_uf1_ci_low": round(interval.low, 4),
                    "delta_uf1_ci_high": round(interval.high, 4),
                    "delta_uf1_ci_clipped": interval.clipped,
                    "mde_uf1": round(resolution.mde, 4),
                    "verdict": call(interval, resolution),
                }
            )
    return effects


def run_sweep(params: Params, session, seeds: list[int]):
    """Every model of the sweep on the protocol's folds, all units submitted at once (so a
    cluster packs them); returns (sweep, predictions by model, protocol runs)."""
    from components.evaluation.protocol import run_variants

    sweep = Sweep.of(params)
    runs = run_variants(
        sweep.models, params.train, seeds, session.folds, session.records.manifest,
        session.execution,
    )  # fmt: skip
    predictions = {m: r.predictions for m, r in zip(sweep.models, runs, strict=True)}
    return sweep, predictions, runs


def header(params: Params, session, seeds: list[int], noise: TrainingNoise) -> str:
    ev, cfg = params.evaluate, params.compare
    records = session.records
    return (
        f"{ev.protocol.upper()} over {len(records.subjects)} subjects, {len(records.manifest)} "
        f"samples; seeds {seeds}; epoch chosen on validation subjects per fold; CIs: subject "
        f"bootstrap ({ev.bootstrap} resamples), Δ paired on the same subjects and seeds"
        f"{noise_statement(noise)}; adjusted for "
        f"{sum(1 for _ in Sweep.of(params).variants)} comparisons by "
        f"{'Holm' if cfg.correction == 'holm' else 'Benjamini-Hochberg'}."
    )


def noise_statement(noise: TrainingNoise) -> str:
    """How the Δ intervals account for training noise (words for the report's header)."""
    if noise.dof == 0:
        return (
            " (one seed per model: the noise between training seeds is not measured and the Δ "
            "intervals leave it out; set compare.seeds ≥ 2)"
        )
    return (
        f" plus the noise between training seeds (sd {noise.sd() * math.sqrt(2):.4f} of one "
        f"seed's paired ΔUF1, pooled over the comparisons, {noise.dof} df, "
        f"{noise.effective_dof} effective)"
    )


def publish(params: Params, comparison) -> Path:
    """The comparison's tables, JSON, metrics and figures into ``compare.reports_dir``,
    together."""
    from components.artifacts import Comparison
    from components.evaluation import comparison_report as report
    from components.outputs import Protected, staged_files

    folder = Comparison.folder(params)
    with staged_files(
        folder, "compare.reports_dir", Protected.of(params), Comparison.FILES
    ) as staging:
        comparison.write(staging)
        rows, correction = comparison.rows, comparison.correction
        margin = params.compare.margin
        (staging / "comparison.md").write_text(
            report.markdown(rows, comparison.effects, comparison.header, correction, margin)
        )
        report.table(rows, correction).to_csv(staging / "comparison.csv", index=False)
        (staging / "comparison.tex").write_text(report.latex(rows, correction))
        report.effects_table(comparison.effects).to_csv(staging / "main_effects.csv", index=False)
        title = f"{params.evaluate.protocol}, {len(comparison.seeds)} seeds"
        report.forest_png(rows, staging / "forest.png", title, correction, margin)
        report.heatmap_png(comparison.rows, staging / "heatmap.png", f"ΔUF1 ({title})")
    return folder
