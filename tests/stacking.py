"""Checks shared by the fold-stacked models' tests."""

from __future__ import annotations

import numpy as np


def assert_fold_is_its_ordinary_model(model, x: np.ndarray, fold: int) -> None:
    """Fold ``fold`` of the stacked ``model``, exported as the ordinary Keras model, gives the
    same outputs on ``x`` (every fold fed all of ``x``) in inference (moving statistics) and in
    training mode (batch statistics)."""
    mask = np.ones((len(x), model.folds), "float32")
    ordinary = model.export_fold(fold)
    np.testing.assert_allclose(
        model((x, mask), training=False).numpy()[:, fold],
        ordinary(x, training=False).numpy(),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        model((x, mask), training=True).numpy()[:, fold],
        ordinary(x, training=True).numpy(),
        atol=5e-5,
    )


def assert_padded_training_is_each_fold_alone(model, patch_stats=None) -> None:
    """Training mode on per-fold batches with padding rows: fold f's outputs on its real rows
    are its ordinary model's on those rows alone (BatchNorm moments from them only), and the
    step's loss is the sum of each fold's class-weighted loss on its own rows. ``patch_stats``
    (optional) maps the (B, F, H, W, C) inputs to the rows' patch statistics input."""
    import keras

    rng = np.random.default_rng(4)
    weights = rng.uniform(0.5, 2, size=(3, 3)).astype("float32")
    model.class_weights.assign(weights)
    xs = rng.uniform(size=(6, 3, 28, 28, 3)).astype("float32")
    ys = rng.integers(0, 3, size=(6, 3))
    mask = np.ones((6, 3), "float32")
    mask[4:, 0], mask[5:, 2] = 0, 0  # padding rows
    inputs = (xs, mask) if patch_stats is None else (xs, mask, patch_stats(xs))
    out = model(inputs, training=True).numpy()
    loss = 0.0
    for f in range(3):
        real = mask[:, f] > 0
        alone = model.export_fold(f)(xs[real, f], training=True).numpy()
        np.testing.assert_allclose(out[real, f], alone, atol=5e-5)
        picked = alone[np.arange(real.sum()), ys[real, f]]
        loss += float(np.mean(weights[f, ys[real, f]] * -np.log(picked)))
    computed = model.compute_loss(inputs, ys, keras.ops.convert_to_tensor(out))
    np.testing.assert_allclose(float(computed), loss, rtol=1e-4)


def assert_per_fold_batches_match_the_shared_batch(model, rng: np.random.Generator) -> None:
    """Inference on a batch per fold ``(B, F, H, W, C)`` gives fold f what the shared-batch
    path gives it on fold f's samples (validation costs each fold only its own subjects)."""
    xs = rng.uniform(size=(5, model.folds, 28, 28, 3)).astype("float32")
    mask = np.zeros((5, model.folds), "float32")
    per_fold = model((xs, mask), training=False).numpy()
    for f in range(model.folds):
        shared = model((xs[:, f], mask), training=False).numpy()[:, f]
        np.testing.assert_allclose(per_fold[:, f], shared, atol=1e-6)
