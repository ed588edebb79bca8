"""``mer compare``: variants side by side on the same folds and seeds, each against a baseline.

Per variant: UF1/UAR (mean over seeds, subject-bootstrap 95% CI), each seed's UF1, the paired
difference to the baseline with its paired-bootstrap CI and a verdict (better / worse / no
detectable difference at the chosen confidence), and McNemar's exact test on the seed-majority
predictions. A figure shows UF1 per variant with its CI and the baseline's band.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from components.config import AttentionConfig, ModelConfig, Params
from components.datasets.labels import NUM_CLASSES
from components.evaluation.report import resampling
from components.metrics import confusion_matrix
from components.statistics import (
    Resampling,
    bootstrap,
    mcnemar_between,
    paired_bootstrap,
    uf1_uar,
    verdict,
)


def compare_variants(params: Params) -> list[tuple[str, ModelConfig]]:
    """(attention type, configuration) of every compared type at ``params.model``'s backbone
    and placement (``none``: the plain backbone), with the options each type takes."""
    base = params.model
    out = []
    for kind in params.compare.types:
        options = {
            k: getattr(base.attention, k) for k in ("heads", "key_dim", "reduction", "kernel_size")
        }
        attention = AttentionConfig(kind, **options)
        model = replace(
            base, attention=attention, placement=() if kind == "none" else base.placement
        )
        out.append((kind, model))
    return out


def comparison_rows(
    labels: list[str],
    models: list[ModelConfig],
    predictions: list[pd.DataFrame],
    baseline: int,
    draw: Resampling,
) -> list[dict]:
    """One row per variant: mean ± CI, per-seed UF1, Δ vs ``predictions[baseline]`` with a
    paired CI and verdict, McNemar."""
    subjects = sorted(predictions[baseline].subject_id.unique())
    rows = []
    for label, model, frame in zip(labels, models, predictions, strict=True):
        intervals = bootstrap(frame, subjects, draw)
        per_seed = {
            str(s): round(float(uf1_uar(confusion_matrix(g.true, g.predicted, NUM_CLASSES))[0]), 4)
            for s, g in frame.groupby("seed")
        }
        row = {
            "attention": label,
            "model": model.label,
            **{k: round(v, 4) for k, v in intervals["uf1"].as_dict("uf1").items()},
            **{k: round(v, 4) for k, v in intervals["uar"].as_dict("uar").items()},
            "uf1_per_seed": per_seed,
        }
        if frame is predictions[baseline]:
            row.update({"verdict": "baseline"})
        else:
            delta = paired_bootstrap(frame, predictions[baseline], subjects, draw)
            test = mcnemar_between(frame, predictions[baseline])
            row.update(
                {
                    **{f"delta_{k}": round(v, 4) for k, v in delta["uf1"].as_dict("uf1").items()},
                    **{f"delta_{k}": round(v, 4) for k, v in delta["uar"].as_dict("uar").items()},
                    "verdict": verdict(delta["uf1"]),
                    "mcnemar_variant_only": test.variant_only,
                    "mcnemar_baseline_only": test.baseline_only,
                    "mcnemar_p": round(test.p_value, 4),
                }
            )
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], baseline: str, confidence: float) -> str:
    level = f"{confidence:.0%}"
    lines = [
        f"| attention | UF1 [{level} CI] | UAR [{level} CI] | UF1 per seed | ΔUF1 vs {baseline} [{level} CI] | verdict | McNemar p |",
        "| --- | --- | --- | --- | --- | --- | ---: |",
    ]
    for r in rows:
        seeds = " ".join(f"{v:.3f}" for v in r["uf1_per_seed"].values())
        if r["verdict"] == "baseline":
            delta, p = "—", "—"
        else:
            delta = f"{r['delta_uf1']:+.4f} [{r['delta_uf1_ci_low']:+.3f}, {r['delta_uf1_ci_high']:+.3f}]"
            p = f"{r['mcnemar_p']:.3f}"
        lines.append(
            f"| {r['attention']} | {r['uf1']:.4f} [{r['uf1_ci_low']:.3f}, {r['uf1_ci_high']:.3f}] "
            f"| {r['uar']:.4f} [{r['uar_ci_low']:.3f}, {r['uar_ci_high']:.3f}] | {seeds} | {delta} "
            f"| {r['verdict']} | {p} |"
        )
    return "\n".join(lines) + "\n"


def comparison_png(rows: list[dict], path: Path, title: str) -> None:
    """UF1 per variant with its CI as error bars; the baseline's CI as a band; chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(rows) + 2), 3.6), dpi=120)
    names = [r["attention"] for r in rows]
    values = [r["uf1"] for r in rows]
    errors = [
        [r["uf1"] - r["uf1_ci_low"] for r in rows],
        [r["uf1_ci_high"] - r["uf1"] for r in rows],
    ]
    colours = {"better": "C2", "worse": "C3", "baseline": "C7"}
    ax.bar(names, values, color=[colours.get(r["verdict"], "C0") for r in rows], alpha=0.85)
    ax.errorbar(names, values, yerr=errors, fmt="none", ecolor="black", capsize=4, lw=1)
    base = next(r for r in rows if r["verdict"] == "baseline")
    ax.axhspan(
        base["uf1_ci_low"],
        base["uf1_ci_high"],
        color="grey",
        alpha=0.18,
        label=f"{base['attention']} (baseline) CI",
    )
    ax.axhline(1 / NUM_CLASSES, color="grey", ls=":", label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("UF1 (mean over seeds)")
    ax.set_title(title, fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    for verdict_name, colour in (
        ("better", "C2"),
        ("worse", "C3"),
        ("no detectable difference", "C0"),
    ):
        handles.append(plt.Rectangle((0, 0), 1, 1, color=colour))
        labels.append(verdict_name)
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_comparison(params: Params, session, seeds: list[int]):
    """Every type's units at once (so a cluster packs them), then the rows; returns
    (variants, protocol runs, rows)."""
    from components.evaluation.protocol import run_variants

    variants = compare_variants(params)
    runs = run_variants(
        [m for _, m in variants], params.train, seeds, session.folds, session.records.manifest,
        session.execution,
    )  # fmt: skip
    labels = [k for k, _ in variants]
    ev = params.evaluate
    rows = comparison_rows(
        labels, [m for _, m in variants], [r.predictions for r in runs],
        labels.index(params.compare.baseline),
        resampling(ev.bootstrap, params.seed, ev.confidence),
    )  # fmt: skip
    for row, run in zip(rows, runs, strict=True):
        row["unit_seconds"] = round(sum(u.seconds for u in run.units), 1)
    return variants, runs, rows


def publish_comparison(params: Params, session, rows: list[dict], seeds: list[int]) -> Path:
    """``attention.{md,json,png}`` into ``compare.reports_dir``, together; returns the folder."""
    from components.artifacts import Comparison
    from components.outputs import Protected, staged_files

    ev, model = params.evaluate, params.model
    records = session.records
    header = (
        f"{ev.protocol.upper()} over {len(records.subjects)} subjects, {len(records.manifest)} "
        f"samples; `{model.backbone}` with the attention at `{', '.join(model.placement)}`; seeds "
        f"{seeds}; epoch chosen on validation subjects per fold; CIs: subject bootstrap "
        f"({ev.bootstrap} resamples), Δ paired on the same subjects and seeds."
    )
    table = markdown_table(rows, params.compare.baseline, ev.confidence)
    folder = Comparison.folder(params)
    with staged_files(
        folder, "compare.reports_dir", Protected.of(params), Comparison.FILES
    ) as staging:
        Comparison(rows, header).write(staging, header + "\n\n" + table)
        title = f"{model.backbone}: attention at {', '.join(model.placement)} ({ev.protocol}, {len(seeds)} seeds)"
        comparison_png(rows, staging / "attention.png", title)
    return folder
