"""Subject-level bootstrap, paired comparisons and McNemar, checked against hand-computed cases
and independent computations (scikit-learn, statsmodels, a naive resampling loop)."""

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, recall_score

from components.metrics import confusion_matrix, uar, uf1
from components.statistics import (
    Resampling,
    bootstrap,
    draws,
    majority_predictions,
    mcnemar_between,
    mcnemar_exact,
    paired_bootstrap,
    seed_mean_metrics,
    subject_confusions,
    uf1_uar,
    verdict,
)


def frame(rows: list[tuple], seed: int = 0) -> pd.DataFrame:
    """(subject, uid, true, predicted) rows as a predictions frame."""
    out = pd.DataFrame(rows, columns=["subject_id", "uid", "true", "predicted"])
    out["seed"] = seed
    for k in range(3):
        out[f"p_{k}"] = (out.predicted == k).astype(float)
    return out


def random_frame(
    rng: np.random.Generator, subjects: int = 12, seeds=(0,), skill: float = 0.6
) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for s in range(subjects):
            for k in range(int(rng.integers(2, 8))):
                true = int(rng.integers(0, 3))
                predicted = true if rng.uniform() < skill else int(rng.integers(0, 3))
                rows.append((f"d/s{s:02d}", f"d/s{s:02d}/c{k}", true, predicted, seed))
    out = pd.DataFrame(rows, columns=["subject_id", "uid", "true", "predicted", "seed"])
    for k in range(3):
        out[f"p_{k}"] = (out.predicted == k).astype(float)
    return out


def test_vectorised_metrics_agree_with_the_protocol_and_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth, guess = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        matrix = confusion_matrix(truth, guess, 3)
        f1, recall = uf1_uar(matrix)
        assert f1 == pytest.approx(uf1(matrix)) and recall == pytest.approx(uar(matrix))
        if len(set(truth)) == 3:
            assert f1 == pytest.approx(
                f1_score(truth, guess, average="macro", labels=[0, 1, 2], zero_division=0)
            )
            assert recall == pytest.approx(
                recall_score(truth, guess, average="macro", labels=[0, 1, 2])
            )


def test_two_subject_bootstrap_takes_only_the_hand_computed_values() -> None:
    """Subjects A and B: every draw is AA, BB (each subject's own UF1, doubling changes no
    ratio) or AB/BA (the pooled UF1). The estimate is the pooled UF1."""
    rows = [
        ("A", "A1", 0, 0),
        ("A", "A2", 1, 1),
        ("A", "A3", 2, 1),
        ("B", "B1", 0, 1),
        ("B", "B2", 1, 1),
        ("B", "B3", 2, 2),
    ]
    data = frame(rows)
    a = uf1(confusion_matrix([0, 1, 2], [0, 1, 1], 3))  # F1: 1, 2/3, undefined→0: (1 + .667 + 0)/3
    b = uf1(confusion_matrix([0, 1, 2], [1, 1, 2], 3))
    both = uf1(confusion_matrix([0, 1, 2, 0, 1, 2], [0, 1, 1, 1, 1, 2], 3))
    assert a == pytest.approx((1 + 2 / 3 + 0) / 3)
    result = bootstrap(
        data, ["A", "B"], Resampling(classes=3, resamples=500, seed=1, confidence=0.95)
    )
    assert result["uf1"].estimate == pytest.approx(both)
    per_subject = subject_confusions(data, ["A", "B"], [0], 3)
    values, _ = seed_mean_metrics(per_subject, draws(2, 500, 1))
    assert set(np.round(values, 9)) <= set(np.round([a, b, both], 9))
    # a quarter of the draws are AA, a quarter BB, half mixed: the 95% interval spans them all
    assert result["uf1"].low == pytest.approx(min(a, b, both))
    assert result["uf1"].high == pytest.approx(max(a, b, both))


def test_bootstrap_matches_a_naive_resampling_loop() -> None:
    """The vectorised draw equals concatenating the drawn subjects' rows and scoring them with
    scikit-learn, draw for draw (two seeds: the mean of the seeds' scores)."""
    rng = np.random.default_rng(3)
    data = random_frame(rng, subjects=9, seeds=(0, 1))
    subjects = sorted(data.subject_id.unique())
    counts = draws(len(subjects), 50, seed=7)
    fast, _ = seed_mean_metrics(subject_confusions(data, subjects, [0, 1], 3), counts)
    for r in range(50):
        scores = []
        for seed in (0, 1):
            mine = data[data.seed == seed]
            picked = pd.concat(
                [
                    mine[mine.subject_id == s]
                    for s, c in zip(subjects, counts[r], strict=True)
                    for _ in range(c)
                ]
            )
            scores.append(
                f1_score(
                    picked.true,
                    picked.predicted,
                    average="macro",
                    labels=sorted(set(picked.true) | set(picked.predicted)),
                )
            )
        assert fast[r] == pytest.approx(np.mean(scores))


