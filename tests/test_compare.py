"""The ``compare`` stage: every model of a space over several seeds on the same folds, CIs, paired Δ
vs the baseline with verdicts (unadjusted and adjusted), main effects, tables and figures; the
same files on a re-run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.builders import mer, small_project

SPACE = {
    "attention": ["none", "se", "spatial", "mhsa"],
    "placement": [["streams"], ["fused"]],
    "heads": [1, 2],
}


def test_the_sweep_has_every_distinct_model_once() -> None:
    """Options only where a type uses them, placements where they fit, ``none`` once: no two
    models differ only in an option their layer ignores."""
    from components.config import Params, parse
    from components.evaluation.comparison import Sweep

    params = parse(Params, {"compare": {"space": SPACE}}, "params.yaml")
    sweep = Sweep.of(params)
    labels = [m.label for m in sweep.models]
    assert len(labels) == len(set(labels))
    assert labels[0] == "ststnet/none@-"  # the baseline first
    # se, spatial: 2 placements; mhsa: 2 placements × 2 head counts
    assert len(sweep.variants) == 2 + 2 + 4
    assert {m.label for m in sweep.variants if m.attention.type == "mhsa"} == {
        f"ststnet/mhsa@{p} h={h}" for p in ("streams", "fused") for h in (1, 2)
    }
    assert all(sweep.baseline_of[v].label == "ststnet/none@-" for v in sweep.variants)


def test_main_effects_are_the_mean_paired_delta_of_each_level() -> None:
    """Against a hand-computed case: three variants with known estimates and draws."""
    from components.evaluation.comparison import main_effects
    from components.statistics import Resampling

    rows = [
        {"attention": "se", "placement": "fused", "delta_uf1": 0.02},
        {"attention": "se", "placement": "streams", "delta_uf1": -0.04},
        {"attention": "cbam", "placement": "fused", "delta_uf1": 0.06},
    ]
    estimates = [0.02, -0.04, 0.06]
    draws = [
        np.array([0.01, 0.02, 0.03]),
        np.array([-0.05, -0.04, -0.03]),
        np.array([0.05, 0.06, 0.07]),
    ]
    effects = {
        (e["axis"], e["level"]): e
        for e in main_effects(rows, estimates, draws, Resampling(3, 3, 0, 0.95), 0.03)
    }
    assert set(effects) == {
        ("attention", "se"),
        ("attention", "cbam"),
        ("placement", "fused"),
        ("placement", "streams"),
    }
    fused = effects[("placement", "fused")]  # se@fused and cbam@fused
    assert fused["variants"] == 2 and fused["delta_uf1"] == pytest.approx(0.04)
    pooled = (draws[0] + draws[2]) / 2  # the same draw for both variants: paired
    assert fused["delta_uf1_ci_low"] == pytest.approx(np.percentile(pooled, 2.5), abs=1e-4)
    assert fused["delta_uf1_ci_high"] == pytest.approx(np.percentile(pooled, 97.5), abs=1e-4)
    assert effects[("attention", "se")]["delta_uf1"] == pytest.approx(-0.01)
    assert effects[("placement", "streams")]["verdict"] == "worse"
    assert effects[("attention", "cbam")]["verdict"] == "better"


def test_the_delta_intervals_carry_the_noise_between_training_seeds() -> None:
    """The sweep's whole-model seed variance is pooled over its models and widens every Δ
    interval (issue 24: without it, trained A/A replicates were called better or worse in 17%);
    the report's header says how much, or that one seed cannot measure it."""
    from components.config import Params, parse
    from components.evaluation.comparison import Sweep, compare, noise_statement
    from components.evaluation.simulation import World, seeded_frame
    from components.statistics import Resampling, TrainingNoise

    params = parse(Params, {"compare": {"space": {"attention": ["none", "se", "spatial"],
                                                   "placement": [["fused"]]}}}, "params.yaml")  # fmt: skip
    sweep = Sweep.of(params)
    confusions = World(seed_sd=0.3).seeded_confusions(np.random.default_rng(5), 40, (0.0,) * 3, 3)
    predictions = {}
    for model, confusion in zip(sweep.models, confusions, strict=True):
        frame = seeded_frame(confusion)
        frame["dataset"] = "casme2"
        predictions[model] = frame
    draw = Resampling(3, 1000, 0, 0.95)
    answers = compare(sweep, predictions, draw, "holm", 0.03)
    assert answers.noise.dof == 2 * 2 and answers.noise.kind == "differences"
    assert answers.noise.sd() > 0.01
    plain = compare_without_noise(sweep, predictions, draw)
    for row, narrow in zip(answers.rows[1:], plain, strict=True):
        assert row["delta_uf1_ci_high"] - row["delta_uf1_ci_low"] > narrow
    assert f"{answers.noise.dof} df" in noise_statement(answers.noise)
    assert "not measured" in noise_statement(TrainingNoise.none())


