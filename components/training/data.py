"""``tf.data`` batches from the in-memory records: per-epoch order and augmentation that depend
only on (seed, epoch), so a run resumed at epoch ``e`` sees exactly the batches it would have."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def augment(x: tf.Tensor, kind: str, flip: bool, shift_px: int, stream: tf.Tensor) -> tf.Tensor:
    """Per-sample augmentation of a batch: horizontal mirror (for flow, u changes sign:
    u -> 1 - u after min-max normalisation) and translation by up to ``shift_px`` pixels
    (symmetric padding). Stateless, keyed by ``stream`` (2 int64 values)."""
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
    return x


def steps_per_epoch(samples: int, batch: int) -> int:
    return -(-samples // batch)


def training_stream(
    inputs: np.ndarray,
    labels: np.ndarray,
    fold_mask: np.ndarray | None,
    *,
    kind: str,
    batch: int,
    seed: int,
    start_epoch: int,
    epochs: int,
    flip: bool,
    shift_px: int,
) -> tf.data.Dataset:
    """Batches for epochs ``start_epoch..epochs-1``: each epoch a permutation drawn from
    (seed, epoch), batched, augmented per batch from (seed, epoch, batch). Elements are
    ``((x, fold_mask), y)`` for stacked models, ``(x, y)`` otherwise."""
    x = tf.constant(inputs)
    y = tf.constant(labels, tf.int64)
    m = None if fold_mask is None else tf.constant(fold_mask, tf.float32)
    count = len(labels)
    steps = steps_per_epoch(count, batch)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )

        def one(step: tf.Tensor):
            index = order[step * batch : (step + 1) * batch]
            stream = tf.stack([tf.constant(seed, tf.int64) * 100003 + epoch, step])
            xb = augment(tf.gather(x, index), kind, flip, shift_px, stream)
            yb = tf.gather(y, index)
            return ((xb, tf.gather(m, index)), yb) if m is not None else (xb, yb)

        return tf.data.Dataset.range(steps).map(one)

    return tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_batches).prefetch(AUTOTUNE)
