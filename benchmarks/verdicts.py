"""How far apart must two configurations be before `mer compare` tells them apart?

    python -m benchmarks.verdicts        (builds the development set on first use; ~30 min)
    python -m benchmarks.verdicts --analyse   (the last run's trained replicates, analysed again)

On the development set (68 subjects, 442 clips, calibrated like the real composite), with
params.yaml's model and training, the verdict procedure of `mer compare` (paired subject
bootstrap of ΔUF1 over the mean of 3 seeds, "better"/"worse" when the 95% interval excludes 0,
Holm's adjustment within a family of comparisons) is measured where its truth is known:

1. **A/A**: the configuration against itself with disjoint seed sets — every "better" or "worse"
   is a false positive. In each of ``FAMILIES`` families, one seed set is the baseline and
   ``ARMS`` others are "variants" (identical): the per-comparison rate of false calls, and the
   family-wise rate (any false call in a family) unadjusted and with Holm's adjustment.
2. **Power**: a variant worse by construction — the same model trained and tested without the
   optical-strain channel (set to 0) — against the baseline on the same seeds, in each family:
   how often it is called "worse", at the measured effect size.
3. **The procedure alone**, by simulation with a known truth (no training,
   :mod:`components.evaluation.simulation`): coverage of the 95% subject-bootstrap and paired
   intervals, and the A/A false-call rate, over many simulations; with trained models that a
   seed shifts as a whole, the A/A rate with and without the training noise, and the power
   against true differences of several sizes.

Both verdict procedures are measured on the same trained replicates: the subject bootstrap
alone (before issue 24's change) and with the training noise pooled over the family's arms
(:meth:`components.statistics.TrainingNoise.of_differences`, what `mer compare` does now;
the "verdicts" section of RESULTS.md was measured with issue 24's per-arm noise, before).

The cheapest honest protocol for the trained replicates is grouped 5-fold over subjects (each
seed one unit of 5 stacked folds): the comparison procedure is the same as on LOSO (predictions
pooled over folds, subjects resampled), at a twelfth of LOSO's cost. Every rate comes with its
exact (Clopper–Pearson) 95% binomial interval.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import composite
from benchmarks.results import write_section

FAMILIES, ARMS, SEEDS = 12, 3, 3
SIMULATIONS = 1000


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson exact interval of a binomial proportion."""
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    )
    return low, high


def rate(successes: int, trials: int) -> str:
    low, high = binomial_interval(successes, trials)
    return f"{successes}/{trials} = {successes / trials:.1%} [{low:.1%}, {high:.1%}]"


def without_strain(source: Path, target: Path) -> Path:
    """A copy of a records folder whose optical-strain channel is 0 in every sample."""

    def strain_zeroed(record):
        flow = np.array(record.flow, np.float32)
        flow[..., 2] = 0.0
        return flow

    return damaged_records(source, target, strain_zeroed)


def damaged_records(source: Path, target: Path, damage) -> Path:
    """A copy of a records folder (rewritten from scratch) whose every sample's flow is
    ``damage(record)``; the other files are copied, the index written again."""
    from components.records import decode, encode, write_shard
    from components.records.store import INDEX, write_index
    from components.records.tfrecord import read_records

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.name.endswith(".tfrecord.gz"):
            records = [
                replace(record, flow=damage(record))
                for record in (decode(r) for r in read_records(str(path)))
            ]
            write_shard(str(target / path.name), (encode(r) for r in records))
        elif path.name != INDEX:
            shutil.copy(path, target / path.name)
    write_index(target)
    return target


