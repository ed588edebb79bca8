"""``tf.data`` batches from the in-memory records, following each fold's planned schedule
(:mod:`components.training.schedule`): a run resumed at epoch ``e`` sees exactly the batches it
would have, and a fold sees the same batches alone or in a stack of folds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from components.config import TrainConfig
from components.features.augment import apply_augmentation, augmentation_count, augmentation_index
from components.training.schedule import (
    EpochPlan,
    balanced_shares,
    fold_epoch,
    steps_per_epoch,
    unit_epoch,
)

PREFETCH = 2  # batches made ahead of the training step


@dataclass(frozen=True)
class StreamOptions:
    """How a fold's batches are drawn: ``batch`` samples a step at most (its own, in a stack),
    mirror and shifts of up to ``shift_px`` pixels as augmentation; given ``datasets`` (each
    record's dataset), every epoch is dataset-balanced."""

    kind: str  # flow | clip
    batch: int
    flip: bool = False
    shift_px: int = 0
    mixup_alpha: float = 0.0  # > 0: samples and one-hot labels mixed (targets become soft)
    classes: int = 3  # for the soft targets of mixup
    datasets: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def training(
        cls,
        cfg: TrainConfig,
        kind: str,
        batch: int,
        classes: int = 3,
        datasets: np.ndarray | None = None,
    ) -> StreamOptions:
        """The options of ``cfg``'s augmentation and sampling (``datasets``: each record's
        dataset, needed when ``cfg.balance_datasets`` is on)."""
        if cfg.balance_datasets and datasets is None:
            raise ValueError("train.balance_datasets needs each record's dataset")
        return cls(
            kind, batch, cfg.augment_flip, cfg.augment_shift_px, cfg.mixup_alpha, classes,
            np.asarray(datasets) if cfg.balance_datasets else None,
        )  # fmt: skip

    def groups(self, train: np.ndarray) -> np.ndarray | None:
        """The dataset of each of ``train``'s samples when epochs are balanced, else None."""
        return None if self.datasets is None else self.datasets[np.asarray(train, np.int64)]

    def plan(self, train: np.ndarray, key: int, epoch: int) -> EpochPlan:
        return fold_epoch(
            train, self.batch, key, epoch, self.flip, self.shift_px, self.mixup_alpha,
            self.groups(train),
        )  # fmt: skip

    def steps(self, folds_train: Sequence[np.ndarray]) -> int:
        """Steps per epoch of a stack of folds: its longest fold's (a fold's epoch draws its
        samples' shares: each once, or its dataset's top-up when balanced)."""
        return max(
            (steps_per_epoch(round(self.shares(t).sum()), self.batch) for t in folds_train),
            default=0,
        )

    def shares(self, train: np.ndarray) -> np.ndarray:
        """Each training sample's expected draws per epoch (1, or its dataset's top-up)."""
        groups = self.groups(train)
        return np.ones(len(train)) if groups is None else balanced_shares(groups)


def _mix(x, y, partner, lam, classes: int):
    """Mixup of a step's rows along axis 0 (``partner``, ``lam``: (rows,) or (rows, F) for a
    batch per fold): ``λ·x + (1 − λ)·x[partner]`` and the same mix of one-hot labels."""
    if len(partner.shape) == 1:
        other_x, other_y = tf.gather(x, partner), tf.gather(y, partner)
    else:  # per fold: row r of fold f mixes with row partner[r, f] of the same fold
        folds = tf.broadcast_to(tf.range(tf.shape(partner)[1])[None], tf.shape(partner))
        where = tf.stack([partner, folds], axis=-1)
        other_x, other_y = tf.gather_nd(x, where), tf.gather_nd(y, where)
    shape = tf.concat([tf.shape(lam), tf.ones([len(x.shape) - len(lam.shape)], tf.int32)], 0)
    weight = tf.reshape(lam, shape)
    mixed = weight * x + (1.0 - weight) * other_x
    soft = lam[..., None] * tf.one_hot(y, classes) + (1.0 - lam[..., None]) * tf.one_hot(
        other_y, classes
    )
    return mixed, soft


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

    def one(index, mask, mirror, offsets, partner, lam):
        real = mask > 0
        rows, mirror, offsets = index[real], mirror[real], offsets[real]
        xb = apply_augmentation(
            tf.gather(x, rows), options.kind, mirror, offsets, options.flip, options.shift_px
        )
        if not options.mixup_alpha:
            return xb, tf.gather(y, rows)
        return _mix(xb, tf.gather(y, rows), partner[real], lam[real], options.classes)

    data = tf.data.Dataset.from_tensor_slices(
        (plan.index, plan.mask, plan.mirror, plan.offsets.astype(np.int32), plan.partner, plan.lam)
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

    def one(index, mask, mirror, offsets, partner, lam):
        rows = tf.reshape(index, [-1])
        flat_mirror = tf.reshape(mirror, [-1])
        flat_offsets = tf.reshape(offsets, [-1, 2])
        flat = apply_augmentation(
            tf.gather(x, rows), kind, flat_mirror, flat_offsets, flip, shift_px
        )
        xb = tf.reshape(flat, (*index.shape, *sample))
        if options.mixup_alpha:  # mixed rows have no patch statistics of their own
            xb, soft = _mix(xb, tf.gather(y, index), partner, lam, options.classes)
            return (xb, mask), soft
        if patch_stats is None:
            return (xb, mask), tf.gather(y, index)
        entry = tf.cast(rows, tf.int32) * variants + augmentation_index(
            flat_mirror, flat_offsets, shift_px
        )
        stats = tf.reshape(tf.gather(table, entry), (*index.shape, table.shape[-1]))
        return (xb, mask, stats), tf.gather(y, index)

    data = tf.data.Dataset.from_tensor_slices(
        (plan.index, plan.mask, plan.mirror, plan.offsets.astype(np.int32), plan.partner, plan.lam)
    )
    return _without_autotune(data.map(one))
