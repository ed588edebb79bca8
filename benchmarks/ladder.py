"""Planted effects of known size on trained models, and A/A: what `mer compare` calls.

    python -m benchmarks.ladder          (~25 min; builds the development set on first use)
    python -m benchmarks.ladder --analyse    (the stored predictions, analysed again)
    python -m benchmarks.ladder --groups 1 --seeds 3 --strengths 0.5,1,2   (a quick look)
    python -m benchmarks.ladder --aa     (A/A: 12 families of 4 seed groups; ~70 min)

On the development set (68 subjects, 442 clips; grouped 5-fold over subjects, params.yaml's
model and training), a **ladder of planted effects**: the same model trained and tested on
records whose optical flow carries Gaussian noise of a known strength (``--strengths``, in
units of each flow channel's own sd over the set), with the baseline's seed numbers (paired
seeds: common random numbers). A rung's **truth** is its mean paired ΔUF1 over all its trained
seeds (``groups × seeds``). `mer compare`'s procedure (the paired-difference noise pooled over
the family, the four-way call against ``compare.margin``, the family's adjustment) is then
run on each of ``--groups`` disjoint groups of ``--seeds`` seeds (params.yaml's
``compare.seeds`` by default): a family of the baseline, every rung and an **A/A arm** — the
baseline's own configuration trained with the seeds of another group, relabelled to pair up
(it shares no random numbers with the baseline, so its noise is the larger one of unpaired
seeds; every call on it is false).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import composite
from benchmarks.results import write_section
from benchmarks.verdicts import damaged_records, rate, seeds_of

STRENGTHS = (0.25, 0.4, 0.65)  # ≈ −0.03, −0.05, −0.08 UF1 by a 3-seed look (0.5: −0.06)
GROUPS = 2


def flow_sd(records_dir: Path) -> np.ndarray:
    """Each flow channel's sd over every sample of a records folder."""
    from components.records import decode
    from components.records.tfrecord import read_records

    total = squares = count = 0.0
    for path in sorted(records_dir.glob("*.tfrecord.gz")):
        for record in (decode(r) for r in read_records(str(path))):
            flow = np.asarray(record.flow, np.float64).reshape(-1, record.flow.shape[-1])
            total, squares = total + flow.sum(0), squares + (flow**2).sum(0)
            count += len(flow)
    mean = total / count
    return np.sqrt(squares / count - mean**2)


def flow_noise(strength: float, sd: np.ndarray):
    """A damage of :func:`damaged_records`: Gaussian noise of ``strength`` × ``sd`` per channel,
    the same for a sample whenever it is made (drawn from its uid)."""

    def damage(record) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(record.uid.encode()).digest()[:8], "little")
        flow = np.asarray(record.flow, np.float32)
        noise = np.random.default_rng(seed).standard_normal(flow.shape) * strength * sd
        return (flow + noise).astype(np.float32)

    return damage


def train(params, seeds: list[int]) -> pd.DataFrame:
    """The predictions of params.yaml's model on ``params``' records, for ``seeds``."""
    from components.evaluation.protocol import run_given
    from components.evaluation.session import Session

    session = Session.open(params, "ladder")
    manifest = session.records.manifest
    return run_given(
        params.model, params.train, seeds, session.folds, manifest, session.execution
    ).predictions


