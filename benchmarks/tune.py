"""The tune stage: does its objective rank configurations as LOSO does, and what does ASHA save?

    python -m benchmarks.tune        (needs data/records: run `dvc repro` first)

On the embedded records, with params.yaml's search widened to the attention types of
``compare.types`` (so there is a ranking to compare), in one run:

1. LOSO over all subjects of every point (``mer compare``, ``compare.seeds`` seeds): the
   ranking the search should reproduce.
2. The full grid (FIFO: every trial runs every epoch) of the widened space with each objective,
   ``holdout`` and ``kfold``: Spearman's rank correlation between its scores and LOSO UF1.
3. ASHA with params.yaml's scheduler settings on params.yaml's own search space, for each
   objective: epochs run vs that space's full grid (its points' trials in step 2: a trial
   depends only on its point, the seed and the data) — goal ≤ 0.5× — and whether it picks the
   same best configuration.
Also the full grid's wall time vs ideal packing of its trials, and the trial start-up time.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from scipy.stats import spearmanr

from benchmarks.composite import mer
from benchmarks.results import write_section

ROOT = Path(__file__).resolve().parents[1]


def variant_params(folder: Path, widen: bool = True, **tune) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, key in (("preprocess", "records_dir"), ("preprocess", "report")):
        raw[section][key] = str((ROOT / raw[section][key]).resolve())
    attention = raw["compare"]["types"] if widen else raw["tune"]["space"]["attention"]
    raw["tune"] = {
        **raw["tune"],
        "space": {**raw["tune"]["space"], "attention": attention},
        "storage_path": str(folder / "ray_results"),
        "reports_dir": str(folder / "reports/tune"),
        **tune,
    }
    raw["evaluate"] = {
        **raw["evaluate"],
        "units_dir": str(folder / "units"),
        "reports_dir": str(folder / "reports"),
    }
    raw["compare"] = {**raw["compare"], "reports_dir": str(folder / "reports/compare")}
    raw["tracking"] = {
        "uri": f"sqlite:///{folder}/mlflow.db",
        "artifact_location": str(folder / "artifacts"),
        "experiment": "bench",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def search(folder: Path, widen: bool, **tune) -> tuple[float, pd.DataFrame, dict]:
    params = variant_params(folder, widen, **tune)
    start = time.perf_counter()
    mer(params, "tune", "--fresh")
    wall = time.perf_counter() - start
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    best = json.loads((folder / "reports/tune/best_config.json").read_text())
    return wall, table, best


def setup_times(folder: Path) -> list[float]:
    times = []
    for progress in folder.glob("ray_results/tune-*/*/progress.csv"):
        frame = pd.read_csv(progress)
        if "setup_s" in frame and len(frame):
            times.append(float(frame.setup_s.iloc[0]))
    return times


def main() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = params["tune"]
    slots = int(cfg["max_concurrent_trials"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loso_params = variant_params(root / "loso")
        mer(loso_params, "compare")
        loso = {
            r["attention"]: r
            for r in json.loads((root / "loso/reports/compare/attention.json").read_text())["rows"]
        }
        runs = {}
        for objective in ("holdout", "kfold"):
            runs[objective, "fifo"] = search(
                root / f"{objective}-fifo", True, objective=objective, scheduler="fifo"
            )
            runs[objective, "asha"] = search(
                root / f"{objective}-asha", False, objective=objective, scheduler="asha"
            )
        setups = setup_times(root / "holdout-fifo")
        shutil.rmtree(root, ignore_errors=True)

    rows, lines = [], []
    summary = {}
    for objective in ("holdout", "kfold"):
        fifo_wall, widened, _ = runs[objective, "fifo"]
        asha_wall, asha, asha_best = runs[objective, "asha"]
        scores = widened.set_index("attention").best_val_uf1
        types = [t for t in loso if t in scores.index]
        rho = spearmanr([scores[t] for t in types], [loso[t]["uf1"] for t in types]).statistic
        # the default space's full grid: its points' trials in the widened grid
        fifo = widened[widened.attention.isin(cfg["space"]["attention"])]
        fifo_best = {"label": fifo.iloc[0]["label"], "score": fifo.iloc[0]["best_val_uf1"]}
        ratio = asha.epochs_run.sum() / fifo.epochs_run.sum()
        picked = float(fifo.set_index("label").best_val_uf1.get(asha_best["label"], float("nan")))
        same = asha_best["label"] == fifo_best["label"] or picked == fifo_best["score"]
        ideal = max(widened.seconds.sum() / slots, widened.seconds.max())
        summary[objective] = (
            rho,
            ratio,
            same,
            fifo_wall / ideal,
            fifo_best,
            asha_best,
            fifo,
            asha,
            fifo_wall,
            asha_wall,
        )
        lines.append(
            f"{objective}: Spearman ρ(search, LOSO) = {rho:.2f}; ASHA ran {asha.epochs_run.sum()} of "
            f"{fifo.epochs_run.sum()} epochs ({ratio:.2f}×), best {asha_best['label']} vs grid {fifo_best['label']} "
            f"({'same' if same else 'DIFFERENT'}{', tied in the grid' if same and asha_best['label'] != fifo_best['label'] else ''}); "
            f"grid wall / ideal packing {fifo_wall / ideal:.2f}×"
        )
    scores_of = {
        o: runs[o, "fifo"][1].set_index("attention").best_val_uf1 for o in ("holdout", "kfold")
    }
    for t in loso:
        rows.append(
            f"| {t} | {loso[t]['uf1']:.4f} [{loso[t]['uf1_ci_low']:.3f}, {loso[t]['uf1_ci_high']:.3f}] | "
            + " | ".join(
                f"{scores_of[o].get(t, float('nan')):.3f}"
                + (
                    f" ({int(summary[o][7].set_index('attention').epochs_run[t])} ep. ASHA)"
                    if t in set(summary[o][7].attention)
                    else ""
                )
                for o in ("holdout", "kfold")
            )
            + " |"
        )
    print("\n".join(lines))
    mean_setup = sum(setups) / len(setups) if setups else float("nan")

    def row(o: str) -> str:
        rho, ratio, same, packing, fifo_best, asha_best, fifo, asha, fifo_wall, asha_wall = summary[
            o
        ]
        return (
            f"| `{o}` | {rho:.2f} | {asha.epochs_run.sum()} / {fifo.epochs_run.sum()} = **{ratio:.2f}×** | "
            f"{asha_best['label']} / {fifo_best['label']} ({'same' if same else 'different'}"
            f"{', tied' if same and asha_best['label'] != fifo_best['label'] else ''}) | "
            f"{fifo_wall:.0f} s ({packing:.2f}× ideal) | {asha_wall:.0f} s |"
        )

    body = f"""Embedded records (LOSO over all their subjects). Rank correlation: the params.yaml
