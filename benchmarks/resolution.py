"""What `mer compare` can resolve, by simulation with a known truth (no training; ~5 min):

    python -m benchmarks.resolution

A sweep of a baseline, one variant with a true effect and three null variants (68 subjects like
the real composite, each arm trained with S seeds that shift a whole model and each subject:
:class:`components.evaluation.simulation.World`), compared by three procedures of the seed
noise: none (the subject bootstrap alone), issue 24's per-arm noise (each arm's spread less the
bootstrap's share, floored, Satterthwaite dof) and the noise of the paired differences
(:meth:`components.statistics.TrainingNoise.of_differences`, what `mer compare` does). Per true
ΔUF1, seeds and the share of seed noise the arms have in common (0: independent; ½: common
random numbers): the rate of calls on the variant (power; at Δ = 0 an A/A rate), the A/A rate
on the three nulls, the coverage of the 95% interval of Δ, and the mean MDE at 80% power —
every rate with its exact 95% binomial interval.
"""

from __future__ import annotations

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


def run_case(effect: float, seeds: int, shared: float) -> dict:
    from components.evaluation.simulation import World, seeded_frame
    from components.statistics import Resolution, difference, paired_draws

    world = World(seed_sd=0.1, seed_shared=shared)
    truth = world.truth(effect)[0] - world.truth(0.0)[0]
    rng = np.random.default_rng(21)
    tally = {p: {"called": 0, "aa": 0, "covered": 0, "mde": 0.0} for p in PROCEDURES}
    for k in range(RUNS):
        effects = (0.0, effect) + (0.0,) * NULLS
        frames = [seeded_frame(c) for c in world.seeded_confusions(rng, SUBJECTS, effects, seeds)]
        subjects = sorted(frames[0].subject_id.unique())
        draw = _resampling(k)
        for procedure, counts in tally.items():
            noise = noise_of(procedure, frames, subjects, draw)
            for j, arm in enumerate(frames[1:]):
                estimate, draws = paired_draws(
                    arm, frames[0], subjects, draw, noise, (f"a{j}", "b")
                )["uf1"]
                interval = difference(estimate, draws, 0.95)
                called = interval.low > 0 or interval.high < 0
                if j == 0:
                    counts["called"] += called
                    counts["covered"] += interval.low <= truth <= interval.high
                    counts["mde"] += Resolution.of(draws, 0.95, 0.03).mde / RUNS
                else:
                    counts["aa"] += called
    return {"truth": truth, "seeds": seeds, "shared": shared, "tally": tally}


def _resampling(k: int):
    from components.statistics import Resampling

    return Resampling(3, RESAMPLES, k, 0.95)


def main() -> None:
    started = time.perf_counter()
    rows = []
    for effect, seeds, shared in CASES:
        case = run_case(effect, seeds, shared)
        for procedure, t in case["tally"].items():
            line = (
                f"| {case['truth']:+.3f} | {seeds} | {shared:g} | {procedure} | "
                f"{rate(t['called'], RUNS)} | {rate(t['aa'], NULLS * RUNS)} | "
                f"{rate(t['covered'], RUNS)} | {t['mde']:.3f} |"
            )
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


if __name__ == "__main__":
    main()
