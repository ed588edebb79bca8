"""The evaluation protocol as units of work: which (variant, seed, folds) to train, and the
pooled predictions they give. Every choice (epoch, configuration) looks only at training
subjects: the epoch at each fold's validation subjects, the configuration (nested selection)
at grouped folds of the outer fold's training subjects."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.config import ModelConfig, TrainConfig
from components.datasets.labels import NUM_CLASSES
from components.evaluation.splits import Fold, grouped_kfold
from components.evaluation.units import (
    UnitContext,
    UnitProgress,
    UnitResult,
    UnitSpec,
    run_units,
)
from components.metrics import confusion_matrix, uf1


@dataclass(frozen=True)
class Execution:
    """Where and how units run."""

    context: UnitContext
    distributed: bool
    address: str | None
    max_failures: int
    folds_per_unit: int
    seeds_per_unit: int = 1
    progress: UnitProgress | None = None
    #: the fewest units a stage's plan is cut into (fold blocks shrink to reach it), so that a
    #: small dataset's one stack does not leave all cores but one idle
    min_units: int = 1

    def min_units_each(self, variants: int) -> int:
        """The fewest units each of ``variants`` configurations planned together is cut into."""
        return -(-self.min_units // max(variants, 1))


def blocks(
    folds: Sequence[Fold], size: int, train_samples: Sequence[int] | None = None
) -> list[tuple[Fold, ...]]:
    """Blocks of at most ``size`` folds, as even in count as possible. Given each fold's number
    of training samples, folds of similar size share a block: a stacked unit's epoch has as many
    steps as its largest fold needs, and a smaller fold's batches are padded to that (measured on
    the composite's 68 folds: 89% of the rows real in consecutive blocks, 95% in blocks by size).
    A fixed layout, a function of the folds alone: the same folds always share a unit, whatever
    cluster runs them. Each block lists its folds in their given order."""
    count = -(-len(folds) // size)
    bounds = np.linspace(0, len(folds), count + 1).round().astype(int)
    order = list(range(len(folds)))
    if train_samples is not None:
        order.sort(key=lambda i: (train_samples[i], i))
    return [
        tuple(folds[i] for i in sorted(order[a:b])) for a, b in itertools.pairwise(bounds) if b > a
    ]


def train_sizes(folds: Sequence[Fold], manifest: pd.DataFrame) -> list[int]:
    """Each fold's number of training samples (the rows of its training subjects)."""
    per_subject = manifest.subject_id.value_counts()
    return [int(sum(per_subject.get(s, 0) for s in fold.train)) for fold in folds]


#: a sweep's unit is split when it would cost more than this many times a unit of the sweep's
#: cheapest model (:func:`unit_shape`)
SPLIT_ABOVE = 2.0


def unit_shape(weight: float, folds_per_unit: int, seeds_per_unit: int) -> tuple[int, int]:
    """(folds, seeds) per unit of a model that costs ``weight`` times the sweep's cheapest per
    sample: a full unit's seeds × folds, cut so that no unit costs more than
    :data:`SPLIT_ABOVE` full units of the cheapest model — fold blocks shrink first, then seed
    groups (down to one seed and one fold). A costly variant then has many short units instead
    of a few long ones, which would end a sweep with one worker busy and the others idle."""
    if weight <= SPLIT_ABOVE:
        return folds_per_unit, seeds_per_unit
    members = max(1, math.floor(folds_per_unit * seeds_per_unit * SPLIT_ABOVE / weight))
    if members >= seeds_per_unit:
        return members // seeds_per_unit, seeds_per_unit
    return 1, members