search with `attention` widened to {", ".join(loso)} ({len(loso)} points, {cfg["space"]["epochs"]}
epochs), full grid, {slots} trial slots. ASHA: params.yaml's own search ({", ".join(cfg["space"]["attention"])})
and scheduler settings — grace period {cfg["grace_period"]}, reduction factor
{cfg["reduction_factor"]}, {cfg["brackets"]} bracket(s) — against that space's full grid. LOSO:
`mer compare`, {params["compare"]["seeds"]} seeds. "Same best" also counts a pick whose full-grid
score ties the grid's best (the grid breaks ties by validation loss).

| objective | Spearman ρ (search score vs LOSO UF1) | ASHA epochs / full grid | best: ASHA / grid | widened grid wall | ASHA wall |
| --- | ---: | ---: | --- | ---: | ---: |
{row("holdout")}
{row("kfold")}

Goals: ASHA ≤ 0.5× the grid's epochs with the same best configuration. Per point (search
score = best validation UF1 of the full grid's trial; epochs the ASHA trial ran):

| attention | LOSO UF1 [95% CI] | `holdout` score | `kfold` score |
| --- | ---: | ---: | ---: |
{chr(10).join(rows)}

Trial start-up (imports, records, model; `setup_s`): {mean_setup:.1f} s on average."""
    write_section("tune", "python -m benchmarks.tune", body)


if __name__ == "__main__":
    main()