def test_an_interval_past_the_range_of_a_difference_is_cut_and_marked() -> None:
    """A ΔUF1 lies in [-1, 1]: an interval reaching past it (a noise estimate of 1 effective
    degree of freedom from 2 seeds gave [-3.958, +1.932]) is cut to the range, marked, and the
    table says the data cannot support it; an interval inside the range is left as it is."""
    from components.evaluation.comparison_report import CLIPPED, CLIPPED_NOTE, markdown
    from components.statistics import difference

    rng = np.random.default_rng(0)
    wide = difference(0.02, rng.standard_cauchy(2000) * 0.5, 0.95)
    assert (wide.low, wide.high) == (-1.0, 1.0) and wide.clipped
    narrow = difference(0.02, 0.02 + 0.01 * rng.standard_normal(2000), 0.95)
    assert -1 < narrow.low < 0.02 < narrow.high < 1 and not narrow.clipped
    row = {"model": "m", "uf1": 0.5, "uf1_ci_low": 0.4, "uf1_ci_high": 0.6, "uar": 0.5,
           "uar_ci_low": 0.4, "uar_ci_high": 0.6, "uf1_per_dataset": {}, "uf1_per_seed": {},
           "delta_uf1": 0.02, "delta_uf1_ci_low": -1.0, "delta_uf1_ci_high": 1.0,
           "delta_uf1_ci_clipped": True, "p": 0.9, "p_adjusted": 0.9, "mde_uf1": 2.0,
           "verdict": "inconclusive", "verdict_adjusted": "inconclusive"}  # fmt: skip
    text = markdown([row], [], "header", "holm", 0.03)
    assert f"+0.020 [-1.000, +1.000]{CLIPPED}" in text and CLIPPED_NOTE in text
    text = markdown([{**row, "delta_uf1_ci_clipped": False}], [], "header", "holm", 0.03)
    assert CLIPPED not in text


def compare_without_noise(sweep, predictions, draw) -> list[float]:
    """Each variant's Δ interval width from the subject bootstrap alone."""
    from components.statistics import paired_bootstrap

    subjects = sorted(next(iter(predictions.values())).subject_id.unique())
    widths = []
    for model in sweep.variants:
        delta = paired_bootstrap(
            predictions[model], predictions[sweep.baseline_of[model]], subjects, draw
        )["uf1"]
        widths.append(delta.high - delta.low)
    return widths