def test_paired_differences_and_verdicts() -> None:
    rng = np.random.default_rng(5)
    base = random_frame(rng, subjects=15, skill=0.3)
    subjects = sorted(base.subject_id.unique())

    def delta(variant: pd.DataFrame, baseline: pd.DataFrame):
        return paired_bootstrap(variant, baseline, subjects, Resampling(3, 300, 1, 0.95))["uf1"]

    same = delta(base, base)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    assert verdict(same) == "no detectable difference"
    perfect = base.assign(predicted=base.true)
    assert delta(perfect, base).low > 0 and verdict(delta(perfect, base)) == "better"
    assert verdict(delta(base, perfect)) == "worse"


def test_mcnemar_exact_by_hand_and_against_statsmodels() -> None:
    from statsmodels.stats.contingency_tables import mcnemar

    variant = np.array([True] * 5 + [False] * 1 + [True] * 10 + [False] * 4)
    baseline = np.array([False] * 5 + [True] * 1 + [True] * 10 + [False] * 4)
    result = mcnemar_exact(variant, baseline)
    assert (result.variant_only, result.baseline_only) == (5, 1)
    assert result.p_value == pytest.approx(2 * (1 + 6) / 2**6)  # 2·P(X ≤ 1), X ~ Bin(6, ½)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a, b = rng.uniform(size=40) < rng.uniform(), rng.uniform(size=40) < rng.uniform()
        table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
        assert mcnemar_exact(a, b).p_value == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert mcnemar_exact(variant, variant).p_value == 1.0


def test_majority_vote_over_seeds_breaks_ties_by_probability() -> None:
    rows = []
    for seed, (predicted, p) in enumerate([(0, [0.6, 0.4, 0]), (1, [0.45, 0.55, 0])]):
        rows.append(
            {
                "uid": "x",
                "seed": seed,
                "true": 1,
                "predicted": predicted,
                "p_0": p[0],
                "p_1": p[1],
                "p_2": p[2],
            }
        )
    votes = majority_predictions(pd.DataFrame(rows))
    assert votes["x"] == 0  # one vote each; mean p_0 0.525 > p_1 0.475
    data = pd.DataFrame(rows * 1).assign(subject_id="s")
    assert mcnemar_between(data, data).p_value == 1.0


def test_every_draw_is_a_multiset_of_the_subjects() -> None:
    counts = draws(7, 100, seed=2)
    assert counts.shape == (100, 7) and (counts.sum(1) == 7).all()
    assert not np.array_equal(counts, draws(7, 100, seed=3))
    np.testing.assert_array_equal(counts, draws(7, 100, seed=2))
    # over many draws each subject is drawn once on average
    assert abs(draws(7, 4000, seed=4).mean() - 1) < 0.02
    assert list(itertools.islice(counts.flat, 1))  # non-empty


@pytest.mark.slow
def test_bootstrap_intervals_cover_the_truth_at_their_nominal_rate() -> None:
    """Issue 24: with a known truth (simulated protocol predictions of 68 subjects, subjects
    far more different than clips), the 95% subject-bootstrap intervals of UF1 and UAR and the
    paired interval of ΔUF1 contain the truth in 95% of simulations, and an A/A comparison (the
    same configuration, another draw of its noise) is called better or worse in 5%: within three
    binomial standard errors of the number of simulations."""
    import math

    from components.evaluation.simulation import World, predictions_frame
    from components.statistics import Resampling, bootstrap, paired_bootstrap, verdict

    world, simulations, effect = World(), 300, 0.3
    true_uf1, true_uar = world.truth(0.0)
    true_delta = world.truth(effect)[0] - true_uf1
    assert 0.6 < true_uf1 < 0.8 and true_delta > 0.03  # a regime like real MER
    rng = np.random.default_rng(7)
    covered = {"uf1": 0, "uar": 0, "delta": 0}
    false_calls = 0
    for k in range(simulations):
        baseline, better, again = (
            predictions_frame(c) for c in world.confusions(rng, 68, (0.0, effect, 0.0))
        )
        subjects = sorted(baseline.subject_id.unique())
        resampling = Resampling(3, 1000, k, 0.95)
        single = bootstrap(baseline, subjects, resampling)
        covered["uf1"] += single["uf1"].low <= true_uf1 <= single["uf1"].high
        covered["uar"] += single["uar"].low <= true_uar <= single["uar"].high
        delta = paired_bootstrap(better, baseline, subjects, resampling)["uf1"]
        covered["delta"] += delta.low <= true_delta <= delta.high
        false_calls += verdict(paired_bootstrap(again, baseline, subjects, resampling)["uf1"]) != (
            "no detectable difference"
        )
    tolerance = 3 * math.sqrt(0.95 * 0.05 / simulations)  # three binomial standard errors
    for name, count in covered.items():
        assert abs(count / simulations - 0.95) <= tolerance, (name, count / simulations)
    assert abs(false_calls / simulations - 0.05) <= tolerance, false_calls / simulations


