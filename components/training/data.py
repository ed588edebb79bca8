"""``tf.data`` input from the TFRecord shards, through the shared schema."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from components.records.schema import parse

AUTOTUNE = tf.data.AUTOTUNE


def _features(kind: str, shape: Sequence[int], with_ids: bool):
    def select(example: dict) -> tuple:
        x = tf.ensure_shape(example[kind], shape)
        return (x, example["label"], example["uid"]) if with_ids else (x, example["label"])

    return select


def augment_batch(kind: str, flip: bool, shift_px: int, seed: int):
    """Batch-level augmentation with a per-sample draw: horizontal mirror (for flow, u changes
    sign: u -> 1 - u after min-max normalisation) and translation by up to ``shift_px`` pixels
    (symmetric padding). Vectorised over the batch; stateless, keyed by (seed, batch index)."""

    def apply(index: tf.Tensor, batch_xy: tuple) -> tuple:
        x, y = batch_xy
        stream = tf.stack([tf.cast(seed, tf.int64), index])
        batch = tf.shape(x)[0]
        spatial = len(x.shape) - 3  # first spatial axis: 1 for (B,H,W,C), 2 for (B,T,H,W,C)
        if flip:
            mirror = tf.random.stateless_uniform([batch], seed=stream) < 0.5
            flipped = tf.reverse(x, axis=[spatial + 1])
            if kind == "flow":
                flipped = tf.concat([1.0 - flipped[..., :1], flipped[..., 1:]], axis=-1)
            mask = tf.reshape(mirror, [-1] + [1] * (len(x.shape) - 1))
            x = tf.where(mask, flipped, x)
        if shift_px:
            height, width = x.shape[spatial], x.shape[spatial + 1]
            offsets = tf.random.stateless_uniform(
                [batch, 2], seed=stream + 1, minval=0, maxval=2 * shift_px + 1, dtype=tf.int32
            )
            paddings = [[0, 0]] * spatial + [[shift_px, shift_px]] * 2 + [[0, 0]]
            padded = tf.pad(x, paddings, mode="SYMMETRIC")
            rows = offsets[:, :1] + tf.range(height)[None]  # (B, H)
            cols = offsets[:, 1:] + tf.range(width)[None]  # (B, W)
            if spatial == 2:  # clips: move the time axis out of the way
                padded = tf.transpose(padded, [0, 2, 3, 1, 4])
            padded = tf.gather(padded, rows, axis=1, batch_dims=1)
            padded = tf.gather(padded, cols, axis=2, batch_dims=1)
            x = tf.transpose(padded, [0, 3, 1, 2, 4]) if spatial == 2 else padded
        return x, y

    return apply


def finish(
    dataset: tf.data.Dataset,
    kind: str,
    batch_size: int,
    *,
    training: bool,
    seed: int,
    flip: bool,
    shift_px: int,
    size: int | None,
) -> tf.data.Dataset:
    """The part of the pipeline after the source: cardinality, shuffle, batch, augment,
    prefetch. Shared by record and in-memory sources so they differ only in where data lives."""
    if size is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(size))
    if training:
        dataset = dataset.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if training and (flip or shift_px):
        dataset = dataset.enumerate().map(
            augment_batch(kind, flip, shift_px, seed),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    return dataset.prefetch(AUTOTUNE)


def record_source(
    shards: Sequence[str],
    subjects: Sequence[str],
    kind: str,
    shape: Sequence[int],
    with_ids: bool = False,
) -> tf.data.Dataset:
    """Unbatched ``(x, label[, uid])`` of ``subjects`` from the shards: read interleaved, parsed
    through the shared schema, filtered by subject and cached (re-iterating it reads no file)."""
    if not shards:
        raise ValueError("no record shards given")
    wanted = tf.constant(sorted(set(subjects)), tf.string)
    return (
        tf.data.Dataset.from_tensor_slices(sorted(shards))
        .interleave(
            lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
            cycle_length=min(4, len(shards)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        .map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
        .filter(lambda example: tf.reduce_any(tf.equal(example["subject_id"], wanted)))
        .map(_features(kind, shape, with_ids), num_parallel_calls=AUTOTUNE, deterministic=True)
        .cache()
    )


def make_dataset(
    shards: Sequence[str],
    subjects: Sequence[str],
    kind: str,
    shape: Sequence[int],
    batch_size: int,
    *,
    training: bool = False,
    seed: int = 0,
    flip: bool = False,
    shift_px: int = 0,
    size: int | None = None,
    with_ids: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(flow or clip, label)`` for the samples of ``subjects`` (namespaced ids);
    ``shape`` is one input's static shape (checked against what the records hold).

    :func:`record_source`, then :func:`finish`: training data is shuffled with ``seed``
    (reshuffled each epoch, deterministically) and augmented. ``size`` (the number of matching
    samples, from the manifest) lets Keras know the epoch length. ``with_ids`` adds each
    sample's uid as a third element (for predictions).
    """
    if training and with_ids:
        raise ValueError("with_ids is for evaluation data")
    return finish(
        record_source(shards, subjects, kind, shape, with_ids),
        kind,
        batch_size,
        training=training,
        seed=seed,
        flip=flip,
        shift_px=shift_px,
        size=size,
    )
