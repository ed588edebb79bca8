"""What `mer compare` can resolve, by simulation with a known truth (no training; ~5 min):

    python -m benchmarks.resolution
    python -m benchmarks.resolution --by-need   # compare.seeds: auto (~10 min)
    python -m benchmarks.resolution --seeds 10  # a fixed number: params.yaml's (~4 min)

A sweep of a baseline, one variant with a true effect and three null variants (68 subjects like
the real composite, each arm trained with S seeds that shift a whole model and each subject:
:class:`components.evaluation.simulation.World`), compared by three procedures of the seed
noise: none (the subject bootstrap alone), issue 24's per-arm noise (each arm's spread less the
bootstrap's share, floored, Satterthwaite dof) and the noise of the paired differences
(:meth:`components.statistics.TrainingNoise.of_differences`, what `mer compare` does). Per true
ΔUF1, seeds and the share of seed noise the arms have in common (0: independent; ½: common
random numbers): the rate of calls on the variant (power; at Δ = 0 an A/A rate), the A/A rate
on the three nulls, the coverage of the 95% interval of Δ, and the mean MDE at 80% power —
every rate with its exact 95% binomial interval. With ``--by-need``: the same sweeps under
``compare.seeds: auto`` (3 seeds measured, then as many as the plan asks for up to 10, for an
MDE ≤ 0.05; :mod:`components.evaluation.seed_plan`), with the seeds it chose.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.results import write_section
from benchmarks.verdicts import rate

SUBJECTS, NULLS, RUNS, RESAMPLES = 68, 3, 300, 1000
PROCEDURES = ("bootstrap alone", "per-arm noise (issue 24)", "paired-difference noise (now)")
#: (effect on the log-odds, seeds, shared share of the seed noise)
CASES = [(0.0, 3, 0.0), (0.3, 3, 0.0), (0.0, 3, 0.5), (0.3, 3, 0.5), (0.3, 6, 0.5), (0.3, 10, 0.5)]


def noise_of(procedure: str, frames, subjects, draw):
    from components.statistics import TrainingNoise

    if procedure == PROCEDURES[0]:
        return None
    if procedure == PROCEDURES[1]:
        return TrainingNoise.pooled(frames, subjects, draw)
    return TrainingNoise.of_differences(
        [(f, frames[0], "base") for f in frames[1:]], subjects, draw
    )


def run_case(
    effect: float, seeds: int, shared: float, procedures=PROCEDURES, runs: int = RUNS
) -> dict:
    from components.evaluation.simulation import World, seeded_frame

    world = World(seed_sd=0.1, seed_shared=shared)
    truth = world.truth(effect)[0] - world.truth(0.0)[0]
    rng = np.random.default_rng(21)
    tally = {p: {"called": 0, "aa": 0, "covered": 0, "mde": 0.0} for p in procedures}
    for k in range(runs):
        effects = (0.0, effect) + (0.0,) * NULLS
        frames = [seeded_frame(c) for c in world.seeded_confusions(rng, SUBJECTS, effects, seeds)]
        subjects = sorted(frames[0].subject_id.unique())
        draw = _resampling(k)
        for procedure, counts in tally.items():
            noise = noise_of(procedure, frames, subjects, draw)
            pairs = [(arm, frames[0], (f"a{j}", "b")) for j, arm in enumerate(frames[1:])]
            count_calls(counts, pairs, subjects, draw, noise, truth, runs)
    return {"truth": truth, "seeds": seeds, "shared": shared, "tally": tally}


def count_calls(counts: dict, pairs, subjects, draw, noise, truth: float, runs: int) -> None:
    """Add one simulated sweep to ``counts``: the first pair is the variant (called, covered,
    its MDE averaged over ``runs``), the others the nulls (A/A calls)."""
    from components.statistics import Resolution, difference, paired_draws

    for j, (arm, base, arms) in enumerate(pairs):
        estimate, draws = paired_draws(arm, base, subjects, draw, noise, arms)["uf1"]
        interval = difference(estimate, draws, 0.95)
        called = interval.low > 0 or interval.high < 0
        if j == 0:
            counts["called"] += called
            counts["covered"] += interval.low <= truth <= interval.high
            counts["mde"] += Resolution.of(draws, 0.95, 0.03).mde / runs
        else:
            counts["aa"] += called


#: compare.seeds: auto — (effect on the log-odds, shared share): the target, the cap, the runs
BY_NEED = [(0.0, 0.0), (0.3, 0.0), (0.3, 0.5)]
TARGET, CAP, BY_NEED_RUNS = 0.05, 10, 200


def run_by_need(effect: float, shared: float, cap: int = CAP) -> dict:
    """:func:`run_case`'s tallies for ``compare.seeds: auto`` (the paired-difference noise)."""
    from components.evaluation.seed_plan import FIRST_SEEDS, plan_seeds
    from components.evaluation.simulation import World, seeded_frame

    world = World(seed_sd=0.1, seed_shared=shared)
    truth = world.truth(effect)[0] - world.truth(0.0)[0]
    rng = np.random.default_rng(22)
    t = {"called": 0, "aa": 0, "covered": 0, "mde": 0.0, "seeds": [], "reached": 0}
    for k in range(BY_NEED_RUNS):
        effects = (0.0, effect) + (0.0,) * NULLS
        every = [seeded_frame(c) for c in world.seeded_confusions(rng, SUBJECTS, effects, cap)]
        subjects = sorted(every[0].subject_id.unique())
        draw = _resampling(k)

        first = [f[f.seed < FIRST_SEEDS] for f in every]
        plan = plan_seeds(*_sweep(first, subjects, draw), TARGET, cap)
        pairs, _, _, noise = _sweep([f[f.seed < plan.seeds] for f in every], subjects, draw)
        t["seeds"].append(plan.seeds)
        t["reached"] += plan.reached
        count_calls(t, pairs, subjects, draw, noise, truth, BY_NEED_RUNS)
    return {"truth": truth, "shared": shared, "tally": t}


