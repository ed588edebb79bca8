"""How far apart must two configurations be before `mer compare` tells them apart?

    python -m benchmarks.verdicts        (builds the development set on first use; ~30 min)

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
   intervals, and the A/A false-call rate, over many simulations.

The cheapest honest protocol for the trained replicates is grouped 5-fold over subjects (each
seed one unit of 5 stacked folds): the comparison procedure is the same as on LOSO (predictions
pooled over folds, subjects resampled), at a twelfth of LOSO's cost. Every rate comes with its
exact (Clopper–Pearson) 95% binomial interval.
"""

from __future__ import annotations

import shutil
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
    from components.records import decode, encode, write_shard
    from components.records.store import INDEX, write_index
    from components.records.tfrecord import read_records

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.name.endswith(".tfrecord.gz"):
            records = []
            for record in (decode(r) for r in read_records(str(path))):
                flow = np.array(record.flow, np.float32)
                flow[..., 2] = 0.0
                records.append(replace(record, flow=flow))
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


def main() -> None:
    from components.config import load_params
    from components.evaluation.protocol import run_given
    from components.evaluation.session import Session
    from components.statistics import holm, paired_bootstrap, verdict

    base = composite.ensure()
    folder = base.parent / "verdicts"
    folder.mkdir(exist_ok=True)
    params = load_params(base)
    params = replace(
        params,
        evaluate=replace(
            params.evaluate,
            protocol="kfold",
            folds=5,
            units_dir=str(folder / "units"),
            reports_dir=str(folder / "reports"),
        ),
    )
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
    baseline = run_given(
        model, train, every, session.folds, manifest, session.execution
    ).predictions
    variant_session = Session.open(varied, "verdicts")
    first = [s for f in range(FAMILIES) for s in groups[f * (ARMS + 1)]]
    variant = run_given(
        model, train, first, variant_session.folds, manifest, variant_session.execution
    ).predictions
    trained = time.perf_counter() - started

    from components.evaluation.report import resampling

    draw = resampling(params.evaluate.bootstrap, params.seed, params.evaluate.confidence)
    subjects = sorted(manifest.subject_id.unique())
    false_calls, families_any, families_holm = 0, 0, 0
    worse_calls, effects = 0, []
    for f in range(FAMILIES):
        mine = groups[f * (ARMS + 1) : (f + 1) * (ARMS + 1)]
        reference = seeds_of(baseline, mine[0])
        deltas = [
            paired_bootstrap(seeds_of(baseline, arm), reference, subjects, draw)["uf1"]
            for arm in mine[1:]
        ]
        calls = [verdict(d) != "no detectable difference" for d in deltas]
        false_calls += sum(calls)
        families_any += any(calls)
        families_holm += any(
            p < 1 - params.evaluate.confidence for p in holm([d.p_value for d in deltas])
        )
        worse = paired_bootstrap(seeds_of(variant, mine[0]), reference, subjects, draw)["uf1"]
        worse_calls += verdict(worse) == "worse"
        effects.append(worse.estimate)
    simulated = simulate()
    comparisons = FAMILIES * ARMS
    effect, spread = float(np.mean(effects)), float(np.std(effects))
    lines = [
        f"A/A per comparison: {rate(false_calls, comparisons)} called better or worse (nominal 5%)",
        f"A/A family of {ARMS}: any call {rate(families_any, FAMILIES)}; with Holm {rate(families_holm, FAMILIES)}",
        f"power (strain removed, ΔUF1 {effect:+.3f} ± {spread:.3f}): {rate(worse_calls, FAMILIES)} called worse",
        *(f"simulation {k}: {rate(*v)}" for k, v in simulated.items()),
    ]
    print("\n".join(lines))
    body = f"""Development set (68 subjects, 442 clips), params.yaml's model and training, grouped
5-fold over subjects, mean of {SEEDS} seeds per side, {params.evaluate.bootstrap} paired
subject-bootstrap resamples, 95% intervals; {len(every)} + {len(first)} trained seeds
({trained / 60:.0f} min on this machine). Rates with exact 95% binomial intervals.

| what | rate [95% CI] | nominal |
| --- | --- | --- |
| A/A: a comparison of the configuration with itself called better or worse | {rate(false_calls, comparisons)} | 5% |
| A/A: a family of {ARMS} such comparisons with any call, unadjusted | {rate(families_any, FAMILIES)} | ≈ {1 - 0.95**ARMS:.0%} |
| A/A: the same, Holm-adjusted within the family | {rate(families_holm, FAMILIES)} | ≤ 5% |
| power: the model without its optical-strain channel (ΔUF1 {effect:+.3f}, sd {spread:.3f} across families) called worse | {rate(worse_calls, FAMILIES)} | — |
| simulation (known truth, {SIMULATIONS} runs, no training): 95% CI of UF1 covers the truth | {rate(*simulated["uf1"])} | 95% |
| simulation: 95% CI of UAR covers the truth | {rate(*simulated["uar"])} | 95% |
| simulation: paired 95% CI of ΔUF1 covers the true Δ | {rate(*simulated["delta"])} | 95% |
| simulation: A/A called better or worse | {rate(*simulated["aa"])} | 5% |

Reading it: a configuration must differ from another by well over the paired interval's
half-width (±0.015–0.03 on 68 subjects with 3 seeds a side) before `mer compare` calls it;
a sweep of many comparisons needs the family-wise adjustment its report gives beside the
unadjusted verdicts."""
    write_section("verdicts", "python -m benchmarks.verdicts", body)


if __name__ == "__main__":
    main()