@pytest.mark.slow
def test_training_noise_keeps_the_a_a_rate_at_its_nominal_level() -> None:
    """Issue 24: when every trained model of a configuration is shifted as a whole by its seed
    (what the trained A/A replicates showed), the subject bootstrap alone calls a configuration
    better or worse than itself far beyond 5%; with the pooled training noise added, the A/A
    rate and the coverage of the true Δ are nominal within three binomial standard errors."""
    import math

    from components.evaluation.simulation import World, seeded_frame
    from components.statistics import Resampling, TrainingNoise, paired_bootstrap, verdict

    world, simulations, effect = World(seed_sd=0.15), 200, 0.3
    true_delta = World().truth(effect)[0] - World().truth(0.0)[0]
    rng = np.random.default_rng(7)
    plain = with_noise = covered = 0
    for k in range(simulations):
        baseline, better, again = (
            seeded_frame(c) for c in world.seeded_confusions(rng, 68, (0.0, effect, 0.0), 3)
        )
        subjects = sorted(baseline.subject_id.unique())
        resampling = Resampling(3, 1000, k, 0.95)
        noise = TrainingNoise.pooled([baseline, better, again], subjects, resampling)
        assert noise.dof == 6 and 1 <= noise.effective_dof <= 6
        plain += verdict(paired_bootstrap(again, baseline, subjects, resampling)["uf1"]) != (
            "no detectable difference"
        )
        aa = paired_bootstrap(again, baseline, subjects, resampling, noise, ("again", "base"))
        with_noise += verdict(aa["uf1"]) != "no detectable difference"
        delta = paired_bootstrap(better, baseline, subjects, resampling, noise, ("b", "base"))
        covered += delta["uf1"].low <= true_delta <= delta["uf1"].high
    tolerance = 3 * math.sqrt(0.95 * 0.05 / simulations)
    assert plain / simulations > 0.05 + tolerance, plain / simulations  # the problem is real
    assert abs(with_noise / simulations - 0.05) <= tolerance, with_noise / simulations
    assert abs(covered / simulations - 0.95) <= tolerance, covered / simulations


def test_training_noise_is_the_seed_spread_the_bootstrap_does_not_carry() -> None:
    """Identical seeds: no noise; one seed per arm: not measured; a whole-model shift between
    seeds: its variance comes back (the clip-level part is left to the bootstrap)."""
    from components.evaluation.simulation import World, predictions_frame, seeded_frame
    from components.statistics import Resampling, TrainingNoise

    rng = np.random.default_rng(3)
    one = World().confusions(rng, 68, (0.0,))[0]
    same = pd.concat([predictions_frame(one, seed=s) for s in range(3)])
    subjects = sorted(same.subject_id.unique())
    resampling = Resampling(3, 500, 1, 0.95)
    assert TrainingNoise.pooled([same], subjects, resampling).variance == {"uf1": 0.0, "uar": 0.0}
    single = predictions_frame(one)
    assert TrainingNoise.pooled([single], subjects, resampling).dof == 0
    shifted = World(seed_sd=0.4, seed_subject_sd=0.0)
    calm = World(seed_sd=0.0, seed_subject_sd=0.0)
    frames = {
        name: [seeded_frame(c) for c in w.seeded_confusions(rng, 68, (0.0,) * 8, 3)]
        for name, w in (("shifted", shifted), ("calm", calm))
    }
    loud = TrainingNoise.pooled(frames["shifted"], subjects, resampling)
    quiet = TrainingNoise.pooled(frames["calm"], subjects, resampling)
    assert loud.dof == quiet.dof == 16
    # a 0.4 log-odds shift moves UF1 by about 0.4 × p(1 − p) ≈ 0.07 at p ≈ 0.77
    assert 0.04 < loud.sd() < 0.11, loud.sd()
    assert quiet.sd() < 0.02, quiet.sd()  # only clip-level noise: mostly the bootstrap's


