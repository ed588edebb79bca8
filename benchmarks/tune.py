"""The tune stage: does its objective rank configurations as LOSO does, and what do its schedulers save?

    python -m benchmarks.tune        (builds the development set on first use; ~2 h here)
    python -m benchmarks.tune --work DIR   (keeps its runs in DIR; a re-run reuses the LOSO units)

On the development set (calibrated like the real composite), with params.yaml's search widened to the attention types of
``compare.space``'s attention types (so there is a ranking to compare), in one run:

1. LOSO over all subjects of every point (``mer compare``, ``compare.seeds`` seeds): the
   ranking the search should reproduce.
2. The full grid (FIFO: every trial runs every epoch) of the widened space with each objective,
   ``holdout`` and ``kfold``: Spearman's rank correlation between its scores and LOSO UF1.
3. Each early-stopping scheduler (``asha``: asynchronous; ``halving``: synchronous, every
   trial reaches a rung before any is cut) with params.yaml's grace period and reduction
   factor on the search space of ``SCHEDULER_SPACE`` (params.yaml's when measured), for each objective: epochs run vs that space's
   full grid (its points' trials in step 2: a trial depends only on its point, the seed and the
   data) — goal ≤ 0.5× — and whether it picks the same best configuration.
4. Across seeds (params.yaml's ``seed`` and the next ``SEEDS - 1``; a seed draws the search's
   subjects, folds and initial weights): the full grid of that space for each objective,
   and every synchronous-halving schedule (grace period, reduction factor) within 0.5× its
   epochs, replayed from the grid's curves (exact: a trial depends only on its point, the seed
   and the data, and halving's cuts only on the scores; checked here against the real halving
   search of step 3): on how many seeds does it keep the grid's best? Beside it, a pick at
   random among the points: the chance level.
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

from benchmarks import composite
from benchmarks.composite import mer
from benchmarks.loso import units_of
from benchmarks.results import write_section

ROOT = Path(__file__).resolve().parents[1]
SCHEDULERS = ("asha", "halving")
SEEDS = 4


#: the attention types of the scheduler study's search: params.yaml's tune space when it was
#: measured (RESULTS.md "tune"); params.yaml now searches only the two types that beat none
#: there, too few points for a scheduler to cut
SCHEDULER_SPACE = ("none", "se", "cbam", "mhsa")


def halving_settings(points: int, max_t: int) -> dict[str, int]:
    """Synchronous halving at the goal's budget: keep one trial (reduction factor = points)
    after the longest grace period whose search runs ≤ 0.5× the full grid's epochs."""
    grace = max(g for g, factor in within_budget(points, max_t) if factor == points)
    return {"grace_period": grace, "reduction_factor": points}


