"""The fold-stacked ``rcn`` computes, fold by fold, exactly what the ordinary RCN-W computes."""

import keras
import numpy as np
import pytest

from components.config import AttentionConfig, ModelConfig
from components.models.stacked_rcn import rcn
from tests.stacking import (
    assert_fold_is_its_ordinary_model,
    assert_padded_training_is_each_fold_alone,
    assert_per_fold_batches_match_the_shared_batch,
)

SIZES = {"flow_size": 28, "clip_frames": 8, "clip_size": 64}
EVERY_POINT = ("fused", "recurrent", "pre_head")
CASES = [("none", ()), ("spatial", ("recurrent",))] + [
    (kind, EVERY_POINT) for kind in ("se", "eca", "channel", "spatial", "cbam", "mhsa")
]


def randomised(model) -> None:
    """Negative BatchNorm scales and non-trivial moving statistics in every norm layer."""
    rng = np.random.default_rng(7)
    for norm in (*model.stream_norms, model.feedforward_norm, model.recurrent_norm):
        shape = norm.gamma.shape
        norm.gamma.assign(norm.gamma.numpy() * np.where(rng.uniform(size=shape) < 0.3, -1, 1))
        norm.beta.assign(rng.normal(0, 0.2, shape).astype("float32"))
        norm.moving_mean.assign(rng.normal(0, 0.3, shape).astype("float32"))
        norm.moving_variance.assign(rng.uniform(0.2, 2, shape).astype("float32"))


@pytest.mark.parametrize(("kind", "placement"), CASES)
def test_each_fold_is_its_ordinary_model(kind: str, placement: tuple) -> None:
    """Fold 1 of a 3-fold stack, exported as the ordinary Keras model: the same outputs in
    inference (moving statistics) and in training mode (batch statistics)."""
    x = np.random.default_rng(0).uniform(size=(8, 28, 28, 3)).astype("float32")
    model = rcn(ModelConfig("rcn", AttentionConfig(kind), placement, 0.0), 3, SIZES, 3)
    model.initialise([1, 2, 3])
    randomised(model)
    ordinary = model.export_fold(1)
    assert ordinary.count_params() == sum(int(np.prod(v.shape[1:])) for v in model.fold_state())
    assert_fold_is_its_ordinary_model(model, x, 1)


def test_a_fold_starts_as_the_ordinary_model_of_its_seed() -> None:
    """Fold f's weights are those the ordinary model built from seed f has, whatever the other
    folds (the stack's import is layer by layer, by the ordinary layers' names)."""
    from components.models.builder import build_model

    cfg = ModelConfig("rcn", AttentionConfig("cbam"), ("fused",), 0.5)
    model = rcn(cfg, 3, SIZES, 3)
    model.initialise([5, 9, 7])
    keras.utils.set_random_seed(9)
    ordinary = build_model(cfg, num_classes=3, **SIZES)
    exported = model.export_fold(1)
    for mine, theirs in zip(exported.get_weights(), ordinary.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    first = model.fold_state()[0].numpy()
    assert not np.array_equal(first[0], first[1])


def test_training_on_per_fold_batches_is_each_fold_trained_alone() -> None:
    """Per-fold batches with padding rows: fold f's training-mode outputs on its real rows are
    its ordinary model's on those rows alone (BatchNorm moments from them only, in all five
    norms, the recurrent one applied twice), and the loss is the sum of each fold's own."""
    model = rcn(ModelConfig("rcn", AttentionConfig("se"), ("fused",), 0.0), 3, SIZES, 3)
    model.initialise([1, 2, 3])
    assert_padded_training_is_each_fold_alone(model)


def test_moving_statistics_follow_each_folds_own_rows_and_skip_an_absent_fold() -> None:
    """One training call updates fold f's moving statistics as the ordinary model's training
    call on f's rows does (the recurrent norm twice); a fold without rows keeps its own."""
    rng = np.random.default_rng(5)
    model = rcn(ModelConfig("rcn", AttentionConfig("none"), (), 0.0), 3, SIZES, 3)
    model.initialise([1, 2, 3])
    randomised(model)
    before = [model.export_fold(f) for f in range(3)]
    xs = rng.uniform(size=(5, 3, 28, 28, 3)).astype("float32")
    mask = np.ones((5, 3), "float32")
    mask[:, 2] = 0  # fold 2 has no rows in this step
    model((xs, mask), training=True)
    for f in (0, 1):
        before[f](xs[:, f], training=True)  # Keras updates the ordinary model's statistics
        for name in ("stream2_bn", "rcl_recurrent_bn"):
            np.testing.assert_allclose(
                model.export_fold(f).get_layer(name).get_weights()[2:],
                before[f].get_layer(name).get_weights()[2:],
                atol=1e-6,
            )
    for name in ("stream1_bn", "rcl_recurrent_bn"):
        np.testing.assert_array_equal(
            model.export_fold(2).get_layer(name).get_weights()[2:],
            before[2].get_layer(name).get_weights()[2:],
        )


def test_one_batch_per_fold_gives_what_the_shared_batch_gives() -> None:
    """Inference on a batch per fold ``(B, F, H, W, C)`` equals the shared-batch path on each
    fold's samples (validation costs each fold only its own subjects)."""
    rng = np.random.default_rng(2)
    model = rcn(ModelConfig("rcn", AttentionConfig("cbam"), ("pre_head",), 0.0), 3, SIZES, 3)
    model.initialise([1, 2, 3])
    randomised(model)
    assert_per_fold_batches_match_the_shared_batch(model, rng)