def unit_specs(
    variant: ModelConfig,
    train: TrainConfig,
    seeds: Sequence[int],
    folds: Sequence[Fold],
    execution: Execution,
    manifest: pd.DataFrame,
    examples: dict[str, set[str]] | None = None,
    phase: str = "outer",
    weight: float = 1.0,
    min_units: int = 1,
) -> list[UnitSpec]:
    """The units of one variant: every group of ``execution.seeds_per_unit`` seeds × block of
    ``execution.folds_per_unit`` folds (:func:`blocks`, by training size), each unit one stack
    of its seeds × folds, both cut smaller for a variant of ``weight`` (its cost per sample
    over the sweep's cheapest model's) above :data:`SPLIT_ABOVE` (:func:`unit_shape`), and
    fold blocks cut further until there are ``min_units`` units (as far as the folds go); one
    seed and one fold per unit when the folds cannot stack (trained one by one, they gain
    nothing from sharing a unit, and single folds pack onto the cores). ``examples`` maps a
    subject to the example uids it holds (drawn by the first seed's fold that tests that
    subject). The layout is a function of the params and folds alone, never of the machine."""
    from components.models.registry import unstacked_because

    per_unit, seeds_per_unit = unit_shape(
        weight, execution.folds_per_unit, min(execution.seeds_per_unit, len(seeds))
    )
    seed_groups = -(-len(seeds) // seeds_per_unit)
    wanted_blocks = -(-min_units // seed_groups)
    per_unit = max(1, min(per_unit, -(-len(folds) // wanted_blocks)))
    if unstacked_because(variant.backbone, train.stack_folds) or train.devices > 1:
        per_unit = seeds_per_unit = 1
    specs = []
    layout = blocks(folds, per_unit, train_sizes(folds, manifest))
    for start in range(0, len(seeds), seeds_per_unit):
        group = tuple(seeds[start : start + seeds_per_unit])
        drawn = (examples or {}) if start == 0 else {}  # the first seed's folds draw them
        for block in layout:
            wanted = sorted(uid for fold in block for s in fold.test for uid in drawn.get(s, ()))
            specs.append(UnitSpec(variant, train, group, block, tuple(wanted), phase))
    return specs


def predictions_frame(results: Sequence[UnitResult], manifest: pd.DataFrame) -> pd.DataFrame:
    """Every test prediction of ``results`` (one row per seed × sample), joined with the
    manifest; checks that each seed predicts each sample of its folds exactly once."""
    rows = [
        {"seed": fold.seed, "fold": fold.fold.name, **p}
        for r in results
        for fold in r.folds
        for p in fold.predictions
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise AssertionError("the units predicted nothing")
    frame = frame.merge(
        manifest[["uid", "dataset", "subject_id", "label"]], on="uid", validate="m:1"
    )
    if frame.duplicated(["seed", "uid"]).any() or not (frame.true == frame.label).all():
        raise AssertionError(
            "predictions do not match the manifest (a sample twice, or a wrong label)"
        )
    return frame.drop(columns="label").sort_values(["seed", "uid"]).reset_index(drop=True)


@dataclass
class ProtocolRun:
    """What one protocol run of a variant (or a nested selection among candidates) produced."""

    predictions: pd.DataFrame  # one row per seed × sample
    units: list[UnitResult]
    folds: list[dict]  # per seed and outer fold: subjects, model, chosen epoch, inner scores
    inner_units: list[UnitResult] = field(default_factory=list)


def fold_report(result: UnitResult, scores: dict[str, list[float]] | None = None) -> list[dict]:
    return [
        {
            "seed": f.seed,
            "fold": f.fold.name,
            "test": list(f.fold.test),
            "validation": list(f.fold.validation),
            "train_subjects": len(f.fold.train),
            "model": result.spec.variant.as_dict(),
            "best_epoch": f.best_epoch,
            "epochs_run": f.epochs_run,
            "inner_uf1": (scores or {}).get(f.fold.name),
            "history": f.history,
        }
        for f in result.folds
    ]


def run_given(
    variant: ModelConfig,
    train: TrainConfig,
    seeds: Sequence[int],
    folds: Sequence[Fold],
    manifest: pd.DataFrame,
    execution: Execution,
    examples: dict[str, set[str]] | None = None,
) -> ProtocolRun:
    """The protocol for one given configuration."""
    specs = unit_specs(
        variant, train, seeds, folds, execution, manifest, examples, min_units=execution.min_units
    )
    results = _run(specs, execution, manifest)
    return ProtocolRun(
        predictions_frame(results, manifest),
        results,
        [row for r in results for row in fold_report(r)],
    )


def inner_folds(outer: Fold, k: int, validation_fraction: float, seed: int) -> list[Fold]:
    """Grouped folds over an outer fold's training subjects (its test subject never appears)."""
    subjects = [*outer.train, *outer.validation]
    inner = grouped_kfold(subjects, min(k, len(subjects)), validation_fraction, seed)
    return [Fold(f"{outer.name}/{f.name}", f.test, f.train, f.validation) for f in inner]


def inner_scores(
    candidates: Sequence[ModelConfig], folds: Sequence[Fold], inner_results, manifest
) -> dict[str, list[float]]:
    """Per outer fold, each candidate's UF1 pooled over that fold's inner folds (all seeds)."""
    truth = dict(zip(manifest.uid, manifest.label, strict=True))
    scores: dict[str, list[float]] = {o.name: [] for o in folds}
    for candidate in candidates:
        mine = [r for r in inner_results if r.spec.variant == candidate]
        for outer in folds:
            predicted = [
                (truth[p["uid"]], p["predicted"])
                for r in mine
                for f in r.folds
                if f.fold.name.startswith(f"{outer.name}/")
                for p in f.predictions
            ]
            labels, guesses = zip(*predicted, strict=True) if predicted else ((), ())
            scores[outer.name].append(uf1(confusion_matrix(labels, guesses, NUM_CLASSES)))
    return scores


def run_nested(
    candidates: Sequence[ModelConfig],
    train: TrainConfig,
    seeds: Sequence[int],
    folds: Sequence[Fold],
    manifest: pd.DataFrame,
    execution: Execution,
    inner_k: int,
    examples: dict[str, set[str]] | None = None,
) -> ProtocolRun:
    """Nested selection: per outer fold, each candidate's pooled UF1 over grouped folds of
    that fold's training subjects (all seeds pooled) picks the configuration; the outer fold
    then trains the pick."""
    seed0 = seeds[0]
    inner = {o.name: inner_folds(o, inner_k, train.validation_fraction, seed0) for o in folds}
    every_inner = [f for o in folds for f in inner[o.name]]
    inner_specs = [
        spec
        for candidate in candidates
        for spec in unit_specs(
            candidate,
            train,
            seeds,
            every_inner,
            execution,
            manifest,
            phase="inner",
            min_units=execution.min_units_each(len(candidates)),
        )
    ]
    inner_results = _run(inner_specs, execution, manifest)
    scores = inner_scores(candidates, folds, inner_results, manifest)
    chosen = {o.name: candidates[int(np.argmax(scores[o.name]))] for o in folds}
    outer_specs = []
    picked = [c for c in candidates if c in chosen.values()]
    for candidate in picked:
        mine = [o for o in folds if chosen[o.name] == candidate]
        least = execution.min_units_each(len(picked))
        outer_specs += unit_specs(
            candidate, train, seeds, mine, execution, manifest, examples, min_units=least
        )
    results = _run(outer_specs, execution, manifest)
    return ProtocolRun(
        predictions_frame(results, manifest),
        results,
        [row for r in results for row in fold_report(r, scores)],
        inner_results,
    )


def unit_cost(spec: UnitSpec, manifest: pd.DataFrame) -> int:
    """Rows a unit computes per epoch: its seeds × folds × its largest fold's training samples
    (a stacked unit pads every fold to that); its training time scales with it."""
    return len(spec.seeds) * len(spec.folds) * max(train_sizes(spec.folds, manifest), default=0)


def _run(
    specs: list[UnitSpec],
    execution: Execution,
    manifest: pd.DataFrame,
    weights: Mapping[ModelConfig, float] | None = None,
) -> list[UnitResult]:
    """Run ``specs``; each unit's expected cost is its rows × its model's weight (its cost per
    sample relative to the others'; 1 when not given)."""
    weights = weights or {}
    return run_units(
        specs,
        execution.context,
        distributed=execution.distributed,
        address=execution.address,
        max_failures=execution.max_failures,
        progress=execution.progress,
        costs=[unit_cost(s, manifest) * weights.get(s.variant, 1.0) for s in specs],
    )


def run_variants(
    variants: Sequence[ModelConfig],
    train: TrainConfig | Sequence[TrainConfig],
    seeds: Sequence[int],
    folds: Sequence[Fold],
    manifest: pd.DataFrame,
    execution: Execution,
) -> list[ProtocolRun]:
    """The protocol for several configurations (one training config for all, or one each),
    all their units submitted together (so a cluster packs them), on the same folds and seeds
    (so they can be compared pairwise). Each variant's units are sized and ordered by its
    forward FLOPs per sample over the cheapest variant's
    (:func:`~components.models.cost.relative_costs`): a costly one is split into more units,
    which start first."""
    from components.models.cost import relative_costs

    trains = [train] * len(variants) if isinstance(train, TrainConfig) else list(train)
    weights = relative_costs(variants, execution.context.input_sizes)
    least = execution.min_units_each(len(variants))
    specs = [
        unit_specs(v, t, seeds, folds, execution, manifest, weight=weights[v], min_units=least)
        for v, t in zip(variants, trains, strict=True)
    ]
    results = _run([s for group in specs for s in group], execution, manifest, weights)
    runs, start = [], 0
    for group in specs:
        mine = results[start : start + len(group)]
        start += len(group)
        runs.append(
            ProtocolRun(
                predictions_frame(mine, manifest),
                mine,
                [row for r in mine for row in fold_report(r)],
            )
        )
    return runs
