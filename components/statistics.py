"""Uncertainty of MEGC metrics: subject-level bootstrap CIs, paired comparisons, McNemar.

On MER data subjects differ far more than clips, so the unit of resampling is the subject:
a bootstrap draw takes as many subjects as there are, with replacement, pools every
prediction of the drawn subjects (a subject drawn twice counts twice), and recomputes UF1 and
UAR exactly as the protocol does (:mod:`components.metrics`). With several training seeds the
estimate is the mean over seeds of each seed's pooled metric, and every draw recomputes it for
all seeds on the same subjects (seeds folded in). A paired comparison draws the same subjects
for both variants and looks at the difference; the verdict is "better"/"worse" when its
percentile interval excludes 0. McNemar's exact test on per-sample correctness (each variant's
seed-majority prediction) is reported beside it.

A subject bootstrap holds the trained models fixed, so it cannot see **training noise**: a
model trained from another seed is a little better or worse on every subject at once (UF1 sd
≈ 0.008 of a whole model on the development set, beside ≈ 0.015 of clip-level seed noise that
the bootstrap does carry). Measured with trained A/A replicates (``benchmarks.verdicts``),
intervals without it called a configuration "better" or "worse" than itself in 6 of 36
comparisons. A comparison therefore adds each arm's whole-model noise to its draws
(:class:`TrainingNoise`): its variance pooled over the arms of the comparison, a normal draw per
arm scaled by a shared ``sqrt(dof/χ²)`` factor, so one Δ's noise is a scaled Student t that
carries the uncertainty of the variance estimate (its effective degrees of freedom by
Satterthwaite: the estimate is a difference of two noisy parts).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd


def per_class_f1_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each class's F1 and recall of confusion matrices ``(..., K, K)``: ``(..., K)`` each,
    NaN where a class has no true and no predicted sample (F1) or no true sample (recall)."""
    confusion = confusion.astype(float)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    predicted = confusion.sum(axis=-2)
    actual = confusion.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = predicted + actual
        f1 = np.where(denominator > 0, 2 * tp / denominator, np.nan)
        recall = np.where(actual > 0, tp / actual, np.nan)
    return f1, recall