def test_holm_and_benjamini_hochberg_agree_with_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    from components.statistics import benjamini_hochberg, holm

    rng = np.random.default_rng(3)
    for p in (rng.uniform(size=12), np.array([0.01, 0.04, 0.03, 0.005, 0.2, 0.04]), np.ones(3)):
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], atol=1e-12)
        np.testing.assert_allclose(
            benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], atol=1e-12
        )


def test_the_bootstrap_p_value_matches_the_interval() -> None:
    """p < 1 - confidence exactly when the percentile interval excludes 0."""
    from components.statistics import bootstrap_p_value, percentile_interval

    rng = np.random.default_rng(4)
    for centre in (-0.05, -0.01, 0.0, 0.02, 0.06):
        draws = rng.normal(centre, 0.02, size=4000)
        low, high = percentile_interval(draws, 0.95)
        assert (bootstrap_p_value(draws) < 0.05) == (low > 0 or high < 0)


def test_the_seed_ensemble_averages_probabilities_and_is_reported_beside_the_mean() -> None:
    """Two seeds that disagree: the ensemble takes the class of the higher mean probability
    (not a vote), and summarise reports it as its own subset only with several seeds."""
    from components.evaluation.report import ENSEMBLE, ensemble_predictions, resampling, summarise

    rows = []
    for seed, p in ((1, [0.6, 0.4, 0.0]), (2, [0.0, 0.7, 0.3])):  # means 0.3 / 0.55 / 0.15
        for k in range(6):
            rows.append({"seed": seed, "uid": f"s{k}/c", "subject_id": f"s{k}",
                         "dataset": "casme2", "true": 1, "p_0": p[0], "p_1": p[1],
                         "p_2": p[2], "predicted": int(np.argmax(p))})  # fmt: skip
    frame = pd.DataFrame(rows)
    members = ensemble_predictions(frame)
    assert len(members) == 6 and (members.predicted == 1).all() and (members.seed == -1).all()
    np.testing.assert_allclose(members[["p_0", "p_1", "p_2"]].to_numpy()[0], [0.3, 0.55, 0.15])
    summary = summarise(frame, resampling(200, 0, 0.95))
    assert summary[ENSEMBLE]["accuracy"] == 1.0 and summary["composite"]["accuracy"] == 0.5
    assert ENSEMBLE not in summarise(frame[frame.seed == 1], resampling(200, 0, 0.95))


def test_per_class_f1_intervals_match_a_naive_resampling_loop() -> None:
    """The vectorised per-class F1 bootstrap against scikit-learn's F1 on each drawn set of
    subjects (the same draws), and the results table carries it."""
    from sklearn.metrics import f1_score

    from components.evaluation.report import (
        per_class_f1_intervals,
        resampling,
        results_table,
        summarise,
    )
    from components.evaluation.simulation import World, predictions_frame

    frame = predictions_frame(World().confusions(np.random.default_rng(4), 12, (0.0,))[0])
    frame["dataset"] = "casme2"
    subjects = sorted(frame.subject_id.unique())
    draw = resampling(200, 3, 0.95)
    found = per_class_f1_intervals(frame, subjects, draw)
    by_subject = {s: g for s, g in frame.groupby("subject_id")}
    naive = []
    for counts in draw.draws(len(subjects)):
        picked = pd.concat(
            [by_subject[s] for s, c in zip(subjects, counts, strict=True) for _ in range(c)]
        )
        naive.append(f1_score(picked.true, picked.predicted, average=None, labels=[0, 1, 2]))
    low, high = np.percentile(np.array(naive), [2.5, 97.5], axis=0)
    for k, name in enumerate(("negative", "positive", "surprise")):
        assert found[name] == pytest.approx([low[k], high[k]], abs=1e-4)
    table = results_table(summarise(frame, draw))
    assert list(table.subset) == ["composite", "casme2"]
    assert (
        table.loc[0, "F1 surprise CI"]
        == f"[{found['surprise'][0]:.3f}, {found['surprise'][1]:.3f}]"
    )


