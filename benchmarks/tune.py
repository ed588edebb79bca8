"""The tune stage: does its objective rank configurations as LOSO does, and what do its schedulers save?

    python -m benchmarks.tune        (needs data/records: run `dvc repro` first)

On the embedded records, with params.yaml's search widened to the attention types of
``compare.types`` (so there is a ranking to compare), in one run:

1. LOSO over all subjects of every point (``mer compare``, ``compare.seeds`` seeds): the
   ranking the search should reproduce.
2. The full grid (FIFO: every trial runs every epoch) of the widened space with each objective,
   ``holdout`` and ``kfold``: Spearman's rank correlation between its scores and LOSO UF1.
3. Each early-stopping scheduler (``asha``: asynchronous; ``halving``: synchronous, every
   trial reaches a rung before any is cut) with params.yaml's grace period and reduction
   factor on params.yaml's own search space, for each objective: epochs run vs that space's
   full grid (its points' trials in step 2: a trial depends only on its point, the seed and the
   data) — goal ≤ 0.5× — and whether it picks the same best configuration.
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
SCHEDULERS = ("asha", "halving")


def halving_settings(points: int, max_t: int) -> dict[str, int]:
    """Synchronous halving at the goal's budget: keep one trial (reduction factor = points)
    after the longest grace period whose search runs ≤ 0.5× the full grid's epochs."""
    from components.tuning.halving import SynchronousHalving

    budget = 0.5 * points * max_t
    grace = max(
        g for g in range(1, max_t + 1)
        if SynchronousHalving.epochs(points, g, points, max_t) <= budget
    )  # fmt: skip
    return {"grace_period": grace, "reduction_factor": points}


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
    max_t = max(cfg["space"]["epochs"])
    settings = {
        "asha": {},  # params.yaml's
        "halving": halving_settings(len(cfg["space"]["attention"]), max_t),
    }
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
            for scheduler in SCHEDULERS:
                runs[objective, scheduler] = search(
                    root / f"{objective}-{scheduler}", False, objective=objective,
                    scheduler=scheduler, **settings[scheduler],
                )  # fmt: skip
        setups = setup_times(root / "holdout-fifo")
        shutil.rmtree(root, ignore_errors=True)

    rows, lines = [], []
    summary = {}
    for objective in ("holdout", "kfold"):
        fifo_wall, widened, _ = runs[objective, "fifo"]
        scores = widened.set_index("attention").best_val_uf1
        types = [t for t in loso if t in scores.index]
        rho = spearmanr([scores[t] for t in types], [loso[t]["uf1"] for t in types]).statistic
        # the default space's full grid: its points' trials in the widened grid
        fifo = widened[widened.attention.isin(cfg["space"]["attention"])]
        fifo_best = {"label": fifo.iloc[0]["label"], "score": fifo.iloc[0]["best_val_uf1"]}
        ideal = max(widened.seconds.sum() / slots, widened.seconds.max())
        for scheduler in SCHEDULERS:
            wall, table, best = runs[objective, scheduler]
            ratio = table.epochs_run.sum() / fifo.epochs_run.sum()
            picked = float(fifo.set_index("label").best_val_uf1.get(best["label"], float("nan")))
            same = best["label"] == fifo_best["label"] or picked == fifo_best["score"]
            summary[objective, scheduler] = (
                rho, ratio, same, fifo_wall / ideal, fifo_best, best, fifo, table, fifo_wall, wall
            )  # fmt: skip
            lines.append(
                f"{objective}/{scheduler}: Spearman ρ(search, LOSO) = {rho:.2f}; ran "
                f"{table.epochs_run.sum()} of {fifo.epochs_run.sum()} epochs ({ratio:.2f}×), best "
                f"{best['label']} vs grid {fifo_best['label']} ({'same' if same else 'DIFFERENT'}"
                f"{', tied in the grid' if same and best['label'] != fifo_best['label'] else ''}); "
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
                    " ("
                    + ", ".join(
                        f"{int(summary[o, k][7].set_index('attention').epochs_run[t])} ep. {k}"
                        for k in SCHEDULERS
                    )
                    + ")"
                    if t in set(summary[o, SCHEDULERS[0]][7].attention)
                    else ""
                )
                for o in ("holdout", "kfold")
            )
            + " |"
        )
    print("\n".join(lines))
    mean_setup = sum(setups) / len(setups) if setups else float("nan")

    def row(o: str, k: str) -> str:
        rho, ratio, same, packing, fifo_best, best, fifo, table, fifo_wall, wall = summary[o, k]
        return (
            f"| `{o}` | `{k}` | {rho:.2f} | {table.epochs_run.sum()} / {fifo.epochs_run.sum()} = **{ratio:.2f}×** | "
            f"{best['label']} / {fifo_best['label']} ({'same' if same else 'different'}"
            f"{', tied' if same and best['label'] != fifo_best['label'] else ''}) | "
            f"{fifo_wall:.0f} s ({packing:.2f}× ideal) | {wall:.0f} s |"
        )

    body = f"""Embedded records (LOSO over all their subjects). Rank correlation: the params.yaml
search with `attention` widened to {", ".join(loso)} ({len(loso)} points, {cfg["space"]["epochs"]}
epochs), full grid, {slots} trial slots. Schedulers on params.yaml's own search
({", ".join(cfg["space"]["attention"])}), against that space's full grid: `asha` with params.yaml's
grace period {cfg["grace_period"]}, reduction factor {cfg["reduction_factor"]}, {cfg["brackets"]} bracket(s);
`halving` (synchronous) at the goal's budget: grace period {settings["halving"]["grace_period"]},
reduction factor {settings["halving"]["reduction_factor"]} (the longest grace period that keeps
one trial within 0.5× the grid's epochs). LOSO:
`mer compare`, {params["compare"]["seeds"]} seeds. "Same best" also counts a pick whose full-grid
score ties the grid's best (the grid breaks ties by validation loss).

| objective | scheduler | Spearman ρ (search score vs LOSO UF1) | epochs / full grid | best: scheduler / grid | widened grid wall | scheduler wall |
| --- | --- | ---: | ---: | --- | ---: | ---: |
{chr(10).join(row(o, k) for o in ("holdout", "kfold") for k in SCHEDULERS)}

Goals: ≤ 0.5× the grid's epochs with the same best configuration. Per point (search
score = best validation UF1 of the full grid's trial; epochs each scheduler's trial ran):

| attention | LOSO UF1 [95% CI] | `holdout` score | `kfold` score |
| --- | ---: | ---: | ---: |
{chr(10).join(rows)}

Trial start-up (imports, records, model; `setup_s`): {mean_setup:.1f} s on average."""
    write_section("tune", "python -m benchmarks.tune", body)


if __name__ == "__main__":
    main()
