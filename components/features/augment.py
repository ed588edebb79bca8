"""Training-time augmentation of model inputs: horizontal mirror (for flow, u changes sign) and a
shift of up to ``shift_px`` pixels with symmetric padding, per sample.

The draws are numbers (:func:`draw_augmentation`, from a NumPy generator), so a fold's batches
can be planned ahead and are the same whichever way the fold is trained; :func:`apply_augmentation`
applies them to a batch in one gather of source pixels. Every (mirror, offsets) pair has a number
(:func:`augmentation_index`), which the patch-statistics table of
:mod:`components.models.patch_stats` is indexed by.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def draw_augmentation(
    rng: np.random.Generator, count: int, flip: bool, shift_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` draws: ``mirror`` (count,) bool and ``offsets`` (count, 2) in
    ``[0, 2·shift_px]`` (a shift of ``offset - shift_px`` pixels per axis)."""
    mirror = rng.random(count) < 0.5 if flip else np.zeros(count, bool)
    offsets = (
        rng.integers(0, 2 * shift_px + 1, size=(count, 2), dtype=np.int32)
        if shift_px
        else np.zeros((count, 2), np.int32)
    )
    return mirror, offsets


def augmentation_count(flip: bool, shift_px: int) -> int:
    """How many distinct augmentations there are: mirrored or not × every (row, column) shift."""
    return (2 if flip else 1) * (2 * shift_px + 1) ** 2


def augmentation_index(mirror, offsets, shift_px: int):
    """Each sample's augmentation as one number in ``[0, augmentation_count)`` (tensors or
    arrays)."""
    side = 2 * shift_px + 1
    as_int = tf.cast(mirror, tf.int32) if tf.is_tensor(mirror) else mirror.astype(np.int32)
    return as_int * side * side + offsets[:, 0] * side + offsets[:, 1]


def augmentation_of(index: int, shift_px: int) -> tuple[bool, tuple[int, int]]:
    """The (mirror, offsets) that :func:`augmentation_index` numbers ``index``."""
    side = 2 * shift_px + 1
    return bool(index // (side * side)), (index % (side * side) // side, index % side)


def _source(size: int, offset: tf.Tensor, shift_px: int) -> tf.Tensor:
    """Source coordinates ``(B, size)`` of a shift by ``offset - shift_px`` with symmetric
    padding (``tf.pad(mode="SYMMETRIC")``: edge pixels repeated in mirror order)."""
    q = offset[:, None] - shift_px + tf.range(size)[None]
    q = tf.where(q < 0, -q - 1, q)
    return tf.where(q >= size, 2 * size - q - 1, q)


def apply_augmentation(
    x: tf.Tensor, kind: str, mirror: tf.Tensor, offsets: tf.Tensor, flip: bool, shift_px: int
) -> tf.Tensor:
    """Mirror (for flow, u changes sign: u -> 1 - u after min-max normalisation) and shift by
    ``offsets - shift_px`` pixels with symmetric padding, per sample: one gather of source
    pixels (no padded copies)."""
    if not flip and not shift_px:
        return x
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


def mirror(x, kind: str):
    """Every sample of ``x`` (``(..., H, W, C)``: any leading axes) mirrored left-right, as the
    training mirror does it (for flow, u → 1 − u): the test-time flip's second view."""
    from keras import ops

    flipped = ops.flip(x, axis=-2)
    if kind != "flow":
        return flipped
    return ops.concatenate([1.0 - flipped[..., :1], flipped[..., 1:]], axis=-1)