def trained_arms(params, folder: Path, strengths, groups: list[list[int]], analyse: bool):
    """The baseline's predictions (every group's seeds) and each rung's (the first half of the
    groups: the other half is the A/A arms'), trained or read back."""
    stored = folder / "predictions"
    names = ["baseline", *(f"noise {s:g}" for s in strengths)]
    if analyse:
        return [pd.read_parquet(stored / f"{name}.parquet") for name in names]
    records = Path(params.preprocess.records_dir)
    sd = flow_sd(records)
    half = [s for group in groups[: len(groups) // 2] for s in group]
    frames = [train(params, [s for group in groups for s in group])]
    for strength in strengths:
        damaged = damaged_records(
            records, folder / f"records_noise_{strength:g}", flow_noise(strength, sd)
        )
        varied = replace(params, preprocess=replace(params.preprocess, records_dir=str(damaged)))
        frames.append(train(varied, half))
    stored.mkdir(exist_ok=True)
    for name, frame in zip(names, frames, strict=True):
        frame.to_parquet(stored / f"{name}.parquet", index=False)
    return frames


def family(baseline, arms: dict[str, pd.DataFrame], subjects, draw, params) -> list[dict]:
    """One sweep as `mer compare` sees it: every arm against the baseline, the noise pooled
    over the family, the four-way call and the family's adjusted call."""
    from components.evaluation.comparison import adjust_for_the_family, comparison_fields
    from components.statistics import TrainingNoise, paired_draws

    pairs = [(frame, baseline, "base") for frame in arms.values()]
    noise = TrainingNoise.of_differences(pairs, subjects, draw)
    rows = []
    for name, frame in arms.items():
        found = paired_draws(frame, baseline, subjects, draw, noise, (name, "base"))
        fields = comparison_fields(found, "base", draw.confidence, params.compare.margin)
        rows.append({"arm": name, **fields})
    adjust_for_the_family(
        rows, params.compare.correction, 1 - draw.confidence, params.compare.margin
    )
    return rows


def truths(baseline, rungs: dict[str, pd.DataFrame], subjects, draw) -> dict[str, tuple]:
    """Each rung's mean paired ΔUF1 over all its seeds, with its 95% interval (the noise of
    its own per-seed differences)."""
    from components.statistics import TrainingNoise, paired_bootstrap

    out = {}
    for name, frame in rungs.items():
        mine = baseline[baseline.seed.isin(frame.seed.unique())]
        noise = TrainingNoise.of_differences([(frame, mine, "base")], subjects, draw)
        found = paired_bootstrap(frame, mine, subjects, draw, noise, (name, "base"))["uf1"]
        out[name] = (found.estimate, found.low, found.high)
    return out


def main(strengths, seeds: int | None, n_groups: int, analyse: bool) -> None:
    from components.evaluation.report import resampling

    started = time.perf_counter()
    params, folder = composite.kfold_params("ladder")
    seeds = seeds or params.compare.seeds
    groups = [[params.seed + g * seeds + k for k in range(seeds)] for g in range(2 * n_groups)]
    baseline, *rung_frames = trained_arms(params, folder, strengths, groups, analyse)
    rungs = {f"noise {s:g}": f for s, f in zip(strengths, rung_frames, strict=True)}
    minutes = (time.perf_counter() - started) / 60
    draw = resampling(params.evaluate.bootstrap, params.seed, params.evaluate.confidence)
    subjects = sorted(baseline.subject_id.unique())
    truth = truths(baseline, rungs, subjects, draw)
    lines = []
    for g in range(n_groups):
        mine = {name: seeds_of(frame, groups[g]) for name, frame in rungs.items()}
        aa = seeds_of(baseline, groups[g + n_groups])
        arms = {"A/A": aa, **mine}
        for row in family(seeds_of(baseline, groups[g]), arms, subjects, draw, params):
            true = truth.get(row["arm"])
            known = f"{true[0]:+.3f} [{true[1]:+.3f}, {true[2]:+.3f}]" if true else "0"
            lines.append(
                f"| {row['arm']} | {known} | {g + 1} | "
                f"{row['delta_uf1']:+.3f} [{row['delta_uf1_ci_low']:+.3f}, "
                f"{row['delta_uf1_ci_high']:+.3f}] | {row['mde_uf1']:.3f} | {row['verdict']} | "
                f"{row['verdict_adjusted']} |"
            )
            print(lines[-1], flush=True)
    how = "analysed again from the stored predictions" if analyse else f"{minutes:.0f} min"
    body = f"""Development set (68 subjects, 442 clips), grouped 5-fold over subjects,
params.yaml's model and training; flow noise of {", ".join(f"{s:g}" for s in strengths)} × each
channel's sd; {n_groups} group(s) of {seeds} paired seeds, the baseline trained with
{2 * n_groups * seeds} seeds (its last {n_groups * seeds} are the A/A arms'), {how}. "truth": the rung's mean
paired ΔUF1 over its {n_groups * seeds} seeds, 95% CI; per group: `mer compare`'s ΔUF1 with its 95% CI,
MDE, call and {params.compare.correction}-adjusted call within the family (the A/A arm and the
rungs), margin ±{params.compare.margin:g}. The A/A arm's truth is 0.

| arm | truth ΔUF1 | group | ΔUF1 [95% CI] | MDE | call | adjusted |
| --- | --- | ---: | --- | ---: | --- | --- |
{chr(10).join(lines)}
"""
    command = "python -m benchmarks.ladder " + " ".join(sys.argv[1:])
    write_section("ladder: planted effects on trained models", command.strip(), body)


#: A/A on trained models: families of a baseline and ARMS more seed groups of itself
FAMILIES, ARMS = 12, 3


def main_aa(seeds: int | None, analyse: bool) -> None:
    """A/A at `mer compare`'s seeds: ``FAMILIES`` sweeps of a baseline seed group and ``ARMS``
    other groups of the same configuration (relabelled to pair up), every call false."""
    from components.evaluation.report import resampling

    started = time.perf_counter()
    params, folder = composite.kfold_params("ladder")
    seeds = seeds or params.compare.seeds
    count = FAMILIES * (ARMS + 1)
    groups = [[params.seed + g * seeds + k for k in range(seeds)] for g in range(count)]
    stored = folder / "predictions" / f"aa_{seeds}.parquet"
    if analyse:
        baseline = pd.read_parquet(stored)
    else:
        baseline = train(params, [s for group in groups for s in group])
        stored.parent.mkdir(exist_ok=True)
        baseline.to_parquet(stored, index=False)
    minutes = (time.perf_counter() - started) / 60
    draw = resampling(params.evaluate.bootstrap, params.seed, params.evaluate.confidence)
    subjects = sorted(baseline.subject_id.unique())
    calls = adjusted = families_any = families_adjusted = equivalent = 0
    mdes = []
    for f in range(FAMILIES):
        mine = groups[f * (ARMS + 1) : (f + 1) * (ARMS + 1)]
        arms = {f"arm{k}": seeds_of(baseline, group) for k, group in enumerate(mine[1:])}
        rows = family(seeds_of(baseline, mine[0]), arms, subjects, draw, params)
        found = [r["verdict"] in ("better", "worse") for r in rows]
        found_adjusted = [r["verdict_adjusted"] in ("better", "worse") for r in rows]
        calls, adjusted = calls + sum(found), adjusted + sum(found_adjusted)
        families_any += any(found)
        families_adjusted += any(found_adjusted)
        equivalent += sum(r["verdict"].startswith("equivalent") for r in rows)
        mdes += [r["mde_uf1"] for r in rows]
        print(
            f"family {f + 1}: " + "; ".join(f"{r['delta_uf1']:+.3f} {r['verdict']}" for r in rows)
        )
    n = FAMILIES * ARMS
    how = (
        "analysed again from the stored predictions" if analyse else f"trained in {minutes:.0f} min"
    )
    body = f"""Development set (68 subjects, 442 clips), grouped 5-fold over subjects,
params.yaml's model and training; {FAMILIES} families, each a sweep of a baseline group of {seeds}
seeds and {ARMS} more groups of the same configuration ({count * seeds} trained seeds, {how}),
compared as `mer compare` does (paired-difference noise pooled over the family, 95% intervals,
{params.compare.correction} within the family, margin ±{params.compare.margin:g}). Every "better"
or "worse" is false. Rates with exact 95% binomial intervals; MDE {np.mean(mdes):.3f} on average.

| what | rate | nominal |
| --- | --- | --- |
| A/A: a comparison called better or worse | {rate(calls, n)} | 5% |
| A/A: a family with any call, unadjusted | {rate(families_any, FAMILIES)} | ≈ {1 - 0.95**ARMS:.0%} |
| A/A: a family with any call, {params.compare.correction}-adjusted | {rate(families_adjusted, FAMILIES)} | ≤ 5% |
| A/A: a comparison called "equivalent within ±{params.compare.margin:g}" | {rate(equivalent, n)} | — |
"""
    print(body)
    command = "python -m benchmarks.ladder " + " ".join(sys.argv[1:])
    write_section(f"ladder: A/A on trained models ({seeds} seeds)", command.strip(), body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strengths", default=",".join(f"{s:g}" for s in STRENGTHS))
    parser.add_argument("--seeds", type=int, help="seeds per group (default: compare.seeds)")
    parser.add_argument("--groups", type=int, default=GROUPS, help="disjoint seed groups")
    parser.add_argument("--analyse", action="store_true", help="the stored predictions")
    parser.add_argument("--aa", action="store_true", help="A/A families at compare.seeds")
    args = parser.parse_args()
    if args.aa:
        main_aa(args.seeds, args.analyse)
    else:
        main([float(s) for s in args.strengths.split(",")], args.seeds, args.groups, args.analyse)