def _sweep(frames, subjects, draw):
    """(pairs, subjects, draw, noise) of a simulated sweep (``frames[0]`` the baseline): the
    first arguments of :func:`~components.evaluation.seed_plan.plan_seeds`."""
    from components.statistics import TrainingNoise

    noise = TrainingNoise.of_differences([(f, frames[0], "b") for f in frames[1:]], subjects, draw)
    pairs = [(f, frames[0], (f"a{j}", "b")) for j, f in enumerate(frames[1:])]
    return pairs, subjects, draw, noise


def main_by_need(cap: int = CAP) -> None:
    started = time.perf_counter()
    rows = []
    for effect, shared in BY_NEED:
        case = run_by_need(effect, shared, cap)
        t, seeds = case["tally"], np.array(case["tally"]["seeds"])
        line = (
            f"| {case['truth']:+.3f} | {shared:g} | {seeds.mean():.1f} "
            f"({np.percentile(seeds, 10):.0f}–{np.percentile(seeds, 90):.0f}) | "
            f"{rate(t['reached'], BY_NEED_RUNS)} | {cells(t, BY_NEED_RUNS)}"
        )
        print(line, flush=True)
        rows.append(line)
    minutes = (time.perf_counter() - started) / 60
    body = f"""`compare.seeds: auto` (target MDE {TARGET}, at most {cap} seeds) on {BY_NEED_RUNS}
simulated sweeps per case, the worlds of "resolution: simulation" (68 subjects, a baseline,
the variant and {NULLS} null variants, `World(seed_sd=0.1)`), {minutes:.0f} min: 3 seeds
measured, the plan's seeds used (the first ones of {cap} simulated), the paired-difference
noise. "seeds": mean (10th–90th percentile) chosen; "reached": the plan predicted MDE ≤
{TARGET}; the other columns as in "resolution: simulation".

| true ΔUF1 | shared | seeds | reached | called | A/A (nulls) | covers | MDE |
| ---: | ---: | --- | --- | --- | --- | --- | ---: |
{chr(10).join(rows)}
"""
    command = f"python -m benchmarks.resolution --by-need --cap {cap}"
    write_section(f"resolution: seeds by need (cap {cap})", command, body)


