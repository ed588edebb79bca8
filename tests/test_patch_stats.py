"""Patch statistics: per image, by numpy; per augmentation, the table entry of exactly the
augmented sample the training stream emits; BatchNorm moments from them equal the conv
outputs' moments."""

import numpy as np
import pytest
import tensorflow as tf

from components.features.augment import augmentation_count, augmentation_index, augmentation_of
from components.models import patch_stats
from components.models.patch_stats import patch_statistics, patch_stats_table
from components.training.data import StreamOptions, fold_stream


def numpy_statistics(image: np.ndarray) -> np.ndarray:
    """Mean 3×3 zero-padded patch ((dy, dx, c) order) and mean outer product, by loops."""
    height, width, channels = image.shape
    padded = np.pad(image, [(1, 1), (1, 1), (0, 0)]).astype(np.float64)
    patches = np.array(
        [
            [
                padded[y + dy, x + dx, c]
                for dy in range(3)
                for dx in range(3)
                for c in range(channels)
            ]
            for y in range(height)
            for x in range(width)
        ]
    )
    return np.concatenate([patches.mean(0), (patches.T @ patches / len(patches)).ravel()])


def test_patch_statistics_are_the_mean_patch_and_its_mean_outer_product() -> None:
    images = np.random.default_rng(0).uniform(size=(3, 7, 6, 2)).astype("float32")
    got = patch_statistics(tf.constant(images)).numpy()
    assert got.shape == (3, 18 + 18 * 18)
    for image, row in zip(images, got, strict=True):
        np.testing.assert_allclose(row, numpy_statistics(image), rtol=1e-5, atol=1e-6)


def test_augmentations_are_numbered_one_to_one() -> None:
    assert augmentation_count(True, 2) == 50 and augmentation_count(False, 0) == 1
    mirror, offsets = zip(*(augmentation_of(v, 2) for v in range(50)), strict=True)
    index = augmentation_index(tf.constant(mirror), tf.constant(offsets, tf.int32), 2).numpy()
    np.testing.assert_array_equal(index, np.arange(50))


def test_the_stream_carries_each_rows_own_augmented_statistics() -> None:
    """Every row of every per-fold batch: its stats entry equals the statistics of the very
    (augmented) sample in that row — the table lookup and the augmentation agree."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(10, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 3, 10)
    table = patch_stats_table(x, "flow", True, 2)
    assert table.shape == (10, 50, 27 + 27 * 27)
    assert patch_stats_table(x, "flow", True, 2) is table  # kept for the same records
    folds = [np.arange(0, 7), np.arange(3, 10)]
    options = StreamOptions("flow", batch=3, flip=True, shift_px=2)
    stream = fold_stream(x, y, folds, [5, 6], options, range(2), patch_stats=table)
    variants_seen = set()
    for (xb, mask, stats), _ in stream:
        rows = xb.numpy().reshape(-1, 12, 12, 3)
        expected = patch_statistics(tf.constant(rows)).numpy()
        np.testing.assert_allclose(stats.numpy().reshape(len(rows), -1), expected, atol=1e-5)
        assert mask.shape == stats.shape[:2]
        variants_seen |= {
            int(np.argmin(np.abs(table[:, :, :27] - r[:27]).sum(-1)) % 50) for r in expected
        }
    assert len(variants_seen) > 5  # many different augmentations were looked up
    with pytest.raises(ValueError, match="augmentations"):
        unflipped = StreamOptions("flow", batch=3, flip=False, shift_px=2)
        fold_stream(x, y, folds, [5, 6], unflipped, range(1), patch_stats=table)


def test_no_table_for_clips_or_beyond_the_memory_budget(monkeypatch) -> None:
    x = np.zeros((4, 3, 8, 8, 3), "float32")
    assert patch_stats_table(x, "clip", True, 2) is None
    monkeypatch.setattr(patch_stats, "MAX_TABLE_BYTES", 1000)
    assert patch_stats_table(np.zeros((4, 8, 8, 3), "float32"), "flow", True, 2) is None


def test_tables_for_records_of_different_image_sizes_in_one_process() -> None:
    """One process (a worker, a test session) may build tables for records of several sizes;
    each is traced at its own static shape."""
    rng = np.random.default_rng(3)
    for size, count in ((8, 5), (12, 3), (8, 2), (10, 7)):
        x = rng.uniform(size=(count, size, size, 3)).astype("float32")
        table = patch_stats_table(x, "flow", True, 1)
        assert table.shape == (count, 18, 27 + 27 * 27)
        identity = 1 * 3 + 1  # not mirrored, offsets (1, 1): no shift
        assert augmentation_of(identity, 1) == (False, (1, 1))
        np.testing.assert_allclose(
            table[:, identity], patch_statistics(tf.constant(x)).numpy(), atol=1e-6
        )
