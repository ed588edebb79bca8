"""Seeds by need (``compare.seeds: auto``): a sweep trains a few seeds first, measures the noise
of its differences, and trains as many more as bring every comparison's minimum detectable
effect down to ``compare.resolution`` — up to ``compare.max_seeds``, and none where the subjects
alone keep it above (more seeds would cost time and not reach it).

The prediction reads the draws a comparison would have with S' seeds (`paired_draws` with
``planned_seeds``): the subjects' share of the spread as measured, the seed noise of a mean over
S' seeds and its degrees of freedom grown with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from components.config import ModelConfig
from components.evaluation.comparison import Sweep, sweep_noise
from components.statistics import Resampling, Resolution, TrainingNoise, paired_draws

#: seeds trained before the noise is measured (or the cap, if lower)
FIRST_SEEDS = 3
#: "unlimited seeds" for the floor of the MDE: the seed noise of a mean over this many is nil
UNLIMITED = 1_000_000


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds a sweep trains and why: the largest MDE of its comparisons as measured
    with ``measured`` seeds, predicted with ``seeds``, and with unlimited seeds (``floor``)."""

    measured: int
    seeds: int
    target: float
    cap: int
    measured_mde: float
    predicted_mde: float
    floor_mde: float

    @property
    def reached(self) -> bool:
        return self.predicted_mde <= self.target

    def describe(self) -> str:
        wanted = f"MDE ≤ {self.target:.3f}"
        if self.seeds == self.measured and self.reached:
            return f"{self.measured} seeds reach {wanted} (largest {self.measured_mde:.3f})"
        if self.floor_mde > self.target:
            return (
                f"{wanted} is out of reach on these subjects: {self.measured_mde:.3f} with "
                f"{self.measured} seeds, {self.floor_mde:.3f} with unlimited seeds; no more "
                "seeds trained (more subjects would narrow it)"
            )
        if not self.reached:
            return (
                f"{self.seeds} seeds (compare.max_seeds): largest MDE {self.measured_mde:.3f} "
                f"with {self.measured}, {self.predicted_mde:.3f} predicted; {wanted} needs more"
            )
        return (
            f"{self.seeds} seeds for {wanted}: largest MDE {self.measured_mde:.3f} with "
            f"{self.measured}, {self.predicted_mde:.3f} predicted"
        )


def largest_mde(
    pairs: list[tuple[pd.DataFrame, pd.DataFrame, tuple[str, str]]],
    subjects: list[str],
    draw: Resampling,
    noise: TrainingNoise,
    seeds: int | None = None,
) -> float:
    """The largest MDE (80% power) of the comparisons ``pairs`` (variant, baseline, arm names),
    as measured (``seeds`` None) or predicted for ``seeds`` seeds per arm."""
    mdes = []
    for variant, baseline, arms in pairs:
        found = paired_draws(variant, baseline, subjects, draw, noise, arms, planned_seeds=seeds)
        mdes.append(Resolution.of(found["uf1"][1], draw.confidence, margin=1.0).mde)
    return max(mdes)


def plan_seeds(
    pairs: list[tuple[pd.DataFrame, pd.DataFrame, tuple[str, str]]],
    subjects: list[str],
    draw: Resampling,
    noise: TrainingNoise,
    target: float,
    cap: int,
) -> SeedPlan:
    """The fewest seeds (up to ``cap``) whose predicted largest MDE is at most ``target``;
    as many as measured when they reach it already or when unlimited seeds would not."""
    measured = int(pairs[0][0].seed.nunique())
    now = largest_mde(pairs, subjects, draw, noise)
    floor = largest_mde(pairs, subjects, draw, noise, UNLIMITED)
    plan = SeedPlan(measured, measured, target, cap, now, now, floor)
    if now <= target or floor > target or noise.dof == 0:
        return plan
    for seeds in range(measured + 1, cap + 1):
        predicted = largest_mde(pairs, subjects, draw, noise, seeds)
        plan = SeedPlan(measured, seeds, target, cap, now, predicted, floor)
        if predicted <= target:
            break
    return plan


def plan_for_sweep(
    sweep: Sweep,
    predictions: dict[ModelConfig, pd.DataFrame],
    draw: Resampling,
    target: float,
    cap: int,
) -> SeedPlan:
    """:func:`plan_seeds` for every comparison of a sweep, with the noise of its differences
    pooled as `comparison.compare` pools it (`comparison.sweep_noise`)."""
    subjects, noise = sweep_noise(sweep, predictions, draw)
    bases = {v: sweep.baseline_of[v] for v in sweep.variants}
    pairs = [(predictions[v], predictions[b], (v.label, b.label)) for v, b in bases.items()]
    return plan_seeds(pairs, subjects, draw, noise, target, cap)


def predictions_by_need(
    train: Callable[[list[int]], dict[ModelConfig, pd.DataFrame]],
    seeds: list[int],
    measure: Callable[[dict[ModelConfig, pd.DataFrame]], SeedPlan],
) -> tuple[dict[ModelConfig, pd.DataFrame], list[int], SeedPlan]:
    """Every model's predictions over the seeds a plan asks for: ``train(seeds[:FIRST_SEEDS])``,
    ``measure`` them, then ``train`` the further seeds of ``seeds`` the plan wants (never
    the first ones again)."""
    first = seeds[:FIRST_SEEDS]
    predictions = train(first)
    plan = measure(predictions)
    if plan.seeds > len(first):
        more = train(seeds[len(first) : plan.seeds])
        predictions = {
            m: pd.concat([f, more[m]], ignore_index=True) for m, f in predictions.items()
        }
    return predictions, seeds[: plan.seeds], plan
