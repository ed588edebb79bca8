"""Patch statistics: BatchNorm moments of a 3×3 convolution without a pass over its outputs.

A 'same' 3×3 convolution's output at a position is ``w·p + b``, ``p`` the position's 3×3×C
input patch. So the mean and variance of the outputs over a set of images and positions follow
from the patches' mean ``μ`` and mean outer product ``Σ``: mean ``w·μ + b``, second moment
``wᵀΣw + 2b·w·μ + b²``. Per image, ``(μ, Σ)`` costs a pass over the image once; the moments of
any batch of images are then a weighted sum of those (a few hundred numbers each) — no pass over
the convolution's F-times-wider outputs in the forward step, and none in the backward step.

Training images are augmented (mirror × shift, :mod:`components.features.augment`), so the table
holds every augmentation of every sample: (samples, augmentations, P + P²) with P = 9C.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from components.features.augment import apply_augmentation, augmentation_count, augmentation_of

#: a larger table is not built (the caller computes the moments from the outputs instead)
MAX_TABLE_BYTES = 512 * 2**20


def patch_size(channels: int) -> int:
    return 9 * channels


def patch_statistics(images: tf.Tensor) -> tf.Tensor:
    """Per image ``(B, H, W, C)``: the mean over positions of its 3×3 zero-padded ('same')
    patches, P = 9C values in a 3×3 kernel's flattened (dy, dx, c) order, then their mean outer
    product (P×P, row-major): ``(B, P + P·P)``."""
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    patches = tf.concat(
        [padded[:, dy : dy + height, dx : dx + width, :] for dy in range(3) for dx in range(3)],
        axis=-1,
    )
    size = patch_size(channels)
    flat = tf.reshape(patches, (-1, height * width, size))
    mean = tf.reduce_mean(flat, axis=1)
    second = tf.matmul(flat, flat, transpose_a=True) / float(height * width)
    return tf.concat([mean, tf.reshape(second, (-1, size * size))], axis=-1)


# traced per image shape (static shapes: the augmentation's gathers need them)
_augmented_statistics = tf.function(
    lambda x, kind, mirror, offsets, flip, shift_px: patch_statistics(
        apply_augmentation(x, kind, mirror, offsets, flip, shift_px)
    )
)

_TABLES: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def patch_stats_table(
    inputs: np.ndarray, kind: str, flip: bool, shift_px: int, chunk: int = 512
) -> np.ndarray | None:
    """The patch statistics of every augmentation (:func:`augmentation_count`, numbered as
    :func:`~components.features.augment.augmentation_index` numbers them) of every image in
    ``inputs`` (N, H, W, C): ``(N, augmentations, P + P²)``; None for inputs that are not
    images or when the table would exceed :data:`MAX_TABLE_BYTES`. Kept for the process's
    last ``inputs`` (units of work in one worker share their records)."""
    if inputs.ndim != 4:
        return None
    variants = augmentation_count(flip, shift_px)
    size = patch_size(inputs.shape[-1])
    if len(inputs) * variants * (size + size * size) * 4 > MAX_TABLE_BYTES:
        return None
    key = (id(inputs), inputs.shape, kind, flip, shift_px)
    if key in _TABLES and _TABLES[key][0] is inputs:
        return _TABLES[key][1]
    table = np.zeros((len(inputs), variants, size + size * size), np.float32)
    for variant in range(variants):
        mirror, offsets = augmentation_of(variant, shift_px)
        for start in range(0, len(inputs), chunk):
            images = tf.constant(inputs[start : start + chunk])
            count = images.shape[0]
            table[start : start + count, variant] = _augmented_statistics(
                images,
                kind,
                tf.fill([count], mirror),
                tf.tile(tf.constant([offsets], tf.int32), [count, 1]),
                flip,
                shift_px,
            ).numpy()
    _TABLES.clear()
    _TABLES[key] = (inputs, table)
    return table