def seeds_of(frame: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """The predictions of ``seeds``, relabelled 0, 1, ... (so two disjoint seed sets pair up:
    the paired bootstrap pairs subjects; seeds are averaged within each side)."""
    chosen = frame[frame.seed.isin(seeds)].copy()
    chosen["seed"] = chosen.seed.map({s: k for k, s in enumerate(seeds)})
    return chosen


def simulate() -> dict[str, tuple[int, int]]:
    from components.evaluation.simulation import World, predictions_frame
    from components.statistics import Resampling, bootstrap, paired_bootstrap, verdict

    world, effect = World(), 0.3
    true_uf1, true_uar = world.truth(0.0)
    true_delta = world.truth(effect)[0] - true_uf1
    rng = np.random.default_rng(11)
    counts = {"uf1": 0, "uar": 0, "delta": 0, "aa": 0}
    for k in range(SIMULATIONS):
        baseline, better, again = (
            predictions_frame(c) for c in world.confusions(rng, 68, (0.0, effect, 0.0))
        )
        subjects = sorted(baseline.subject_id.unique())
        resampling = Resampling(3, 2000, k, 0.95)
        single = bootstrap(baseline, subjects, resampling)
        counts["uf1"] += single["uf1"].low <= true_uf1 <= single["uf1"].high
        counts["uar"] += single["uar"].low <= true_uar <= single["uar"].high
        delta = paired_bootstrap(better, baseline, subjects, resampling)["uf1"]
        counts["delta"] += delta.low <= true_delta <= delta.high
        aa = paired_bootstrap(again, baseline, subjects, resampling)["uf1"]
        counts["aa"] += verdict(aa) != "no detectable difference"
    return {k: (v, SIMULATIONS) for k, v in counts.items()}


def simulate_seeds(effects: tuple[float, ...] = (0.0, 0.15, 0.3, 0.45)) -> list[dict]:
    """Three seeds a side, each trained model shifted as a whole (``World.seed_sd``): per true
    effect, how often each procedure calls "better" or "worse" (the A/A rate at effect 0)."""
    from components.evaluation.simulation import World, seeded_frame
    from components.statistics import Resampling, TrainingNoise, paired_bootstrap, verdict

    world, runs = World(seed_sd=0.1), SIMULATIONS // 4
    rng = np.random.default_rng(12)
    out = []
    for effect in effects:
        plain = with_noise = 0
        for k in range(runs):
            baseline, variant, other = (
                seeded_frame(c) for c in world.seeded_confusions(rng, 68, (0.0, effect, 0.0), 3)
            )
            subjects = sorted(baseline.subject_id.unique())
            resampling = Resampling(3, 1000, k, 0.95)
            noise = TrainingNoise.pooled([baseline, variant, other], subjects, resampling)
            plain += verdict(paired_bootstrap(variant, baseline, subjects, resampling)["uf1"]) != (
                "no detectable difference"
            )
            found = paired_bootstrap(variant, baseline, subjects, resampling, noise, ("v", "b"))
            with_noise += verdict(found["uf1"]) != "no detectable difference"
        delta = World().truth(effect)[0] - World().truth(0.0)[0]
        out.append({"delta": delta, "plain": (plain, runs), "noise": (with_noise, runs)})
    return out


def family_rates(baseline, variant, groups, subjects, draw, confidence, with_noise: bool) -> dict:
    """A/A and power counts over the families, for one verdict procedure."""
    from components.statistics import TrainingNoise, holm, paired_bootstrap, verdict

    false_calls = families_any = families_holm = worse_calls = 0
    effects, sds = [], []
    for f in range(FAMILIES):
        mine = groups[f * (ARMS + 1) : (f + 1) * (ARMS + 1)]
        reference = seeds_of(baseline, mine[0])
        arms = [seeds_of(baseline, arm) for arm in mine[1:]]
        worse_frame = seeds_of(variant, mine[0])
        frames = [reference, *arms, worse_frame]  # a family's sweep: every arm pools its noise
        pairs = [(frame, reference, "base") for frame in frames[1:]]
        noise = TrainingNoise.of_differences(pairs, subjects, draw) if with_noise else None
        if noise is not None:
            sds.append(noise.sd())
        deltas = [
            paired_bootstrap(arm, reference, subjects, draw, noise, (f"arm{k}", "base"))["uf1"]
            for k, arm in enumerate(arms)
        ]
        calls = [verdict(d) != "no detectable difference" for d in deltas]
        false_calls += sum(calls)
        families_any += any(calls)
        families_holm += any(p < 1 - confidence for p in holm([d.p_value for d in deltas]))
        worse = paired_bootstrap(worse_frame, reference, subjects, draw, noise, ("worse", "base"))
        worse_calls += verdict(worse["uf1"]) == "worse"
        effects.append(worse["uf1"].estimate)
    return {
        "false": false_calls,
        "any": families_any,
        "holm": families_holm,
        "worse": worse_calls,
        "effect": float(np.mean(effects)),
        "spread": float(np.std(effects)),
        "noise_sd": float(np.mean(sds)) if sds else 0.0,
    }


def main() -> None:
    from components.evaluation.protocol import run_given
    from components.evaluation.session import Session

    params, folder = composite.kfold_params("verdicts")
    variant_records = without_strain(
        Path(params.preprocess.records_dir), folder / "records_without_strain"
    )
    varied = replace(
        params, preprocess=replace(params.preprocess, records_dir=str(variant_records))
    )
    groups = [
        [params.seed + (f * (ARMS + 1) + g) * SEEDS + k for k in range(SEEDS)]
        for f in range(FAMILIES)
        for g in range(ARMS + 1)
    ]
    started = time.perf_counter()
    session = Session.open(params, "verdicts")
    model, train = params.model, params.train
    manifest = session.records.manifest
    every = [s for group in groups for s in group]
    first = [s for f in range(FAMILIES) for s in groups[f * (ARMS + 1)]]
    replicates = folder / "replicates"
    if "--analyse" in sys.argv[1:]:  # the stored replicates of an earlier run, not retrained
        baseline = pd.read_parquet(replicates / "baseline.parquet")
        variant = pd.read_parquet(replicates / "variant.parquet")
        if sorted(baseline.seed.unique()) != every or sorted(variant.seed.unique()) != first:
            raise SystemExit(f"{replicates}: not this benchmark's seeds; run it without --analyse")
    else:
        baseline = run_given(
            model, train, every, session.folds, manifest, session.execution
        ).predictions
        variant_session = Session.open(varied, "verdicts")
        variant = run_given(
            model, train, first, variant_session.folds, manifest, variant_session.execution
        ).predictions
        replicates.mkdir(exist_ok=True)
        baseline.to_parquet(replicates / "baseline.parquet", index=False)
        variant.to_parquet(replicates / "variant.parquet", index=False)
    trained = time.perf_counter() - started

    from components.evaluation.report import resampling

    draw = resampling(params.evaluate.bootstrap, params.seed, params.evaluate.confidence)
    subjects = sorted(manifest.subject_id.unique())
    confidence = params.evaluate.confidence
    before = family_rates(baseline, variant, groups, subjects, draw, confidence, False)
    now = family_rates(baseline, variant, groups, subjects, draw, confidence, True)
    simulated = simulate()
    seeded = simulate_seeds()
    comparisons = FAMILIES * ARMS
    lines = [
        f"{name}: A/A {rate(r['false'], comparisons)}; family any {rate(r['any'], FAMILIES)}, "
        f"Holm {rate(r['holm'], FAMILIES)}; power {rate(r['worse'], FAMILIES)} "
        f"(ΔUF1 {r['effect']:+.3f})"
        for name, r in (("subject bootstrap alone", before), ("with training noise", now))
    ]
    lines += [f"simulation {k}: {rate(*v)}" for k, v in simulated.items()]
    lines += [
        f"seeded simulation ΔUF1 {r['delta']:+.3f}: alone {rate(*r['plain'])}, "
        f"with noise {rate(*r['noise'])}"
        for r in seeded
    ]
    print("\n".join(lines))
    seeded_rows = "\n".join(
        f"| seeded simulation, true ΔUF1 {r['delta']:+.3f}: called better or worse | "
        f"{rate(*r['plain'])} | {rate(*r['noise'])} | {'5%' if r['delta'] == 0 else '—'} |"
        for r in seeded
    )
    body = f"""Development set (68 subjects, 442 clips), params.yaml's model and training, grouped
5-fold over subjects, mean of {SEEDS} seeds per side, {params.evaluate.bootstrap} paired
subject-bootstrap resamples, 95% intervals; {len(every)} + {len(first)} trained seeds
({
        "analysed again from the stored replicates of an earlier run"
        if "--analyse" in sys.argv[1:]
        else f"trained in {trained / 60:.0f} min; units already in the store are read back"
    }). Each family is a sweep of {ARMS + 2} arms (a baseline seed set,
{ARMS} more seed sets of the same configuration, the model without its strain channel); "with
training noise" pools the arms' whole-model seed variance as `mer compare` does (UF1 sd
{now["noise_sd"]:.4f} on average). Rates with exact 95% binomial intervals.

| what | subject bootstrap alone (before) | with training noise (`mer compare`) | nominal |
| --- | --- | --- | --- |
| A/A: a comparison of the configuration with itself called better or worse | {
        rate(before["false"], comparisons)
    } | {rate(now["false"], comparisons)} | 5% |
| A/A: a family of {ARMS} such comparisons with any call, unadjusted | {
        rate(before["any"], FAMILIES)
    } | {rate(now["any"], FAMILIES)} | ≈ {1 - 0.95**ARMS:.0%} |
| A/A: the same, Holm-adjusted within the family | {rate(before["holm"], FAMILIES)} | {
        rate(now["holm"], FAMILIES)
    } | ≤ 5% |
| power: the model without its optical-strain channel (ΔUF1 {now["effect"]:+.3f}, sd {
        now["spread"]:.3f} across families) called worse | {rate(before["worse"], FAMILIES)} | {
        rate(now["worse"], FAMILIES)
    } | — |
{seeded_rows}

The procedure alone, by simulation with a known truth ({SIMULATIONS} runs, one seed, no
training noise):

| what | rate [95% CI] | nominal |
| --- | --- | --- |
| 95% CI of UF1 covers the truth | {rate(*simulated["uf1"])} | 95% |
| 95% CI of UAR covers the truth | {rate(*simulated["uar"])} | 95% |
| paired 95% CI of ΔUF1 covers the true Δ | {rate(*simulated["delta"])} | 95% |
| A/A called better or worse | {rate(*simulated["aa"])} | 5% |

Reading it: the subject bootstrap alone is right when the models are fixed (the simulation)
but not when they are retrained: a seed shifts a whole model by about
{now["noise_sd"]:.3f} UF1, and with it the A/A rate was {before["false"] / comparisons:.0%}.
`mer compare` now adds that noise. A difference must be well over the paired interval's
half-width (about ±0.03 on 68 subjects with 3 seeds a side) before it is called; removing the
strain channel (ΔUF1 {now["effect"]:+.3f}) is below what 3 seeds can resolve."""
    write_section("verdicts", "python -m benchmarks.verdicts", body)


if __name__ == "__main__":
    main()