def variant_params(folder: Path, widen: bool = True, seed: int | None = None, **tune) -> Path:
    raw = yaml.safe_load(composite.ensure().read_text())  # the development set's records
    raw["seed"] = raw["seed"] if seed is None else seed
    attention = raw["compare"]["space"]["attention"] if widen else list(SCHEDULER_SPACE)
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
    raw["compare"] = {
        **raw["compare"],
        "space": {**raw["compare"]["space"], "placement": raw["tune"]["space"]["placement"]},
        "reports_dir": str(folder / "reports/compare"),
    }
    raw["tracking"] = {
        "uri": f"sqlite:///{folder}/mlflow.db",
        "artifact_location": str(folder / "artifacts"),
        "experiment": "bench",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def search(
    folder: Path, widen: bool, seed: int | None = None, **tune
) -> tuple[float, pd.DataFrame, dict]:
    params = variant_params(folder, widen, seed, **tune)
    start = time.perf_counter()
    mer(params, "tune", "--fresh")
    wall = time.perf_counter() - start
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    seconds = {
        t["index"]: t["history"][-1]["time_total_s"]
        for t in finished_trials(folder)
        if t["history"]
    }
    table["seconds"] = table["index"].map(seconds).fillna(0.0)  # timings stay out of reports/
    best = json.loads((folder / "reports/tune/best_config.json").read_text())
    return wall, table, best


def finished_trials(folder: Path) -> list[dict]:
    """The trials of the finished search in ``folder`` (its record: every trial's point index
    and metrics per epoch; components/tuning/store.py)."""
    (record,) = folder.glob("ray_results/tune-*/search.json")
    return json.loads(record.read_text())["trials"]


def grid_curves(folder: Path, labels: set[str]) -> dict[str, list[tuple[float, float]]]:
    """(validation UF1, validation loss) per epoch of each trial of a finished search whose
    label is in ``labels``."""
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    label_of = dict(zip(table["index"], table["label"], strict=True))
    return {
        label_of[trial["index"]]: [(row["val_uf1"], row["val_loss"]) for row in trial["history"]]
        for trial in finished_trials(folder)
        if label_of[trial["index"]] in labels
    }


def keeps_the_best(curves: dict[str, list[tuple[float, float]]], epochs: dict[str, int]) -> bool:
    """Does the pick (the best epoch run, as the search's result ranks) tie the grid's best?"""
    from components.tuning.halving import best_so_far

    picked = max(curves, key=lambda label: best_so_far(curves[label], epochs[label]))
    return best_so_far(curves[picked])[0] == max(best_so_far(c)[0] for c in curves.values())


def within_budget(points: int, max_t: int) -> list[tuple[int, int]]:
    """Every (grace period, reduction factor) of synchronous halving over ``points`` trials
    that runs at most 0.5× the full grid's epochs."""
    from components.tuning.halving import SynchronousHalving

    return [
        (grace, factor)
        for factor in range(2, points + 1)
        for grace in range(1, max_t)
        if SynchronousHalving.epochs(points, grace, factor, max_t) <= 0.5 * points * max_t
    ]


def seed_study(root: Path, objective: str, first: dict[str, list[tuple[float, float]]]) -> dict:
    """The full grid of ``SCHEDULER_SPACE`` at ``SEEDS`` seeds (``first``: the curves at
    params.yaml's seed), and how many seeds each halving schedule within 0.5× keeps its best."""
    from components.tuning.halving import replay

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    seeds = [raw["seed"] + k for k in range(SEEDS)]
    grids = [first]
    for seed in seeds[1:]:
        folder = root / f"{objective}-seed{seed}"
        _, table, _ = search(folder, False, seed, objective=objective, scheduler="fifo")
        grids.append(grid_curves(folder, set(table.label)))
    max_t = max(raw["tune"]["space"]["epochs"])
    schedules = within_budget(len(first), max_t)
    kept = {
        schedule: sum(keeps_the_best(g, replay(g, *schedule, max_t)) for g in grids)
        for schedule in schedules
    }
    winners = []  # per seed: the points whose full-grid score ties the grid's best
    for grid in grids:
        scores = {label: max(uf1 for uf1, _ in curve) for label, curve in grid.items()}
        winners.append(sorted(label for label in scores if scores[label] == max(scores.values())))
    return {
        "seeds": seeds,
        "kept": kept,
        "chance": sum(len(w) / len(first) for w in winners),
        "winners": winners,
    }


def loso_predictions(folder: Path, records_dir: str) -> dict[str, pd.DataFrame]:
    """Each attention type's LOSO test predictions (all seeds) from the units ``mer compare``
    stored in ``folder``."""
    from components.evaluation.protocol import predictions_frame
    from components.records.store import load_records

    manifest = load_records(records_dir).manifest
    by_type: dict[str, list] = {}
    for unit in units_of(folder):
        by_type.setdefault(unit.spec.variant.attention.type, []).append(unit)
    return {kind: predictions_frame(units, manifest) for kind, units in by_type.items()}


def paired_to_best(raw: dict, predictions: dict[str, pd.DataFrame], picked: str, best: str):
    """LOSO ΔUF1 (picked − best) with mer compare's paired subject-bootstrap interval (its
    resampling from ``raw`` params, the noise of the paired differences to the best pooled over the
    types)."""
    from components.evaluation.report import resampling
    from components.statistics import TrainingNoise, paired_bootstrap

    any_frame = predictions[best]
    subjects = sorted(any_frame.subject_id.unique())
    draw = resampling(raw["evaluate"]["bootstrap"], raw["seed"], raw["evaluate"]["confidence"])
    pairs = [
        (frame, predictions[best], best) for name, frame in predictions.items() if name != best
    ]
    noise = TrainingNoise.of_differences(pairs, subjects, draw)
    return paired_bootstrap(
        predictions[picked], predictions[best], subjects, draw, noise, (picked, best)
    )["uf1"]


def write_attention_section(report: Path) -> None:
    """The LOSO comparison of step 1 (``mer compare``'s own table: each type vs ``none``,
    paired) as RESULTS.md's evidence for the default attention."""
    body = (
        "The attention types at params.yaml's placement on the development set, LOSO over its 68\n"
        "subjects (step 1 of `benchmarks.tune`: `mer compare` on the set, `compare.seeds` seeds);\n"
        "`mer compare`'s report as written:\n\n" + report.read_text()
    )
    write_section("attention on the development set", "python -m benchmarks.tune", body)


def setup_times(folder: Path) -> list[float]:
    return [t["history"][0]["setup_s"] for t in finished_trials(folder) if t["history"]]


def main(argv: list[str] | None = None) -> None:
    import argparse

    from components.tuning.halving import replay

    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune")
    parser.add_argument("--work", type=Path, help="keep the runs here (units reused when there)")
    work = parser.parse_args(argv).work

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = params["tune"]
    cfg["space"]["attention"] = list(SCHEDULER_SPACE)  # the scheduler study's space
    slots = int(cfg["max_concurrent_trials"])
    max_t = max(cfg["space"]["epochs"])
    settings = {
        "asha": {},  # params.yaml's
        "halving": halving_settings(len(cfg["space"]["attention"]), max_t),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = work or Path(tmp)
        loso_params = variant_params(root / "loso")
        mer(loso_params, "compare")
        loso_raw = yaml.safe_load(loso_params.read_text())
        predictions = loso_predictions(root / "loso/units", loso_raw["preprocess"]["records_dir"])
        write_attention_section(root / "loso/reports/compare/comparison.md")
        loso = {
            r["attention"]: r
            for r in json.loads((root / "loso/reports/compare/comparison.json").read_text())["rows"]
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
        studies, replayed = {}, {}
        for objective in ("holdout", "kfold"):
            _, widened, _ = runs[objective, "fifo"]
            default = set(widened[widened.attention.isin(cfg["space"]["attention"])].label)
            first = grid_curves(root / f"{objective}-fifo", default)
            studies[objective] = seed_study(root, objective, first)
            real = runs[objective, "halving"][1].set_index("label").epochs_run.to_dict()
            halving = settings["halving"]
            replayed[objective] = real == replay(
                first, halving["grace_period"], halving["reduction_factor"], max_t
            )
        setups = setup_times(root / "holdout-fifo")
        if work is None:
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
            kind_of = dict(zip(widened.label, widened.attention, strict=True))
            delta = paired_to_best(
                loso_raw, predictions, kind_of[best["label"]], kind_of[fifo_best["label"]]
            )
            summary[objective, scheduler] = (
                rho, ratio, same, fifo_wall / ideal, fifo_best, best, fifo, table, fifo_wall, wall,
                delta,
            )  # fmt: skip
            lines.append(
                f"{objective}/{scheduler}: Spearman ρ(search, LOSO) = {rho:.2f}; ran "
                f"{table.epochs_run.sum()} of {fifo.epochs_run.sum()} epochs ({ratio:.2f}×), best "
                f"{best['label']} vs grid {fifo_best['label']} ({'same' if same else 'DIFFERENT'}"
                f"{', tied in the grid' if same and best['label'] != fifo_best['label'] else ''}); "
                f"grid wall / ideal packing {fifo_wall / ideal:.2f}×; LOSO Δ(pick − grid's best) "
                f"{delta.estimate:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}] "
                f"({'kept: inside' if delta.high >= 0 else 'LOST: below'} the paired CI)"
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
    ours = tuple(settings["halving"].values())
    study_rows = []
    for objective, study in studies.items():
        kept = study["kept"]
        most = max(kept.values())
        lines.append(
            f"{objective}, {SEEDS} seeds: {len(kept)} halving schedules within 0.5×; the best keeps"
            f" the grid's best on {most}/{SEEDS} seeds (chance {study['chance']:.1f}); grace "
            f"{ours[0]}/factor {ours[1]}: {kept[ours]}/{SEEDS}; replay = real halving: "
            f"{replayed[objective]}"
        )
        winners = "; ".join(
            f"{seed}: " + ", ".join(label.split("/")[1].split("@")[0] for label in labels)
            for seed, labels in zip(study["seeds"], study["winners"], strict=True)
        )
        tops = ", ".join(f"{g}/{f}" for (g, f), v in kept.items() if v == most)
        study_rows.append(
            f"| `{objective}` | {winners} | {study['chance']:.1f} | {kept[ours]} | "
            f"{most}: {tops} | {sum(v == SEEDS for v in kept.values())} | "
            f"{'yes' if replayed[objective] else 'NO'} |"
        )
    print("\n".join(lines))
    mean_setup = sum(setups) / len(setups) if setups else float("nan")

    def row(o: str, k: str) -> str:
        rho, ratio, same, packing, fifo_best, best, fifo, table, fifo_wall, wall, delta = summary[
            o, k
        ]
        return (
            f"| `{o}` | `{k}` | {rho:.2f} | {table.epochs_run.sum()} / {fifo.epochs_run.sum()} = **{ratio:.2f}×** | "
            f"{best['label']} / {fifo_best['label']} ({'same' if same else 'different'}"
            f"{', tied' if same and best['label'] != fifo_best['label'] else ''}) | "
            f"{delta.estimate:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}] "
            f"({'kept' if delta.high >= 0 else '**lost**'}) | "
            f"{fifo_wall:.0f} s ({packing:.2f}× ideal) | {wall:.0f} s |"
        )

    body = f"""The development set (68 subjects, 442 clips; LOSO over all of them). Rank correlation: the params.yaml
search with `attention` widened to {", ".join(loso)} ({len(loso)} points, {cfg["space"]["epochs"]}
epochs), full grid, {slots} trial slots. Schedulers on the search
({", ".join(cfg["space"]["attention"])}), against that space's full grid: `asha` with params.yaml's
grace period {cfg["grace_period"]}, reduction factor {cfg["reduction_factor"]}, {cfg["brackets"]} bracket(s);
`halving` (synchronous) at the goal's budget: grace period {settings["halving"]["grace_period"]},
reduction factor {settings["halving"]["reduction_factor"]} (the longest grace period that keeps
one trial within 0.5× the grid's epochs). LOSO:
`mer compare`, {params["compare"]["seeds"]} seeds. "Same best" also counts a pick whose full-grid
score ties the grid's best (the grid breaks ties by validation loss).

| objective | scheduler | Spearman ρ (search score vs LOSO UF1) | epochs / full grid | best: scheduler / grid | LOSO ΔUF1 pick − grid's best [paired 95% CI] | widened grid wall | scheduler wall |
| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |
{chr(10).join(row(o, k) for o in ("holdout", "kfold") for k in SCHEDULERS)}

Goals: ≤ 0.5× the grid's epochs keeping a configuration whose LOSO UF1 is inside the paired
CI of the grid's best ("kept": the paired interval of pick − best reaches 0; `mer compare`'s
paired subject bootstrap with training noise). Per point (search
score = best validation UF1 of the full grid's trial; epochs each scheduler's trial ran):

| attention | LOSO UF1 [95% CI] | `holdout` score | `kfold` score |
| --- | ---: | ---: | ---: |
{chr(10).join(rows)}

Across seeds: the search ({", ".join(cfg["space"]["attention"])}), full grid at seeds
{", ".join(map(str, studies["kfold"]["seeds"]))} (a seed draws the search's subjects, folds and initial
weights), and each of the {len(studies["kfold"]["kept"])} synchronous-halving schedules (grace period
1–{max_t - 1}, reduction factor 2–{len(cfg["space"]["attention"])}) that run ≤ 0.5× its epochs,
replayed from the grid's curves. Seeds on which a schedule keeps the grid's best (a tie counts),
against a pick at random among the points (chance: Σ tied / points):

| objective | the grid's best per seed (ties) | chance | grace {ours[0]}, factor {ours[1]} | most seeds: grace/factor | schedules keeping it on every seed | replay = real halving run |
| --- | --- | ---: | ---: | ---: | ---: | --- |
{chr(10).join(study_rows)}

Trial start-up (imports, records, model; `setup_s`): {mean_setup:.1f} s on average."""
    write_section("tune", "python -m benchmarks.tune", body)


if __name__ == "__main__":
    main()
