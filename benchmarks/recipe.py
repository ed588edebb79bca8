"""Which training choices help? Each recipe option and backbone against params.yaml's, paired.

    python -m benchmarks.recipe                  (builds the development set on first use; ~30 min)
    python -m benchmarks.recipe --only balance   (params.yaml and the arms whose name has a word)

On the development set (68 subjects, 442 clips, calibrated like the real composite), every arm
is params.yaml's model and training with one thing changed (an option of
``components.config.TrainConfig`` or the backbone), trained over the same ``SEEDS`` seeds on the
same grouped 5-fold split over subjects, and judged against params.yaml's configuration exactly
as ``mer compare`` judges a variant: the paired subject bootstrap of ΔUF1 over the mean of the
seeds, plus the whole-model training noise pooled over the arms, Holm's adjustment across the
arms. Grouped 5-fold is the protocol whose verdict error rates ``benchmarks.verdicts`` measured
(A/A 0/36 false calls with the training noise) and costs a twelfth of LOSO; the seeds'
probability ensemble of the baseline is reported beside it (evaluate's ``ensemble`` row).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from benchmarks import composite
from benchmarks.results import write_section

SEEDS = 6


def arms(params) -> dict[str, tuple]:
    """Name → (model, train): params.yaml's, then one change each."""
    from components.config import AttentionConfig, ModelConfig

    model, train = params.model, params.train
    htnet = ModelConfig("htnet", AttentionConfig("cbam", reduction=4), ("regions",), model.dropout)
    return {
        "params.yaml": (model, train),
        "weight_decay 0.05 (AdamW)": (model, replace(train, weight_decay=0.05)),
        "lr_schedule cosine": (model, replace(train, lr_schedule="cosine")),
        "lr_schedule one_cycle": (model, replace(train, lr_schedule="one_cycle")),
        "label_smoothing 0.1": (model, replace(train, label_smoothing=0.1)),
        "test_flip": (model, replace(train, test_flip=True)),
        "mixup_alpha 0.2": (model, replace(train, mixup_alpha=0.2)),
        "backbone htnet (cbam at regions)": (htnet, train),
        "balance_datasets": (model, replace(train, balance_datasets=True)),
        f"backbone rcn ({model.attention.type} at {', '.join(model.placement)})": (
            replace(model, backbone="rcn"),
            train,
        ),
    }


