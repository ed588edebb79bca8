"""``tf.data`` batches from the in-memory records: per-epoch order and augmentation that depend
only on (seed, epoch), so a run resumed at epoch ``e`` sees exactly the batches it would have."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from components.config import TrainConfig

PREFETCH = 2  # batches made ahead of the training step


@dataclass(frozen=True)
class StreamOptions:
    """How a training stream draws its batches: ``batch`` samples a step (a fold's own, for
    :func:`fold_stream`), order and per-sample augmentation (mirror, shift by up to
    ``shift_px``) drawn from ``seed`` and the epoch."""

    kind: str  # flow | clip
    batch: int
    seed: int
    flip: bool = False
    shift_px: int = 0

    @classmethod
    def training(cls, cfg: TrainConfig, kind: str, batch: int, seed: int) -> StreamOptions:
        """The options of ``cfg``'s augmentation."""
        return cls(kind, batch, seed, cfg.augment_flip, cfg.augment_shift_px)


def _without_autotune(data: tf.data.Dataset) -> tf.data.Dataset:
    """``data`` prefetched by a fixed buffer, with tf.data's autotuning off: its model thread
    can hold up the iterator's destruction at the end of ``fit`` for tens of seconds (seen
    under two concurrent processes: a 25 s unit of work took 45 s, stalled in
    ``RootDataset::Iterator::~Iterator`` waiting for ``Model::OptimizeLoop``), and a
    one-map pipeline has nothing to tune."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.prefetch(PREFETCH).with_options(options)


def _source(size: int, offset: tf.Tensor, shift_px: int) -> tf.Tensor:
    """Source coordinates ``(B, size)`` of a shift by ``offset - shift_px`` with symmetric
    padding (``tf.pad(mode="SYMMETRIC")``: edge pixels repeated in mirror order)."""
    q = offset[:, None] - shift_px + tf.range(size)[None]
    q = tf.where(q < 0, -q - 1, q)
    return tf.where(q >= size, 2 * size - q - 1, q)


def augment_choices(
    batch: tf.Tensor, flip: bool, shift_px: int, stream: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-sample augmentation draws, keyed by ``stream`` (2 int64 values): ``mirror`` (B,)
    and ``offsets`` (B, 2) in ``[0, 2·shift_px]`` (a shift of ``offset - shift_px`` pixels)."""
    mirror = (
        tf.random.stateless_uniform([batch], seed=stream) < 0.5
        if flip
        else tf.zeros([batch], tf.bool)
    )
    offsets = (
        tf.random.stateless_uniform(
            [batch, 2], seed=stream + 1, minval=0, maxval=2 * shift_px + 1, dtype=tf.int32
        )
        if shift_px
        else tf.fill([batch, 2], 0)
    )
    return mirror, offsets


def augmentation_count(flip: bool, shift_px: int) -> int:
    """How many distinct augmentations there are: mirrored or not × every (row, column) shift."""
    return (2 if flip else 1) * (2 * shift_px + 1) ** 2


def augmentation_index(mirror: tf.Tensor, offsets: tf.Tensor, shift_px: int) -> tf.Tensor:
    """Each sample's augmentation as one number in ``[0, augmentation_count)``."""
    side = 2 * shift_px + 1
    return tf.cast(mirror, tf.int32) * side * side + offsets[:, 0] * side + offsets[:, 1]


