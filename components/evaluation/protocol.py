"""Train-and-predict over subject folds: the loop shared by ``evaluate``, ``tune`` and
``register``. Every choice (epoch, configuration) looks only at training subjects."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from components.config import ModelConfig, PreprocessConfig, TrainConfig
from components.evaluation.metrics import confusion_matrix, uf1
from components.evaluation.splits import Fold, grouped_kfold
from components.models.backbones import BACKBONES
from components.records.files import MANIFEST, read_table, shard_paths
from components.training.data import finish, record_source
from components.training.fit import TrainResult, predict_labels, train_model
from components.training.runtime import seed_everything

SOURCES_KEPT = 4


@dataclass
class ExperimentData:
    """The preprocessed records: shards, the manifest, and the input sizes they hold."""

    shards: list[str]
    manifest: pd.DataFrame
    preprocess: PreprocessConfig
    _sources: OrderedDict = field(default_factory=OrderedDict, repr=False)  # recent sources

    @classmethod
    def load(cls, cfg: PreprocessConfig) -> ExperimentData:
        shards = shard_paths(cfg.records_dir)
        if not shards:
            raise FileNotFoundError(f"no record shards in {cfg.records_dir}: run `mer preprocess`")
        manifest = read_table(f"{cfg.records_dir}/{MANIFEST}").to_pandas()
        return cls(shards, manifest, cfg)

    @property
    def subjects(self) -> list[str]:
        return sorted(self.manifest.subject_id.unique())

    def input_kind(self, model_cfg: ModelConfig) -> str:
        return BACKBONES[model_cfg.backbone].input_kind

    def input_shape(self, kind: str) -> tuple[int, ...]:
        p = self.preprocess
        return (
            (p.flow_size, p.flow_size, 3)
            if kind == "flow"
            else (p.clip_frames, p.clip_size, p.clip_size, 1)
        )

    @property
    def input_sizes(self) -> dict[str, int]:
        p = self.preprocess
        return {"flow_size": p.flow_size, "clip_frames": p.clip_frames, "clip_size": p.clip_size}

    def rows(self, subjects: Sequence[str]) -> pd.DataFrame:
        return self.manifest[self.manifest.subject_id.isin(set(subjects))].sort_values("uid")

    def dataset(
        self,
        subjects: Sequence[str],
        kind: str,
        batch: int,
        *,
        train_cfg: TrainConfig | None = None,
        seed: int = 0,
        with_ids: bool = False,
    ) -> tf.data.Dataset:
        """Records of ``subjects``; with ``train_cfg``, shuffled and augmented for training.
        The parsed, cached source is built once per (subjects, kind) and reused, so a new
        ``seed`` (e.g. one per epoch) re-reads no file."""
        training = train_cfg is not None
        if training and with_ids:
            raise ValueError("with_ids is for evaluation data")
        key = (tuple(sorted(set(subjects))), kind, with_ids)
        if key not in self._sources:
            shape = self.input_shape(kind)
            self._sources[key] = record_source(self.shards, key[0], kind, shape, with_ids)
            while len(self._sources) > SOURCES_KEPT:  # one fold uses 3; bound the caches' memory
                self._sources.popitem(last=False)
        self._sources.move_to_end(key)
        return finish(
            self._sources[key],
            kind,
            batch,
            training=training,
            seed=seed,
            flip=training and train_cfg.augment_flip,
            shift_px=train_cfg.augment_shift_px if training else 0,
            size=len(self.rows(subjects)),
        )


def fit_on_subjects(
    data: ExperimentData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_subjects: Sequence[str],
    validation_subjects: Sequence[str],
    *,
    strategy: tf.distribute.Strategy,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train on ``train_subjects``; epoch chosen on ``validation_subjects`` (if any)."""
    seed_everything(seed)
    kind = data.input_kind(model_cfg)
    batch = train_cfg.batch_size * strategy.num_replicas_in_sync
    train = data.dataset(train_subjects, kind, batch, train_cfg=train_cfg, seed=seed)
    validation = data.dataset(validation_subjects, kind, 64) if validation_subjects else None
    return train_model(
        model_cfg,
        train_cfg,
        train,
        validation,
        data.rows(train_subjects).label.to_numpy(),
        strategy=strategy,
        input_sizes=data.input_sizes,
        callbacks=callbacks,
    )


