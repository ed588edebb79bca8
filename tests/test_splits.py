"""Split integrity on the real MEGC 2019 composite subject list (68 subjects)."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from components.evaluation.protocol import blocks, train_sizes
from components.evaluation.splits import grouped_kfold, loso_folds, validation_split
from tests.builders import megc_rows

SUBJECTS = sorted({f"{d}/{s}" for d in ("casme2", "samm", "smic") for s, _, _ in megc_rows(d)})


def test_the_composite_has_68_namespaced_subjects() -> None:
    assert len(SUBJECTS) == 68
    assert "samm/6" in SUBJECTS and "smic/s01" in SUBJECTS and "casme2/sub01" in SUBJECTS


def test_loso_tests_every_subject_once_and_never_trains_on_it() -> None:
    folds = loso_folds(SUBJECTS, 0.2, seed=1)
    assert len(folds) == 68
    assert sorted(s for f in folds for s in f.test) == SUBJECTS
    for fold in folds:
        test, train, validation = set(fold.test), set(fold.train), set(fold.validation)
        assert len(test) == 1
        assert not test & train and not test & validation and not train & validation
        assert train | validation | test == set(SUBJECTS)
        assert len(validation) == round(0.2 * 67)


def test_grouped_kfold_partitions_subjects() -> None:
    folds = grouped_kfold(SUBJECTS, 5, 0.2, seed=3)
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == SUBJECTS  # each subject tested exactly once
    assert {len(f.test) for f in folds} <= {13, 14}
    for fold in folds:
        assert not set(fold.test) & (set(fold.train) | set(fold.validation))
        assert not set(fold.train) & set(fold.validation)


def test_splits_are_seeded() -> None:
    assert loso_folds(SUBJECTS, 0.2, 7) == loso_folds(SUBJECTS, 0.2, 7)
    assert loso_folds(SUBJECTS, 0.2, 7) != loso_folds(SUBJECTS, 0.2, 8)
    assert grouped_kfold(SUBJECTS, 4, 0.2, 7) == grouped_kfold(SUBJECTS, 4, 0.2, 7)


def test_validation_split_edge_cases() -> None:
    assert validation_split(["a"], 0.5, 0, "k") == (("a",), ())
    assert validation_split(["a", "b"], 0.9, 0, "k")[1] != ()  # always one left to train
    assert len(validation_split(["a", "b"], 0.9, 0, "k")[0]) == 1
    with pytest.raises(ValueError, match="folds need"):
        grouped_kfold(["a", "b"], 3, 0.2, 0)


def composite_manifest() -> pd.DataFrame:
    """One row per clip of the real composite list (its subjects' clip counts)."""
    return pd.DataFrame(
        {"subject_id": [f"{d}/{s}" for d in ("casme2", "samm", "smic") for s, _, _ in megc_rows(d)]}
    )


def real_rows(block: tuple, sizes: dict[str, int], batch: int = 16) -> tuple[int, int]:
    """(real rows, computed rows) of one stacked unit's epoch, laid out as
    :func:`~components.training.schedule.unit_epoch` lays it out: each fold its own
    ceil(n / batch) steps of even size, the unit as many steps as its longest fold and as many
    rows as its widest step."""
    from components.training.schedule import fold_epoch, unit_epoch

    plans = [fold_epoch(np.arange(sizes[f.name]), batch, 0, 0, False, 0) for f in block]
    stacked = unit_epoch(plans)
    return int(stacked.mask.sum()), stacked.mask.size


def test_units_group_folds_of_similar_training_size() -> None:
    manifest = composite_manifest()
    assert len(manifest) == 441  # the list omits one clip of the composite's 442
    folds = loso_folds(SUBJECTS, 0.2, seed=42)
    sizes = train_sizes(folds, manifest)
    assert sizes[0] == int(manifest.subject_id.isin(folds[0].train).sum())
    by_size = blocks(folds, 17, sizes)
    consecutive = blocks(folds, 17)
    assert [len(b) for b in by_size] == [17] * 4
    assert sorted(f.name for b in by_size for f in b) == sorted(f.name for f in folds)
    position = {f.name: i for i, f in enumerate(folds)}
    for block in by_size:  # each block in the folds' own order
        assert [position[f.name] for f in block] == sorted(position[f.name] for f in block)
    size_of = dict(zip((f.name for f in folds), sizes, strict=True))
    for smaller, larger in itertools.pairwise(by_size):
        assert max(size_of[f.name] for f in smaller) <= min(size_of[f.name] for f in larger)
    assert consecutive == [tuple(folds[i : i + 17]) for i in range(0, 68, 17)]
    real, computed = map(sum, zip(*(real_rows(b, size_of) for b in by_size), strict=True))
    real_consecutive, computed_consecutive = map(
        sum, zip(*(real_rows(b, size_of) for b in consecutive), strict=True)
    )
    assert real == real_consecutive  # the same training, less padding
    assert computed < computed_consecutive
    assert blocks(folds, 17, sizes) == by_size  # a fixed layout


def units_with_a_recording_trainer(tmp_path, monkeypatch):
    """The composite's LOSO units of 17 folds, their context, a stand-in for ``run_unit``
    (patched in) that returns what a unit stores — one result per seed × fold, read back only
    if so — and the list of unit indices it was asked to train."""
    from components.config import ModelConfig, TrainConfig
    from components.evaluation import units as unit_module
    from components.evaluation.protocol import unit_specs

    manifest = composite_manifest()
    folds = loso_folds(SUBJECTS, 0.2, seed=42)
    specs = unit_specs(ModelConfig(), TrainConfig(), [1], folds, execution(17), manifest)
    context = unit_module.UnitContext(str(tmp_path), {}, "data", "code", str(tmp_path / "units"))
    started: list[int] = []

    def train(spec, context, node_id="local", report=None):
        started.append(specs.index(spec))
        folds = [
            unit_module.FoldResult(f, s, 0, 0, [], [], 0, 0) for s in spec.seeds for f in spec.folds
        ]
        return unit_module.UnitResult(spec.key("data", "code"), spec, folds, 0.0, node_id, 0, True)

    monkeypatch.setattr(unit_module, "run_unit", train)
    return specs, context, train, started


def test_the_costliest_units_start_first(tmp_path, monkeypatch) -> None:
    """run_units starts pending units by decreasing cost, returns results in spec order, and
    reads stored units back without training them."""
    from components.evaluation import units as unit_module
    from components.evaluation.protocol import unit_cost

    manifest = composite_manifest()
    specs, context, train, started = units_with_a_recording_trainer(tmp_path, monkeypatch)
    costs = [unit_cost(s, manifest) for s in specs]
    assert costs == sorted(costs)  # blocks by size: the last block is the costliest
    assert costs[0] == 17 * max(train_sizes(specs[0].folds, manifest))
    unit_module.UnitStore(context.units_dir).save(train(specs[2], context))
    started.clear()
    out = unit_module.run_units(
        specs, context, distributed=False, address=None, max_failures=0, costs=costs
    )
    assert started == [3, 1, 0]  # unit 2 was stored; the rest by decreasing cost
    assert [r.spec for r in out] == specs


def test_a_single_unit_left_with_no_cluster_trains_here(tmp_path, monkeypatch) -> None:
    """A distributed run with one unit to train and no cluster to attach to trains it in the
    stage's process (no local Ray started); several units, or a cluster, go to Ray."""
    import ray

    from components.evaluation import units as unit_module

    assert unit_module.runs_on_ray(2, True, None) and unit_module.runs_on_ray(1, True, "ray://h")
    assert not unit_module.runs_on_ray(1, True, None) and not unit_module.runs_on_ray(0, True, "a")
    assert not unit_module.runs_on_ray(5, False, "ray://h")  # --local
    specs, context, train, started = units_with_a_recording_trainer(tmp_path, monkeypatch)
    for spec in specs[1:]:
        unit_module.UnitStore(context.units_dir).save(train(spec, context))
    started.clear()
    out = unit_module.run_units(specs, context, distributed=True, address=None, max_failures=0)
    assert started == [0] and not ray.is_initialized()
    assert [r.node_id for r in out] == ["local"] * len(specs)


def test_progress_counts_a_retried_unit_once(tmp_path, monkeypatch) -> None:
    """A unit that fails after 3 fold-epochs and is trained again reports its epochs once:
    the progress ends at what the units trained (here 5 + 5), not with the failed 3 added."""
    from components.evaluation import units as unit_module

    specs, context, train, _ = units_with_a_recording_trainer(tmp_path, monkeypatch)
    for spec in specs[2:]:
        unit_module.UnitStore(context.units_dir).save(train(spec, context))
    failures = [specs[0]]

    def flaky(spec, context, node_id="local", report=None):
        report(3)
        if spec in failures:
            failures.remove(spec)
            raise RuntimeError("worker lost")
        report(2)
        return train(spec, context, node_id)

    class Seen(unit_module.UnitProgress):
        def __init__(self) -> None:
            self.counts: list[int] = []

        def epochs(self, done: int) -> None:
            self.counts.append(done)

    monkeypatch.setattr(unit_module, "run_unit", flaky)
    seen = Seen()
    unit_module.run_units(
        specs, context, distributed=False, address=None, max_failures=1, progress=seen
    )
    assert seen.counts[-1] == 10 and max(seen.counts) == 10  # the failed attempt's 3 not kept


def test_folds_that_cannot_stack_are_units_of_one_fold() -> None:
    """A stacked backbone's folds share units of folds_per_unit, and seeds share them by
    seeds_per_unit; folds trained one by one (no stacked form, stack_folds off, several
    devices) each get a unit of one seed, so they pack onto the cores."""
    from dataclasses import replace

    from components.config import AttentionConfig, ModelConfig, TrainConfig
    from components.evaluation.protocol import unit_cost, unit_specs

    manifest = composite_manifest()
    folds = loso_folds(SUBJECTS, 0.2, seed=42)
    stacked = unit_specs(ModelConfig(), TrainConfig(), [1, 2], folds, execution(17), manifest)
    assert len(stacked) == 2 * 4 and {len(s.folds) for s in stacked} == {17}
    assert [s.seeds for s in stacked] == [(1,)] * 4 + [(2,)] * 4
    seeds = unit_specs(ModelConfig(), TrainConfig(), [1, 2, 3], folds, execution(17, 2), manifest)
    assert [s.seeds for s in seeds] == [(1, 2)] * 4 + [(3,)] * 4
    assert [s.folds for s in seeds[:4]] == [s.folds for s in stacked[:4]]  # the same blocks
    assert unit_cost(seeds[0], manifest) == 2 * unit_cost(stacked[0], manifest)
    htnet = ModelConfig("htnet", AttentionConfig("none"), ())
    for model, train in (
        (htnet, TrainConfig()),
        (ModelConfig(), TrainConfig(stack_folds=False)),
        (ModelConfig(), replace(TrainConfig(), devices=2)),
    ):
        specs = unit_specs(model, train, [1, 2], folds, execution(17, 3), manifest)
        assert len(specs) == 2 * len(folds) and {len(s.folds) for s in specs} == {1}
        assert {s.seeds for s in specs} == {(1,), (2,)}


def test_only_the_first_seed_draws_the_attention_examples() -> None:
    """Each example is drawn once, by the unit holding the first seed and the fold that tests
    its subject (not once per seed)."""
    from components.config import ModelConfig, TrainConfig
    from components.evaluation.protocol import unit_specs

    manifest = composite_manifest()
    folds = loso_folds(SUBJECTS, 0.2, seed=42)
    subject = folds[5].test[0]
    examples = {subject: {"x/1", "x/2"}}
    for seeds_per_unit in (1, 2):
        specs = unit_specs(
            ModelConfig(), TrainConfig(), [1, 2, 3], folds, execution(17, seeds_per_unit),
            manifest, examples,
        )  # fmt: skip
        drawing = [s for s in specs if s.examples]
        assert len(drawing) == 1 and drawing[0].examples == ("x/1", "x/2")
        assert drawing[0].seeds[0] == 1 and any(subject in f.test for f in drawing[0].folds)


def execution(folds_per_unit: int, seeds_per_unit: int = 1, min_units: int = 1):
    from components.evaluation.protocol import Execution
    from components.evaluation.units import UnitContext

    context = UnitContext("records", {}, "data", "code", "units")
    return Execution(context, False, None, 0, folds_per_unit, seeds_per_unit, min_units=min_units)


@pytest.mark.parametrize(
    ("subjects", "seeds", "min_units", "variants", "shape"),
    [
        (10, 3, 4, 1, [(3, 3)] * 2 + [(2, 3)] * 2),  # the embedded default: 4 units, not 1
        (68, 3, 4, 1, [(17, 3)] * 4),  # the composite: 4 units of 17 folds anyway
        (10, 3, 4, 2, [(5, 3)] * 2),  # two variants planned together: 2 units each
        (10, 3, 4, 7, [(10, 3)]),  # a sweep: enough units without cutting
        (3, 3, 8, 1, [(1, 3)] * 3),  # never fewer than one fold per unit
        (10, 4, 4, 1, [(5, 3), (5, 3), (5, 1), (5, 1)]),  # two seed groups: 2 blocks each
    ],
)
def test_a_small_run_is_cut_into_at_least_min_units_units(
    subjects: int, seeds: int, min_units: int, variants: int, shape: list
) -> None:
    """A run's fold blocks shrink until it has ``min_units`` units (shared among the variants
    planned together), as far as its folds go; every seed × fold is trained exactly once."""
    from components.config import AttentionConfig, ModelConfig, TrainConfig
    from components.evaluation.protocol import unit_specs

    names = [f"s{i:02d}" for i in range(subjects)]
    manifest = pd.DataFrame({"subject_id": names, "uid": names})
    folds = loso_folds(names, 0.2, seed=42)
    seed_list = list(range(seeds))
    run = execution(17, 3, min_units)
    model = ModelConfig("ststnet", AttentionConfig("none"), ("fused",))
    specs = unit_specs(model, TrainConfig(), seed_list, folds, run, manifest,
                       min_units=run.min_units_each(variants))  # fmt: skip
    assert sorted(((len(s.folds), len(s.seeds)) for s in specs), reverse=True) == shape
    members = sorted((s, f.name) for spec in specs for s in spec.seeds for f in spec.folds)
    assert members == sorted((s, f.name) for s in seed_list for f in folds)


def test_a_costly_variant_is_split_into_units_no_costlier_than_the_cap() -> None:
    """A variant costing ``weight`` × the cheapest per sample gets fold blocks (then seed
    groups) cut so that a unit costs at most SPLIT_ABOVE full units of the cheapest model;
    every seed × fold is still trained exactly once."""
    from components.config import AttentionConfig, ModelConfig, TrainConfig
    from components.evaluation.protocol import SPLIT_ABOVE, unit_shape, unit_specs

    assert unit_shape(1.0, 17, 3) == (17, 3)
    assert unit_shape(SPLIT_ABOVE, 17, 3) == (17, 3)  # at the cap: not split
    assert unit_shape(2.3, 17, 3) == (14, 3)  # mhsa@fused: 44 members → 14 folds × 3 seeds
    assert unit_shape(11.0, 17, 3) == (3, 3)
    assert unit_shape(40.0, 17, 3) == (1, 2)  # fewer seeds once a fold is alone
    assert unit_shape(75.0, 17, 3) == (1, 1)
    assert unit_shape(1e6, 17, 3) == (1, 1)  # never below one member
    manifest = composite_manifest()
    folds = loso_folds(SUBJECTS, 0.2, seed=42)
    seeds = [1, 2, 3]
    model = ModelConfig("ststnet", AttentionConfig("mhsa"), ("streams",))
    for weight in (1.0, 2.3, 11.0, 40.0, 75.0):
        specs = unit_specs(model, TrainConfig(), seeds, folds, execution(17, 3), manifest,
                           weight=weight)  # fmt: skip
        members = [(s, f.name) for spec in specs for s in spec.seeds for f in spec.folds]
        assert sorted(members) == sorted((s, f.name) for s in seeds for f in folds)
        largest = max(len(spec.seeds) * len(spec.folds) for spec in specs)
        assert weight * largest <= max(SPLIT_ABOVE, weight) * 17 * 3
        assert largest == (51 if weight <= SPLIT_ABOVE else math.prod(unit_shape(weight, 17, 3)))


@pytest.mark.slow
def test_a_sweeps_units_are_sized_by_each_models_flops() -> None:
    """run_variants sizes units by forward FLOPs over the cheapest variant's: counted by
    TensorFlow's profiler (checked on a dense and a conv layer by hand), mhsa over STSTNet's
    28×28 streams costs tens of times the plain model, and pooled keys cut that."""
    import keras

    from components.config import AttentionConfig, ModelConfig
    from components.models.cost import forward_flops, relative_costs

    dense_in = keras.Input((4,))
    assert forward_flops(keras.Model(dense_in, keras.layers.Dense(3)(dense_in))) == 2 * 4 * 3 + 3
    conv_in = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(5, 3, use_bias=False)(conv_in)
    assert forward_flops(keras.Model(conv_in, conv)) == 2 * (4 * 4 * 5) * (3 * 3 * 2)
    none = ModelConfig("ststnet", AttentionConfig("none"), ())
    full = ModelConfig("ststnet", AttentionConfig("mhsa"), ("streams",))
    pooled = ModelConfig("ststnet", AttentionConfig("mhsa", max_keys=100), ("streams",))
    fused = ModelConfig("ststnet", AttentionConfig("mhsa"), ("fused",))
    weights = relative_costs([none, full, pooled, fused], {"flow_size": 28})
    assert weights[none] == 1.0
    assert weights[full] > 50 and 5 < weights[pooled] < weights[full] / 5
    assert 1.5 < weights[fused] < 3