def test_the_mde_is_the_true_difference_called_with_80_percent_power() -> None:
    """For a normal sampling distribution (SE known) the MDE is (z₀.₉₇₅ + z₀.₈) × SE, and a true
    Δ of that size is called "better" in 80% of replicated comparisons."""
    from scipy.stats import norm

    from components.statistics import Resolution, difference

    rng = np.random.default_rng(3)
    se = 0.02
    mde = Resolution.of(0.01 + se * rng.standard_normal(200_000), 0.95, 0.03).mde
    assert mde == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) * se, rel=0.01)
    replicates = 2000
    estimates = mde + se * rng.standard_normal(replicates)  # the truth is the MDE
    called = sum(difference(e, e + se * rng.standard_normal(1000), 0.95).low > 0 for e in estimates)
    assert abs(called / replicates - 0.80) < 0.03


def test_equivalence_is_two_one_sided_tests_against_the_margin() -> None:
    """Inside ±margin by its 90% interval: equivalent, TOST p below 5%; a true Δ at the margin
    is called equivalent in at most 5% of replicates (the test's size); four-way calls."""
    from components.statistics import Interval, Resolution, call

    rng = np.random.default_rng(4)
    noise = 0.01 * rng.standard_normal(20_000)
    tight = Resolution.of(noise, 0.95, 0.03)
    assert tight.equivalent and tight.tost_p < 0.01 and -0.03 < tight.low < tight.high < 0.03
    near = Resolution.of(0.025 + noise, 0.95, 0.03)
    assert not near.equivalent and near.tost_p == pytest.approx(0.31, abs=0.02)  # Φ(−0.5)
    at_margin = [Resolution.of(e + noise[:2000], 0.95, 0.03).equivalent
                 for e in 0.03 + 0.01 * rng.standard_normal(1000)]  # fmt: skip
    assert np.mean(at_margin) <= 0.065  # nominal 5% (binomial sd 0.7%)
    zero_in = Interval(0.01, -0.01, 0.03)
    assert call(zero_in, tight) == "equivalent within ±0.03"
    assert call(zero_in, near) == "inconclusive"
    assert call(Interval(0.02, 0.005, 0.035), tight) == "better"  # a call before equivalence
    assert call(Interval(-0.02, -0.035, -0.005), near) == "worse"


def test_the_noise_of_paired_differences_is_the_spread_of_the_per_seed_deltas() -> None:
    """Against a reference computation (scikit-learn's macro F1 per seed): each arm gets half
    the pooled variance of the per-seed paired ΔUF1; pairs sharing a baseline count fewer
    effective degrees of freedom; what the arms share with a seed cancels."""
    from sklearn.metrics import f1_score

    from components.evaluation.simulation import World, seeded_frame
    from components.statistics import Resampling, TrainingNoise

    rng = np.random.default_rng(8)
    frames = [
        seeded_frame(c) for c in World(seed_sd=0.3).seeded_confusions(rng, 30, (0.0, 0.2, 0.0), 3)
    ]
    subjects = sorted(frames[0].subject_id.unique())
    draw = Resampling(3, 200, 0, 0.95)
    noise = TrainingNoise.of_differences(
        [(f, frames[0], "base") for f in frames[1:]], subjects, draw
    )

    def uf1(frame, seed):
        rows = frame[frame.seed == seed]
        return f1_score(rows.true, rows.predicted, average="macro")

    spread = 0.0
    for arm in frames[1:]:
        deltas = np.array([uf1(arm, s) - uf1(frames[0], s) for s in range(3)])
        spread += float(((deltas - deltas.mean()) ** 2).sum())
    assert noise.kind == "differences" and noise.dof == 2 * 2
    assert noise.variance["uf1"] == pytest.approx(spread / 4 / 2, rel=1e-9)
    assert noise.effective_dof == int(4 / (1 + 1 / 4))  # two pairs share one baseline
    apart = TrainingNoise.of_differences(
        [(frames[1], frames[0], "a"), (frames[2], frames[0].copy(), "b")], subjects, draw
    )
    assert apart.effective_dof == 4  # each its own baseline
    twin = frames[0].copy()  # an arm that shares every seed's noise with its baseline
    assert TrainingNoise.of_differences([(twin, frames[0], "base")], subjects, draw).variance[
        "uf1"
    ] == pytest.approx(0.0, abs=1e-12)