def augmentation_of(index: int, shift_px: int) -> tuple[bool, tuple[int, int]]:
    """The (mirror, offsets) that :func:`augmentation_index` numbers ``index``."""
    side = 2 * shift_px + 1
    return bool(index // (side * side)), (index % (side * side) // side, index % side)


def apply_augmentation(
    x: tf.Tensor, kind: str, mirror: tf.Tensor, offsets: tf.Tensor, flip: bool, shift_px: int
) -> tf.Tensor:
    """Mirror (for flow, u changes sign: u -> 1 - u after min-max normalisation) and shift by
    ``offsets - shift_px`` pixels with symmetric padding, per sample: one gather of source
    pixels (no padded copies)."""
    batch = tf.shape(x)[0]
    height, width, channels = x.shape[-3], x.shape[-2], x.shape[-1]
    rows = _source(height, offsets[:, 0], shift_px)  # (B, H)
    cols = _source(width, offsets[:, 1], shift_px)  # (B, W): in the mirrored image if mirror
    cols = tf.where(mirror[:, None], width - 1 - cols, cols)
    pixels = tf.reshape(rows[:, :, None] * width + cols[:, None, :], [batch, height * width])
    leading = x.shape[1:-3]  # () for images, (T,) for clips
    flat = tf.reshape(x, [batch, *leading, height * width, channels])
    moved = tf.gather(flat, pixels, axis=len(leading) + 1, batch_dims=1)
    moved = tf.reshape(moved, tf.shape(x))
    if flip and kind == "flow":  # mirrored samples: u -> 1 - u
        sign = tf.where(mirror, -1.0, 1.0)
        scale = tf.concat([sign[:, None], tf.ones([batch, channels - 1])], axis=1)
        offset = tf.concat([(1.0 - sign[:, None]) / 2, tf.zeros([batch, channels - 1])], 1)
        shape = [batch] + [1] * (len(x.shape) - 2) + [channels]
        moved = moved * tf.reshape(scale, shape) + tf.reshape(offset, shape)
    return moved


def augment(x: tf.Tensor, kind: str, flip: bool, shift_px: int, stream: tf.Tensor) -> tf.Tensor:
    """Per-sample augmentation of a batch (:func:`apply_augmentation`) drawn from ``stream``
    (:func:`augment_choices`)."""
    if not flip and not shift_px:
        return x
    mirror, offsets = augment_choices(tf.shape(x)[0], flip, shift_px, stream)
    return apply_augmentation(x, kind, mirror, offsets, flip, shift_px)


def steps_per_epoch(samples: int, batch: int) -> int:
    return -(-samples // batch)


def training_stream(
    inputs: np.ndarray, labels: np.ndarray, options: StreamOptions, epochs: range
) -> tf.data.Dataset:
    """Batches for the epochs in ``epochs`` (a run resumed at epoch ``e`` asks for
    ``range(e, stop)``): each epoch a permutation drawn from (seed, epoch), batched, augmented
    per batch from (seed, epoch, batch): elements ``(x, y)``."""
    x = tf.constant(inputs)
    y = tf.constant(labels, tf.int64)
    count, batch, seed = len(labels), options.batch, options.seed
    steps = steps_per_epoch(count, batch)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )

        def one(step: tf.Tensor):
            index = order[step * batch : (step + 1) * batch]
            stream = tf.stack([tf.constant(seed, tf.int64) * 100003 + epoch, step])
            xb = augment(tf.gather(x, index), options.kind, options.flip, options.shift_px, stream)
            yb = tf.gather(y, index)
            return xb, yb

        return tf.data.Dataset.range(steps).map(one)

    epoch_numbers = tf.data.Dataset.from_tensor_slices(np.asarray(epochs, np.int64))
    return _without_autotune(epoch_numbers.flat_map(epoch_batches))


def fold_steps(train_sizes: list[int], batch: int) -> int:
    """Steps per epoch of a fold stream: the largest fold's, at ``batch`` samples a step."""
    return steps_per_epoch(max(train_sizes, default=0), batch)


def fold_batch_index(
    folds_train: list[np.ndarray], batch: int, seed: int, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of per-fold batches: ``index`` (steps, rows, F) into the records and ``mask``
    (1 for a real sample, 0 for padding). Fold ``f``'s epoch is a permutation of its own
    training positions drawn from (seed, epoch, f), split as evenly as possible over the
    epoch's steps: each sample comes once, and every step holds at least one of the fold's
    samples (when it has at least as many as there are steps)."""
    steps = fold_steps([len(t) for t in folds_train], batch)
    rows = max((-(-len(t) // steps) for t in folds_train), default=0) if steps else 0
    index = np.zeros((steps, rows, len(folds_train)), np.int64)
    mask = np.zeros((steps, rows, len(folds_train)), np.float32)
    for f, train in enumerate(folds_train):
        order = np.random.default_rng([seed, epoch, f]).permutation(np.asarray(train, np.int64))
        bounds = (np.arange(steps + 1) * len(order)) // max(steps, 1)
        for step in range(steps):
            part = order[bounds[step] : bounds[step + 1]]
            index[step, : len(part), f] = part
            index[step, len(part) :, f] = part[0] if len(part) else 0
            mask[step, : len(part), f] = 1.0
    return index, mask


def fold_stream(
    inputs: np.ndarray,
    labels: np.ndarray,
    folds_train: list[np.ndarray],
    options: StreamOptions,
    epochs: range,
    patch_stats: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of a fold-stacked model, each fold its own samples: elements
    ``((x (rows, F, ...), mask (rows, F)), y (rows, F))`` for the epochs in ``epochs``
    (:func:`fold_batch_index`), augmented per sample from (seed, epoch, step) as
    :func:`training_stream` does. Given ``patch_stats`` (samples, augmentations, S: a
    :func:`~components.training.patch_stats.patch_stats_table` for the same augmentation),
    each row also carries its augmented sample's entry: ``(x, mask, stats (rows, F, S))``."""
    x = tf.constant(inputs)
    y = tf.constant(labels, tf.int64)
    kind, batch, seed = options.kind, options.batch, options.seed
    flip, shift_px = options.flip, options.shift_px
    planned = [fold_batch_index(folds_train, batch, seed, e) for e in epochs]
    steps = fold_steps([len(t) for t in folds_train], batch)
    index = np.concatenate([p[0] for p in planned]) if planned else np.zeros((0, 0, 0), np.int64)
    mask = np.concatenate([p[1] for p in planned]) if planned else np.zeros((0, 0, 0), np.float32)
    epoch_of = np.repeat(np.array(epochs, dtype=np.int64), steps)
    step_of = np.tile(np.arange(steps, dtype=np.int64), len(epochs))
    sample = tuple(inputs.shape[1:])
    if patch_stats is not None:
        variants = patch_stats.shape[1]
        if variants != augmentation_count(flip, shift_px):
            raise ValueError(f"patch statistics for {variants} augmentations, not this stream's")
        table = tf.constant(patch_stats.reshape(-1, patch_stats.shape[-1]))

    def one(index, mask, epoch, step):
        stream = tf.stack([tf.constant(seed, tf.int64) * 100003 + epoch, step])
        rows = tf.reshape(index, [-1])
        flat = tf.gather(x, rows)
        mirror, offsets = augment_choices(tf.size(rows), flip, shift_px, stream)
        if flip or shift_px:
            flat = apply_augmentation(flat, kind, mirror, offsets, flip, shift_px)
        xb = tf.reshape(flat, (*index.shape, *sample))
        if patch_stats is None:
            return (xb, mask), tf.gather(y, index)
        entry = tf.cast(rows, tf.int32) * variants + augmentation_index(mirror, offsets, shift_px)
        stats = tf.reshape(tf.gather(table, entry), (*index.shape, table.shape[-1]))
        return (xb, mask, stats), tf.gather(y, index)

    data = tf.data.Dataset.from_tensor_slices((index, mask, epoch_of, step_of))
    return _without_autotune(data.map(one))