def cells(t: dict, runs: int) -> str:
    """A table row's called | A/A | covers | MDE cells of ``runs`` simulated sweeps."""
    return (
        f"{rate(t['called'], runs)} | {rate(t['aa'], NULLS * runs)} | "
        f"{rate(t['covered'], runs)} | {t['mde']:.3f} |"
    )


def _resampling(k: int):
    from components.statistics import Resampling

    return Resampling(3, RESAMPLES, k, 0.95)


def main() -> None:
    started = time.perf_counter()
    rows = []
    for effect, seeds, shared in CASES:
        case = run_case(effect, seeds, shared)
        for procedure, t in case["tally"].items():
            line = f"| {case['truth']:+.3f} | {seeds} | {shared:g} | {procedure} | {cells(t, RUNS)}"
            print(line, flush=True)
            rows.append(line)
    minutes = (time.perf_counter() - started) / 60
    body = f"""{RUNS} simulated sweeps per case ({SUBJECTS} subjects, a baseline, the variant and
{NULLS} null variants; `World(seed_sd=0.1)`: a seed moves a whole model by ≈ 0.01 UF1 like on
the development set; {RESAMPLES} paired resamples, 95% intervals), {minutes:.0f} min. "called":
the variant's Δ interval excludes 0 (power; an A/A rate where the true Δ is 0); "A/A": the
same on the null variants; "covers": the variant's interval holds the true Δ; MDE: the mean
minimum detectable effect at 80% power (`Resolution`).

| true ΔUF1 | seeds | shared | procedure | called | A/A (nulls) | covers | MDE |
| ---: | ---: | ---: | --- | --- | --- | --- | ---: |
{chr(10).join(rows)}
"""
    write_section("resolution: simulation", "python -m benchmarks.resolution", body)


#: a fixed number of seeds: A/A and power, arms independent or sharing half their seed noise
FIXED_CASES, FIXED_RUNS = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.3, 0.5)], 600


def main_fixed(seeds: int) -> None:
    started = time.perf_counter()
    rows = []
    for effect, shared in FIXED_CASES:
        case = run_case(effect, seeds, shared, PROCEDURES[2:], FIXED_RUNS)
        t = case["tally"][PROCEDURES[2]]
        line = f"| {case['truth']:+.3f} | {shared:g} | {cells(t, FIXED_RUNS)}"
        print(line, flush=True)
        rows.append(line)
    minutes = (time.perf_counter() - started) / 60
    body = f"""`compare.seeds: {seeds}`: {FIXED_RUNS} simulated sweeps per case, the worlds of
"resolution: simulation" (68 subjects, a baseline, the variant and {NULLS} null variants,
`World(seed_sd=0.1)`; the arms' seed noise independent or half shared), the paired-difference
noise, {minutes:.0f} min; the columns as in "resolution: simulation".

| true ΔUF1 | shared | called | A/A (nulls) | covers | MDE |
| ---: | ---: | --- | --- | --- | ---: |
{chr(10).join(rows)}
"""
    command = f"python -m benchmarks.resolution --seeds {seeds}"
    write_section(f"resolution: {seeds} seeds", command, body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--by-need", action="store_true", help="compare.seeds: auto")
    parser.add_argument("--cap", type=int, default=CAP, help="--by-need: compare.max_seeds")
    parser.add_argument("--seeds", type=int, help="a fixed number of seeds, the new method only")
    args = parser.parse_args()
    if args.seeds:
        main_fixed(args.seeds)
    else:
        main_by_need(args.cap) if args.by_need else main()