def uf1_uar(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UF1 and UAR of confusion matrices ``(..., K, K)`` (classes with no true and no
    predicted sample, or no true sample for recall, are left out of the mean)."""
    f1, recall = per_class_f1_recall(confusion)
    return np.nanmean(f1, axis=-1), np.nanmean(recall, axis=-1)


def subject_confusions(
    frame: pd.DataFrame, subjects: Sequence[str], seeds: Sequence[int], classes: int
) -> np.ndarray:
    """Confusion matrix of every (seed, subject): ``(S, n_subjects, K, K)``."""
    out = np.zeros((len(seeds), len(subjects), classes, classes), np.int64)
    seed_index = {s: k for k, s in enumerate(seeds)}
    subject_index = {s: k for k, s in enumerate(subjects)}
    rows = frame[frame.subject_id.isin(subject_index)]
    np.add.at(
        out,
        (
            rows.seed.map(seed_index).to_numpy(),
            rows.subject_id.map(subject_index).to_numpy(),
            rows.true.to_numpy(int),
            rows.predicted.to_numpy(int),
        ),
        1,
    )
    return out


def draws(subjects: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, subjects)`` counts: how often each subject is drawn in each resample."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, subjects, size=(resamples, subjects))
    counts = np.zeros((resamples, subjects), np.int64)
    np.add.at(counts, (np.arange(resamples)[:, None], picks), 1)
    return counts


def seed_mean_metrics(per_subject: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-over-seeds UF1 and UAR for each row of subject ``counts`` ``(R, n)``."""
    pooled = np.einsum("rn,snij->rsij", counts, per_subject)
    f1, recall = uf1_uar(pooled)
    return np.nanmean(f1, axis=1), np.nanmean(recall, axis=1)


@dataclass(frozen=True)
class Resampling:
    """How a subject bootstrap draws: ``resamples`` draws from ``seed``, a ``confidence``
    percentile interval, confusion matrices over ``classes`` classes."""

    classes: int
    resamples: int
    seed: int
    confidence: float

    def draws(self, subjects: int) -> np.ndarray:
        return draws(subjects, self.resamples, self.seed)

    def interval(self, estimate: float, values: np.ndarray) -> Interval:
        """``estimate`` with the percentile interval of its bootstrap ``values``."""
        return Interval(float(estimate), *percentile_interval(values, self.confidence))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    #: for a difference: the bootstrap's two-sided p-value of "no difference" (the smallest
    #: 1 - confidence at which the percentile interval excludes 0); None for a level
    p_value: float | None = None
    #: the interval reached past the metric's range and was cut to it: the data (too few seeds
    #: for the training noise's estimate, too few subjects) cannot support an interval here
    clipped: bool = False

    def as_dict(self, name: str) -> dict[str, float]:
        return {name: self.estimate, f"{name}_ci_low": self.low, f"{name}_ci_high": self.high}


def bootstrap_p_value(values: np.ndarray) -> float:
    """Two-sided p-value of 0 for bootstrap draws of a difference: twice the smaller share of
    draws on either side of 0 (the percentile interval at 1 - p just reaches 0), at least
    1 / draws."""
    values = values[~np.isnan(values)]
    if not len(values):
        return 1.0
    below, above = np.mean(values <= 0), np.mean(values >= 0)
    # a p-value of 0 would claim more than the draws can: it is below 1 / draws
    return float(min(1.0, max(2 * min(below, above), 1 / len(values))))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error control under any dependence)."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg's step-up adjustment (false discovery rate, independent or positively
    dependent tests)."""
    p = np.asarray(p_values, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap(
    frame: pd.DataFrame, subjects: Sequence[str], resampling: Resampling
) -> dict[str, Interval]:
    """UF1 and UAR (mean over the frame's seeds) of ``subjects``, with subject-bootstrap CIs."""
    seeds = sorted(frame.seed.unique())
    per_subject = subject_confusions(frame, subjects, seeds, resampling.classes)
    full = np.ones((1, len(subjects)), np.int64)
    uf1_hat, uar_hat = seed_mean_metrics(per_subject, full)
    uf1_draws, uar_draws = seed_mean_metrics(per_subject, resampling.draws(len(subjects)))
    return {
        "uf1": resampling.interval(uf1_hat[0], uf1_draws),
        "uar": resampling.interval(uar_hat[0], uar_draws),
    }


@dataclass(frozen=True)
class TrainingNoise:
    """How far a configuration's UF1 and UAR shift as a whole between training seeds on the
    same subjects — the part of the seed-to-seed spread a subject bootstrap cannot see — pooled
    over the arms of a comparison (the noise is taken to be alike across configurations), with
    its degrees of freedom (0: not measured, one seed per arm)."""

    variance: dict[str, float]
    dof: int  # seeds less one, summed over the arms (or the compared pairs)
    effective_dof: int = 0  # of the variance estimate: the draws' t
    #: "arms": issue 24's whole-model variance of each arm (the spread less the bootstrap's
    #: share, floored); "differences": half the spread of the paired per-seed differences
    #: (:meth:`of_differences`), the bootstrap's share taken out of its draws instead
    kind: str = "arms"

    @classmethod
    def none(cls) -> TrainingNoise:
        return cls({"uf1": 0.0, "uar": 0.0}, 0, 0)

    @classmethod
    def pooled(
        cls, frames: Iterable[pd.DataFrame], subjects: Sequence[str], resampling: Resampling
    ) -> TrainingNoise:
        """Per arm, each seed's deviation d_s from the arm's mean over seeds: Σ d_s² over
        (S − 1) estimates the global seed variance plus the subject-level part of the seed
        noise, which the subject bootstrap already carries; that part (the bootstrap variance of
        d_s) is subtracted, the rest pooled over arms and floored at 0."""
        excess, spread, dof = {"uf1": 0.0, "uar": 0.0}, {"uf1": 0.0, "uar": 0.0}, 0
        counts = resampling.draws(len(subjects))
        for frame in frames:
            seeds = sorted(frame.seed.unique())
            if len(seeds) < 2:
                continue
            per_subject = subject_confusions(frame, subjects, seeds, resampling.classes)
            exact = uf1_uar(per_subject.sum(axis=1))  # each (S,)
            drawn = uf1_uar(np.einsum("rn,snij->rsij", counts, per_subject))  # each (R, S)
            for name, full, draws in zip(("uf1", "uar"), exact, drawn, strict=True):
                deviation = full - np.nanmean(full)
                seen = draws - np.nanmean(draws, axis=1, keepdims=True)
                excess[name] += float(np.nansum(deviation**2 - np.nanvar(seen, axis=0)))
                spread[name] += float(np.nansum(deviation**2))
            dof += len(seeds) - 1
        if dof == 0:
            return cls.none()
        # Satterthwaite: the estimate is a difference, as variable as the whole spread it
        # comes from, so its effective degrees of freedom shrink by (excess / spread)²
        share = excess["uf1"] / spread["uf1"] if spread["uf1"] > 0 else 0.0
        effective = max(1, round(dof * min(max(share, 0.0), 1.0) ** 2))
        variance = {name: max(total, 0.0) / dof for name, total in excess.items()}
        return cls(variance, dof, effective)

    @classmethod
    def of_differences(
        cls,
        pairs: Iterable[tuple[pd.DataFrame, pd.DataFrame, str]],
        subjects: Sequence[str],
        resampling: Resampling,
    ) -> TrainingNoise:
        """The seed noise of the paired differences themselves: for each (variant, baseline,
        baseline's name) the per-seed Δ_s on every subject and their spread around their mean
        (S − 1 degrees of freedom), pooled over the pairs — what both arms share with a seed
        (batch order, augmentation, validation subjects, common initial weights) cancels in
        each Δ_s, and nothing is subtracted from the spread. Pairs that share a baseline share
        its noise (their deviations correlate by ½ when the arms' noise is alike): a group of k
        such pairs counts k(S − 1) / (1 + (k − 1)/4) effective degrees of freedom. Each arm of a
        draw gets half the variance (a difference gets it whole)."""
        spread, dof = {"uf1": 0.0, "uar": 0.0}, 0
        groups: dict[str, list[int]] = {}
        for variant, baseline, name in pairs:
            seeds = sorted(variant.seed.unique())
            if len(seeds) < 2 or seeds != sorted(baseline.seed.unique()):
                continue
            deltas = [
                np.asarray(a) - np.asarray(b)
                for a, b in zip(
                    uf1_uar(
                        subject_confusions(variant, subjects, seeds, resampling.classes).sum(1)
                    ),
                    uf1_uar(
                        subject_confusions(baseline, subjects, seeds, resampling.classes).sum(1)
                    ),
                    strict=True,
                )
            ]
            for key, delta in zip(("uf1", "uar"), deltas, strict=True):
                spread[key] += float(np.nansum((delta - np.nanmean(delta)) ** 2))
            dof += len(seeds) - 1
            groups.setdefault(name, []).append(len(seeds) - 1)
        if dof == 0:
            return cls.none()
        effective = sum(sum(g) / (1 + (len(g) - 1) / 4) for g in groups.values())
        variance = {key: total / dof / 2 for key, total in spread.items()}
        return cls(variance, dof, max(1, int(effective)), "differences")

    def with_seeds(self, measured: int, planned: int) -> TrainingNoise:
        """This noise as ``planned`` seeds per arm would measure it (its degrees of freedom grow
        as S − 1 does), for the draws of a comparison that trains them (a prediction)."""
        if self.dof == 0 or measured < 2:
            return self
        grow = (planned - 1) / (measured - 1)
        return replace(
            self, dof=round(self.dof * grow), effective_dof=max(1, int(self.effective_dof * grow))
        )

    def sd(self, name: str = "uf1") -> float:
        """One arm's whole-model seed sd (of a paired difference: its sd over √2)."""
        return math.sqrt(self.variance[name])

    def draws(self, name: str, seeds: int, arm: str, resampling: Resampling) -> np.ndarray:
        """``(R,)`` draws of the training noise of one arm's mean over ``seeds`` seeds: a normal
        draw of its own (from ``arm``) times a scale shared by every arm of the draw."""
        if self.dof == 0:
            return np.zeros(resampling.resamples)
        shared = np.random.default_rng([resampling.seed, 0x7E5D])
        dof = self.effective_dof
        scale = np.sqrt(dof / shared.chisquare(dof, resampling.resamples))
        own = np.random.default_rng([resampling.seed, _stable_hash(arm)])
        return math.sqrt(self.variance[name] / seeds) * scale * own.standard_normal(scale.size)


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def paired_draws(
    variant: pd.DataFrame,
    baseline: pd.DataFrame,
    subjects: Sequence[str],
    resampling: Resampling,
    noise: TrainingNoise | None = None,
    arms: tuple[str, str] = ("variant", "baseline"),
    planned_seeds: int | None = None,
) -> dict[str, tuple[float, np.ndarray]]:
    """Differences (variant − baseline) of UF1 and UAR on the same subjects and seeds: the
    estimate and its paired bootstrap draws (both recomputed on the same subjects each draw;
    the draws depend only on ``resampling`` and the subjects, so the draws of several variants
    against one baseline are paired with each other too), plus each arm's training ``noise``
    (drawn by the arm's name in ``arms``: an arm has the same noise in every comparison).
    With ``planned_seeds``, the draws this comparison would have with that many seeds per arm:
    the subjects' share as measured, the seed noise of a mean over ``planned_seeds``."""
    seeds = sorted(variant.seed.unique())
    if seeds != sorted(baseline.seed.unique()):
        raise ValueError("a paired comparison needs the same seeds for both variants")
    noise = noise or TrainingNoise.none()
    averaged = planned_seeds or len(seeds)
    if planned_seeds:
        noise = noise.with_seeds(len(seeds), planned_seeds)
    mine = subject_confusions(variant, subjects, seeds, resampling.classes)
    theirs = subject_confusions(baseline, subjects, seeds, resampling.classes)
    counts = resampling.draws(len(subjects))
    exact = [a - b for a, b in zip(uf1_uar(mine.sum(1)), uf1_uar(theirs.sum(1)), strict=True)]
    drawn = [
        a - b  # (R, S): each seed's Δ on each draw of subjects
        for a, b in zip(
            uf1_uar(np.einsum("rn,snij->rsij", counts, mine)),
            uf1_uar(np.einsum("rn,snij->rsij", counts, theirs)),
            strict=True,
        )
    ]
    out = {}
    for name, per_seed, per_draw in zip(("uf1", "uar"), exact, drawn, strict=True):
        deltas = np.nanmean(per_draw, axis=1)
        if noise.kind == "differences" and noise.dof and len(seeds) > 1:
            deltas = _without_seed_share(deltas, per_draw)
        deltas = deltas + (
            noise.draws(name, averaged, arms[0], resampling)
            - noise.draws(name, averaged, arms[1], resampling)
        )
        out[name] = (float(np.nanmean(per_seed)), deltas)
    return out


def _without_seed_share(deltas: np.ndarray, per_draw: np.ndarray) -> np.ndarray:
    """The bootstrap draws of a seed-mean Δ with the seed noise they carry taken out: each
    seed's deviation from the seed mean varies over the draws by the subject-level part of the
    seed noise, σ²(S − 1)/S, and the mean carries σ²/S of it; the spread of the per-seed Δ
    (:meth:`TrainingNoise.of_differences`) adds all of it back once."""
    seeds = per_draw.shape[1]
    deviations = per_draw - np.nanmean(per_draw, axis=1, keepdims=True)
    share = float(np.nanmean(np.nanvar(deviations, axis=0))) / (seeds - 1)
    total = float(np.nanvar(deltas))
    if total <= 0:
        return deltas
    centre = np.nanmean(deltas)
    return centre + (deltas - centre) * math.sqrt(max(total - share, 0.0) / total)


#: a difference of two metrics in [0, 1] (UF1, UAR) lies in [-1, 1]
DIFFERENCE_RANGE = (-1.0, 1.0)


def difference(estimate: float, draws: np.ndarray, confidence: float) -> Interval:
    """A difference with its percentile interval (cut to :data:`DIFFERENCE_RANGE`, and then
    marked ``clipped``) and bootstrap p-value."""
    low, high = percentile_interval(draws, confidence)
    bottom, top = DIFFERENCE_RANGE
    clipped = low < bottom or high > top
    low, high = max(low, bottom), min(high, top)
    return Interval(float(estimate), low, high, bootstrap_p_value(draws), clipped)


#: power at which a comparison states its minimum detectable effect
POWER = 0.8


@dataclass(frozen=True)
class Resolution:
    """What a difference's draws can tell apart: the **minimum detectable effect** (the true
    |Δ| a comparison like this one calls at ``POWER`` at its confidence, from the spread of its
    draws: for a normal sampling distribution ``(z₁₋α/₂ + z_power) × SE``, here the percentile
    interval's half-width scaled by ``(z₁₋α/₂ + z_power) / z₁₋α/₂``, so heavy tails widen it as
    they widen the interval) and **equivalence** within ``±margin`` by two one-sided tests
    (TOST: both "Δ ≤ −margin" and "Δ ≥ margin" rejected at α, i.e. the (1 − 2α) percentile
    interval inside the margin), with the TOST p-value (the larger one-sided share of draws
    beyond the margin)."""

    mde: float
    margin: float
    tost_p: float
    low: float  # the (1 − 2α) interval the equivalence test reads
    high: float

    @property
    def equivalent(self) -> bool:
        return -self.margin < self.low and self.high < self.margin

    @classmethod
    def of(cls, draws: np.ndarray, confidence: float, margin: float) -> Resolution:
        from scipy.stats import norm

        draws = draws[~np.isnan(draws)]
        alpha = 1 - confidence
        low, high = percentile_interval(draws, confidence)
        z = norm.ppf(1 - alpha / 2)
        mde = (high - low) / 2 * (z + norm.ppf(POWER)) / z
        below, above = np.mean(draws <= -margin), np.mean(draws >= margin)
        tost_p = float(min(1.0, max(below, above, 1 / len(draws))))
        narrow_low, narrow_high = percentile_interval(draws, 1 - 2 * alpha)
        return cls(float(mde), margin, tost_p, narrow_low, narrow_high)


def call(delta: Interval, resolution: Resolution) -> str:
    """A comparison's four-way verdict: ``better`` / ``worse`` when the interval excludes 0,
    else ``equivalent within ±margin`` when TOST says so, else ``inconclusive`` (the data
    cannot tell a difference of the margin from none: the MDE says how large one it could)."""
    if delta.low > 0 or delta.high < 0:
        return verdict(delta)
    return equivalence_call(resolution.equivalent, resolution.margin)


def equivalence_call(equivalent: bool, margin: float) -> str:
    """The call of a comparison that found no difference: equivalent within ``±margin``, or
    inconclusive."""
    return f"equivalent within ±{margin:g}" if equivalent else "inconclusive"


def paired_bootstrap(
    variant: pd.DataFrame,
    baseline: pd.DataFrame,
    subjects: Sequence[str],
    resampling: Resampling,
    noise: TrainingNoise | None = None,
    arms: tuple[str, str] = ("variant", "baseline"),
) -> dict[str, Interval]:
    """Differences (variant − baseline) of UF1 and UAR with paired subject-bootstrap CIs and
    p-values (:func:`paired_draws`)."""
    found = paired_draws(variant, baseline, subjects, resampling, noise, arms)
    return {
        name: difference(estimate, draws, resampling.confidence)
        for name, (estimate, draws) in found.items()
    }


def verdict(delta: Interval) -> str:
    """``better`` / ``worse`` when the interval excludes 0, else ``no detectable difference``."""
    if delta.low > 0:
        return "better"
    if delta.high < 0:
        return "worse"
    return "no detectable difference"


def majority_predictions(frame: pd.DataFrame) -> pd.Series:
    """Each sample's prediction across seeds: the most frequent class, ties broken by the
    highest mean probability."""
    probability = [c for c in frame.columns if c.startswith("p_")]
    votes = pd.crosstab(frame.uid, frame.predicted)
    mean_p = frame.groupby("uid")[probability].mean()
    classes = np.arange(len(probability))
    counts = votes.reindex(columns=classes, fill_value=0).to_numpy()
    tie_break = mean_p.loc[votes.index].to_numpy() * 1e-3  # < one vote
    return pd.Series((counts + tie_break).argmax(1), index=votes.index)


@dataclass(frozen=True)
class McNemar:
    variant_only: int  # samples the variant gets right and the baseline wrong
    baseline_only: int
    p_value: float


def mcnemar_exact(variant_correct: np.ndarray, baseline_correct: np.ndarray) -> McNemar:
    """McNemar's exact test (two-sided binomial on the discordant pairs)."""
    from scipy.stats import binomtest

    b = int(np.sum(variant_correct & ~baseline_correct))
    c = int(np.sum(~variant_correct & baseline_correct))
    if b + c == 0:
        return McNemar(b, c, 1.0)
    return McNemar(b, c, float(binomtest(b, b + c, 0.5).pvalue))


def mcnemar_between(variant: pd.DataFrame, baseline: pd.DataFrame) -> McNemar:
    """McNemar on the seed-majority predictions of two variants over the same samples."""
    truth = variant.drop_duplicates("uid").set_index("uid").true
    mine = majority_predictions(variant).loc[truth.index]
    theirs = majority_predictions(baseline).loc[truth.index]
    return mcnemar_exact((mine == truth).to_numpy(), (theirs == truth).to_numpy())