def inner_selection(
    data: ExperimentData,
    candidates: Sequence[ModelConfig],
    train_cfg: TrainConfig,
    subjects: Sequence[str],
    inner_folds: int,
    *,
    strategy: tf.distribute.Strategy,
    seed: int,
) -> tuple[int, list[float]]:
    """Nested selection: each candidate's pooled UF1 over grouped folds of ``subjects`` only
    (an outer fold's training subjects). Returns (best index, scores)."""
    folds = grouped_kfold(
        subjects, min(inner_folds, len(set(subjects))), train_cfg.validation_fraction, seed
    )
    scores = []
    for candidate in candidates:
        truth, predicted = [], []
        for k, fold in enumerate(folds):
            result = fit_on_subjects(
                data,
                candidate,
                train_cfg,
                fold.train,
                fold.validation,
                strategy=strategy,
                seed=seed + k,
            )
            out = predict_labels(
                result.model, data.dataset(fold.test, data.input_kind(candidate), 64)
            )
            truth.extend(out.truth)
            predicted.extend(out.predicted)
        scores.append(uf1(confusion_matrix(truth, predicted, 3)))
    return int(np.argmax(scores)), scores


@dataclass
class FoldOutcome:
    """What one outer fold produced."""

    fold: Fold
    model_cfg: ModelConfig
    result: TrainResult
    predictions: pd.DataFrame
    selection_scores: list[float] | None


def run_folds(
    data: ExperimentData,
    folds: Sequence[Fold],
    candidates: Sequence[ModelConfig],
    train_cfg: TrainConfig,
    *,
    selection: str,
    inner_folds: int,
    strategy: tf.distribute.Strategy,
    seed: int,
    on_fold_start: Callable[[int, Fold], Sequence[keras.callbacks.Callback]] | None = None,
    on_fold_end: Callable[[int, FoldOutcome], None] | None = None,
) -> list[FoldOutcome]:
    """For each outer fold: choose the configuration (``given``: the first candidate;
    ``nested``: :func:`inner_selection` on the fold's training subjects), train with epoch
    selection on the fold's validation subjects, predict the test subjects."""
    outcomes = []
    for index, fold in enumerate(folds):
        scores = None
        chosen = candidates[0]
        if selection == "nested" and len(candidates) > 1:
            best, scores = inner_selection(
                data,
                candidates,
                train_cfg,
                fold.train + fold.validation,
                inner_folds,
                strategy=strategy,
                seed=seed + 1000 * index,
            )
            chosen = candidates[best]
        callbacks = on_fold_start(index, fold) if on_fold_start else ()
        result = fit_on_subjects(
            data,
            chosen,
            train_cfg,
            fold.train,
            fold.validation,
            strategy=strategy,
            seed=seed + index,
            callbacks=callbacks,
        )
        out = predict_labels(
            result.model,
            data.dataset(fold.test, data.input_kind(chosen), 64, with_ids=True),
        )
        predictions = pd.DataFrame(
            {
                "uid": out.uids,
                "fold": fold.name,
                "true": out.truth,
                "predicted": out.predicted,
                **{f"p_{k}": out.probabilities[:, k] for k in range(out.probabilities.shape[1])},
            }
        )
        expected = data.rows(fold.test)[["uid", "dataset", "subject_id", "label"]]
        predictions = predictions.merge(expected, on="uid", validate="1:1")
        if len(predictions) != len(expected) or not (predictions.true == predictions.label).all():
            raise AssertionError(f"fold {fold.name}: predictions do not match the manifest")
        predictions = predictions.drop(columns="label").sort_values("uid").reset_index(drop=True)
        outcome = FoldOutcome(fold, chosen, result, predictions, scores)
        outcomes.append(outcome)
        if on_fold_end:
            on_fold_end(index, outcome)
    return outcomes