@pytest.mark.slow
def test_compare_stage_reports_every_model_with_verdicts_effects_and_figures(
    tmp_path: Path,
) -> None:
    small_project(
        tmp_path,
        subjects=6,
        compare={"space": {"attention": ["none", "se", "spatial"], "placement": [["streams"], ["fused"]]},
                 "seeds": "auto", "max_seeds": 2},  # seeds by need, capped at 2
        evaluate={"folds_per_unit": 3},
    )  # fmt: skip
    done = mer(tmp_path, "compare", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "reports/compare"
    found = json.loads((out / "comparison.json").read_text())
    rows = found["rows"]
    labels = [r["model"] for r in rows]
    assert labels == [
        "ststnet/none@-",
        "ststnet/se@streams",
        "ststnet/se@fused",
        "ststnet/spatial@streams",
        "ststnet/spatial@fused",
    ]
    baseline, *others = rows
    assert baseline["verdict"] == "baseline" and set(baseline["uf1_per_seed"]) == {"3", "4"}
    assert set(baseline["uf1_per_dataset"]) == {"casme2"}
    for row in others:
        assert row["delta_uf1_ci_low"] <= row["delta_uf1"] <= row["delta_uf1_ci_high"]
        assert row["delta_uf1"] == pytest.approx(row["uf1"] - baseline["uf1"], abs=2e-4)
        if row["delta_uf1_ci_low"] > 0 or row["delta_uf1_ci_high"] < 0:
            assert row["verdict"] == ("better" if row["delta_uf1_ci_low"] > 0 else "worse")
        else:  # inside the margin by TOST, or not resolved (the MDE says what could be)
            assert row["verdict"] in ("equivalent within ±0.03", "inconclusive")
            assert (row["verdict"] == "inconclusive") == (row["tost_p"] >= 0.05)
        assert row["mde_uf1"] > 0 and row["tost_p_adjusted"] >= row["tost_p"]
        assert row["p_adjusted"] >= row["p"]  # Holm never lowers a p-value
    effects = {(e["axis"], e["level"]) for e in found["effects"]}
    assert effects == {
        ("attention", "se"),
        ("attention", "spatial"),
        ("placement", "streams"),
        ("placement", "fused"),
    }
    table = (out / "comparison.md").read_text()
    for label in labels:
        assert label in table
        assert label in (out / "comparison.csv").read_text()
        assert label.replace("_", "\\_") in (out / "comparison.tex").read_text()
    assert list(pd.read_csv(out / "comparison.csv").model) == labels
    assert "Main effects" in table and "ΔUF1 [95% CI]" in table and "MDE (80%)" in table
    assert "equivalent within ±0.03 when its 90% interval" in table  # how to read it
    assert "noise between training seeds" in table and "4 df" in table  # 4 comparisons × 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variants"] == 4 and metrics["seeds"] == 2
    assert "Seeds by need (compare.seeds: auto): " in table  # the plan (its rules: below)
    calls = ("better", "worse", "equivalent", "inconclusive")
    assert sum(metrics[k] for k in calls) == 4 and metrics["max_mde_uf1"] > 0
    for figure in ("forest.png", "heatmap.png"):
        assert (out / figure).stat().st_size > 8_000
    assert "ststnet/se@fused" in done.stdout  # the table is printed too
    # recomputed, the compare stage writes the same bytes: tests/test_end_to_end.py's copy in
    # another folder runs it again from nothing and checks every output's hash in dvc.lock


def simulated_pairs(world, rng, subjects: int, variants: int, seeds: int):
    """(variant, baseline, arm names) of ``variants`` null variants against one baseline, each
    trained with ``seeds`` seeds in ``world``."""
    from components.evaluation.simulation import seeded_frame

    frames = [
        seeded_frame(c)
        for c in world.seeded_confusions(rng, subjects, (0.0,) * (variants + 1), seeds)
    ]
    return [(f, frames[0], (f"v{k}", "base")) for k, f in enumerate(frames[1:])]


def first_seeds(pairs, count: int):
    return [(v[v.seed < count], b[b.seed < count], arms) for v, b, arms in pairs]


def test_the_mde_predicted_for_more_seeds_is_the_one_they_measure() -> None:
    """Seeds by need rests on this: from 3 seeds, the largest MDE of a sweep with 8 is
    predicted within 15% of what 8 seeds then measure (the mean over 24 simulated sweeps with
    strong seed noise; 30 gave 0.97 ± 0.04 of it), and more seeds predict a smaller MDE down
    to the subjects' floor."""
    from components.evaluation.seed_plan import UNLIMITED, largest_mde
    from components.evaluation.simulation import World
    from components.statistics import Resampling, TrainingNoise

    world, rng = World(seed_sd=0.25), np.random.default_rng(11)
    predicted, measured = [], []
    for k in range(24):
        pairs = simulated_pairs(world, rng, 40, 3, 8)
        subjects = sorted(pairs[0][1].subject_id.unique())
        draw = Resampling(3, 500, k, 0.95)
        three = first_seeds(pairs, 3)
        noise = {
            len(these[0][0].seed.unique()): TrainingNoise.of_differences(
                [(v, b, arms[1]) for v, b, arms in these], subjects, draw
            )
            for these in (three, pairs)
        }
        predicted.append(largest_mde(three, subjects, draw, noise[3], 8))
        measured.append(largest_mde(pairs, subjects, draw, noise[8]))
        now = largest_mde(three, subjects, draw, noise[3])
        floor = largest_mde(three, subjects, draw, noise[3], UNLIMITED)
        assert now > predicted[-1] > floor > 0
    assert np.mean(predicted) == pytest.approx(np.mean(measured), rel=0.15)


def test_seeds_by_need_train_the_fewest_seeds_that_reach_the_resolution() -> None:
    """Enough already: no more seeds. Reachable: the fewest whose predicted MDE is within the
    target. Out of reach even with unlimited seeds: none (the subjects keep it above). Past
    the cap: the cap, said so. The further seeds are trained once, after the first three."""
    from components.evaluation.seed_plan import plan_seeds, predictions_by_need
    from components.evaluation.simulation import World
    from components.statistics import Resampling, TrainingNoise

    pairs = simulated_pairs(World(seed_sd=0.25), np.random.default_rng(3), 40, 3, 3)
    subjects = sorted(pairs[0][1].subject_id.unique())
    draw = Resampling(3, 500, 0, 0.95)
    noise = TrainingNoise.of_differences([(v, b, a[1]) for v, b, a in pairs], subjects, draw)

    def plan(target: float, cap: int = 30):
        return plan_seeds(pairs, subjects, draw, noise, target, cap)

    loose = plan(0.9)
    assert loose.seeds == 3 and loose.reached and "3 seeds reach" in loose.describe()
    between = (loose.measured_mde + loose.floor_mde) / 2
    chosen = plan(between)
    assert 3 < chosen.seeds <= 30 and chosen.reached and chosen.predicted_mde <= between
    fewer = plan_seeds(pairs, subjects, draw, noise, between, chosen.seeds - 1)
    assert fewer.seeds == chosen.seeds - 1 and not fewer.reached  # one less does not reach it
    assert "compare.max_seeds" in fewer.describe()
    unreachable = plan(loose.floor_mde * 0.9)
    assert unreachable.seeds == 3 and "out of reach" in unreachable.describe()

    calls = []

    def train(seeds):
        calls.append(seeds)
        frames = {"m": pairs[0][0][pairs[0][0].seed == 0]}
        return {m: pd.concat([f.assign(seed=s) for s in seeds]) for m, f in frames.items()}

    def measure(predictions):
        assert sorted(predictions["m"].seed.unique()) == [10, 11, 12]
        return chosen

    found, seeds, _ = predictions_by_need(train, list(range(10, 40)), measure)
    assert calls == [[10, 11, 12], list(range(13, 10 + chosen.seeds))]
    assert seeds == list(range(10, 10 + chosen.seeds))
    assert sorted(found["m"].seed.unique()) == seeds
