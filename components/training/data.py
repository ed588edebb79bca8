"""``tf.data`` batches from the in-memory records, following each fold's planned schedule
(:mod:`components.training.schedule`): a run resumed at epoch ``e`` sees exactly the batches it
would have, and a fold sees the same batches alone or in a stack of folds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from components.config import TrainConfig
from components.features.augment import apply_augmentation, augmentation_count, augmentation_index
from components.training.schedule import EpochPlan, fold_epoch, steps_per_epoch, unit_epoch

PREFETCH = 2  # batches made ahead of the training step


@dataclass(frozen=True)
class StreamOptions:
    """How a fold's batches are drawn: ``batch`` samples a step at most (its own, in a stack),
    mirror and shifts of up to ``shift_px`` pixels as augmentation."""

    kind: str  # flow | clip
    batch: int
    flip: bool = False
    shift_px: int = 0

    @classmethod
    def training(cls, cfg: TrainConfig, kind: str, batch: int) -> StreamOptions:
        """The options of ``cfg``'s augmentation."""
        return cls(kind, batch, cfg.augment_flip, cfg.augment_shift_px)

    def plan(self, train: np.ndarray, key: int, epoch: int) -> EpochPlan:
        return fold_epoch(train, self.batch, key, epoch, self.flip, self.shift_px)


def _without_autotune(data: tf.data.Dataset) -> tf.data.Dataset:
    """``data`` prefetched by a fixed buffer, with tf.data's autotuning off: its model thread
    can hold up the iterator's destruction at the end of ``fit`` for tens of seconds (seen
    under two concurrent processes: a 25 s unit of work took 45 s, stalled in
    ``RootDataset::Iterator::~Iterator`` waiting for ``Model::OptimizeLoop``), and a
    one-map pipeline has nothing to tune."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.prefetch(PREFETCH).with_options(options)


def _concatenate(plans: Sequence[EpochPlan]) -> EpochPlan:
    """Consecutive epochs' plans as one: their steps one after another, rows padded (masked) to
    the widest."""
    rows = max(p.index.shape[1] for p in plans)

    def joined(name: str) -> np.ndarray:
        parts = [getattr(p, name) for p in plans]
        return np.concatenate(
            [np.pad(a, [(0, 0), (0, rows - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in parts]
        )

    return EpochPlan(*(joined(f.name) for f in dataclasses.fields(EpochPlan)))


def training_stream(
    inputs: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    key: int,
    options: StreamOptions,
    epochs: range,
) -> tf.data.Dataset:
    """One fold's batches for the epochs in ``epochs`` (:func:`~components.training.schedule
    .fold_epoch`), each the step's real rows only, augmented: elements ``(x, y)``."""
    x = tf.constant(inputs)
    y = tf.constant(labels, tf.int64)
    plan = _concatenate([options.plan(train, key, e) for e in epochs])

    def one(index, mask, mirror, offsets):
        real = mask > 0
        rows, mirror, offsets = index[real], mirror[real], offsets[real]
        xb = apply_augmentation(
            tf.gather(x, rows), options.kind, mirror, offsets, options.flip, options.shift_px
        )
        return xb, tf.gather(y, rows)

    data = tf.data.Dataset.from_tensor_slices(
        (plan.index, plan.mask, plan.mirror, plan.offsets.astype(np.int32))
    )
    return _without_autotune(data.map(one))


def fold_stream(
    inputs: np.ndarray,
    labels: np.ndarray,
    folds_train: Sequence[np.ndarray],
    keys: Sequence[int],
    options: StreamOptions,
    epochs: range,
    patch_stats: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of a fold-stacked model, each fold its own planned batch (a fold with fewer
    steps idles, masked): elements ``((x (rows, F, ...), mask (rows, F)), y (rows, F))``. Given
    ``patch_stats`` (samples, augmentations, S: a
    :func:`~components.models.patch_stats.patch_stats_table` for the same augmentation), each
    row also carries its augmented sample's entry: ``(x, mask, stats (rows, F, S))``."""
    x = tf.constant(inputs)
    y = tf.constant(labels, tf.int64)
    kind, flip, shift_px = options.kind, options.flip, options.shift_px
    per_epoch = [
        unit_epoch([options.plan(t, k, e) for t, k in zip(folds_train, keys, strict=True)])
        for e in epochs
    ]
    plan = _concatenate(per_epoch)
    sample = tuple(inputs.shape[1:])
    if patch_stats is not None:
        variants = patch_stats.shape[1]
        if variants != augmentation_count(flip, shift_px):
            raise ValueError(f"patch statistics for {variants} augmentations, not this stream's")
        table = tf.constant(patch_stats.reshape(-1, patch_stats.shape[-1]))

    def one(index, mask, mirror, offsets):
        rows = tf.reshape(index, [-1])
        flat_mirror = tf.reshape(mirror, [-1])
        flat_offsets = tf.reshape(offsets, [-1, 2])
        flat = apply_augmentation(
            tf.gather(x, rows), kind, flat_mirror, flat_offsets, flip, shift_px
        )
        xb = tf.reshape(flat, (*index.shape, *sample))
        if patch_stats is None:
            return (xb, mask), tf.gather(y, index)
        entry = tf.cast(rows, tf.int32) * variants + augmentation_index(
            flat_mirror, flat_offsets, shift_px
        )
        stats = tf.reshape(tf.gather(table, entry), (*index.shape, table.shape[-1]))
        return (xb, mask, stats), tf.gather(y, index)

    data = tf.data.Dataset.from_tensor_slices(
        (plan.index, plan.mask, plan.mirror, plan.offsets.astype(np.int32))
    )
    return _without_autotune(data.map(one))


def unit_steps(folds_train: Sequence[np.ndarray], batch: int) -> int:
    """Steps per epoch of a stack of folds: its longest fold's."""
    return max((steps_per_epoch(len(t), batch) for t in folds_train), default=0)