def ensemble_gain(frame, seeds: list[int], subjects: list[str], draw):
    """UF1 of the ``seeds``' probability ensemble minus the mean of their UF1s, with the paired
    subject-bootstrap CI (the same drawn subjects for both; the models held fixed)."""
    from components.evaluation.report import ensemble_predictions
    from components.statistics import difference, seed_mean_metrics, subject_confusions

    members = frame[frame.seed.isin(seeds)]
    combined = subject_confusions(ensemble_predictions(members), subjects, [-1], draw.classes)
    separate = subject_confusions(members, subjects, seeds, draw.classes)
    full = np.ones((1, len(subjects)), np.int64)
    counts = draw.draws(len(subjects))
    estimate = seed_mean_metrics(combined, full)[0][0] - seed_mean_metrics(separate, full)[0][0]
    deltas = seed_mean_metrics(combined, counts)[0] - seed_mean_metrics(separate, counts)[0]
    return difference(float(estimate), deltas, draw.confidence)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from components.evaluation.comparison import per_dataset_uf1
    from components.evaluation.protocol import run_variants
    from components.evaluation.report import ensemble_predictions, resampling
    from components.evaluation.session import Session
    from components.statistics import TrainingNoise, bootstrap, holm, paired_bootstrap, verdict

    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe")
    parser.add_argument("--only", nargs="+", metavar="WORD", help="arms whose name has a word")
    only = parser.parse_args(argv).only
    params, _ = composite.kfold_params("recipe")
    seeds = [params.seed + k for k in range(SEEDS)]
    named = {
        name: arm
        for name, arm in arms(params).items()
        if not only or name == "params.yaml" or any(word in name for word in only)
    }
    session = Session.open(params, "recipe")
    started = time.perf_counter()
    runs = run_variants(
        [m for m, _ in named.values()],
        [t for _, t in named.values()],
        seeds,
        session.folds,
        session.records.manifest,
        session.execution,
    )
    trained = time.perf_counter() - started
    frames = {name: run.predictions for name, run in zip(named, runs, strict=True)}
    subjects = sorted(session.records.manifest.subject_id.unique())
    draw = resampling(params.evaluate.bootstrap, params.seed, params.evaluate.confidence)
    reference = frames["params.yaml"]
    pairs = [(frame, reference, "base") for name, frame in frames.items() if name != "params.yaml"]
    noise = TrainingNoise.of_differences(pairs, subjects, draw)
    rows, deltas = [], {}
    for name, frame in frames.items():
        found = bootstrap(frame, subjects, draw)["uf1"]
        if name != "params.yaml":
            deltas[name] = paired_bootstrap(frame, reference, subjects, draw, noise, (name, "base"))
        rows.append((name, found))
    adjusted = dict(zip(deltas, holm([d["uf1"].p_value for d in deltas.values()]), strict=True))
    ensemble = bootstrap(ensemble_predictions(reference), subjects, draw)["uf1"]
    half = SEEDS // 2
    gains = {
        f"{len(group)} seeds ({group[0]}–{group[-1]})": ensemble_gain(
            reference, group, subjects, draw
        )
        for group in (seeds, seeds[:half], seeds[half:])
    }
    alpha = 1 - params.evaluate.confidence
    lines, table = [], []
    for name, found in rows:
        uf1 = f"{found.estimate:.3f} [{found.low:.3f}, {found.high:.3f}]"
        if name not in deltas:
            lines.append(f"{name:34s} UF1 {uf1}  (baseline)")
            table.append(f"| {name} (baseline) | {uf1} | — | — | — |")
            continue
        d = deltas[name]["uf1"]
        called = verdict(d)
        holm_call = (
            "no detectable difference"
            if adjusted[name] >= alpha
            else ("better" if d.estimate > 0 else "worse")
        )
        delta = f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        lines.append(f"{name:34s} UF1 {uf1}  Δ {delta}  {called} (Holm: {holm_call})")
        table.append(f"| {name} | {uf1} | {delta} | {called} | {holm_call} |")
    lines.append(
        f"{'params.yaml, ' + str(SEEDS) + '-seed ensemble':34s} UF1 "
        f"{ensemble.estimate:.3f} [{ensemble.low:.3f}, {ensemble.high:.3f}]"
    )
    lines += [
        f"ensemble of {name} − mean of their UF1s: {g.estimate:+.3f} [{g.low:+.3f}, {g.high:+.3f}]"
        for name, g in gains.items()
    ]
    print("\n".join(lines))
    print(f"trained in {trained / 60:.1f} min; training noise UF1 sd {noise.sd():.4f}")
    per_dataset = {name: per_dataset_uf1(frame) for name, frame in frames.items()}
    datasets = sorted(next(iter(per_dataset.values())))
    dataset_rows = "\n".join(
        f"| {name} | " + " | ".join(f"{per_dataset[name][ds]:.3f}" for ds in datasets) + " |"
        for name in frames
    )
    gain_rows = "\n".join(
        f"| {name} | {g.estimate:+.3f} [{g.low:+.3f}, {g.high:+.3f}] |" for name, g in gains.items()
    )
    body = f"""Development set (68 subjects, 442 clips), grouped 5-fold over subjects, seeds
{seeds[0]}–{seeds[-1]} for every arm (mean of {SEEDS}), {params.evaluate.bootstrap} paired
subject-bootstrap resamples plus the whole-model training noise pooled over the arms (UF1 sd
{noise.sd():.4f}, as `mer compare`), Holm's adjustment over the {len(deltas)} comparisons. Each
arm is params.yaml's model (`{params.model.label}`) and training with the one change named;
trained in {trained / 60:.0f} min (units already in the store are read back).

| arm | UF1 [95% CI] | ΔUF1 vs params.yaml [95% CI] | verdict | Holm-adjusted |
| --- | ---: | ---: | --- | --- |
{chr(10).join(table)}
| params.yaml, its {SEEDS} seeds' probability ensemble | {ensemble.estimate:.3f} [{ensemble.low:.3f}, {ensemble.high:.3f}] | (evaluate's `ensemble` row) | | |

The seeds' probability ensemble against the mean of the same seeds' UF1s (params.yaml's
configuration; paired subject bootstrap, the trained models held fixed):

| seeds | ΔUF1, ensemble − mean of the members [95% CI] |
| --- | ---: |
{gain_rows}

Per dataset (UF1, mean over seeds):

| arm | {" | ".join(datasets)} |
| --- | {" | ".join("---:" for _ in datasets)} |
{dataset_rows}
"""
    command = "python -m benchmarks.recipe" + "".join(f" --only {w}" for w in only or [])
    write_section(f"recipe: {', '.join(only)}" if only else "recipe", command, body)


if __name__ == "__main__":
    main()
