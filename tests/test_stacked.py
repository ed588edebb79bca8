"""Fold-stacked models compute, fold by fold, exactly what the ordinary model computes."""

import numpy as np
import pytest
import tensorflow as tf

from components.config import AttentionConfig, ModelConfig
from components.models.patch_stats import patch_statistics
from components.models.stacked import ststnet
from tests.stacking import (
    assert_fold_is_its_ordinary_model,
    assert_padded_training_is_each_fold_alone,
    assert_per_fold_batches_match_the_shared_batch,
)

SIZES = {"flow_size": 28, "clip_frames": 8, "clip_size": 64}
CASES = [("none", ())] + [
    (kind, placement)
    for kind in ("se", "eca", "channel", "spatial", "cbam", "mhsa")
    for placement in (("fused",), ("streams",), ("pre_head",), ("streams", "fused"))
]
POOLED = AttentionConfig("mhsa", max_keys=16)  # 28×28 streams: keys pooled by 7; fused by 3
UNORDERED = AttentionConfig("mhsa", positions="none")


@pytest.mark.parametrize(
    ("kind", "placement"),
    [*CASES, (POOLED, ("streams",)), (POOLED, ("streams", "fused")), (UNORDERED, ("fused",))],
)
def test_each_fold_is_its_ordinary_model(kind: str | AttentionConfig, placement: tuple) -> None:
    """Export fold 1 of a 3-fold stack as the ordinary Keras model: the same outputs in
    inference (moving statistics) and in training mode (batch statistics), including a
    negative BatchNorm scale (the pooled-affine shortcut must hold for either sign)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 28, 28, 3)).astype("float32")
    attention = kind if isinstance(kind, AttentionConfig) else AttentionConfig(kind)
    cfg = ModelConfig("ststnet", attention, placement, 0.0)
    model = ststnet(cfg, 3, SIZES, 3)
    model.initialise([1, 2, 3])
    streams = model.streams
    streams.gamma.assign(
        streams.gamma.numpy() * np.where(rng.uniform(size=streams.gamma.shape) < 0.3, -1, 1)
    )
    streams.moving_mean.assign(rng.normal(0, 0.3, streams.moving_mean.shape).astype("float32"))
    streams.moving_variance.assign(
        rng.uniform(0.2, 2, streams.moving_variance.shape).astype("float32")
    )
    assert_fold_is_its_ordinary_model(model, x, 1)


def test_a_fold_starts_from_its_own_seed_whatever_the_other_folds() -> None:
    cfg = ModelConfig("ststnet", AttentionConfig("cbam"), ("fused",), 0.5)
    three, one = ststnet(cfg, 3, SIZES, 3), ststnet(cfg, 1, SIZES, 3)
    three.initialise([5, 9, 7])
    one.initialise([9])
    for a, b in zip(three.fold_state(), one.fold_state(), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[0])
    assert not np.array_equal(
        np.asarray(three.fold_state()[0])[0], np.asarray(three.fold_state()[0])[1]
    )


def test_a_fold_starts_as_the_ordinary_model_of_its_seed() -> None:
    """Fold f's initial weights are exactly those of the ordinary model built from its seed
    (Keras' own initialisers), so it starts as it would alone."""
    from components.models import build_model
    from components.training.runtime import seed_everything

    cfg = ModelConfig("ststnet", AttentionConfig("mhsa"), ("fused",), 0.5)
    model = ststnet(cfg, 3, SIZES, 3)
    model.initialise([4, 8, 15])
    seed_everything(8)
    alone = build_model(cfg, num_classes=3, **SIZES)
    for ours, theirs in zip(model.export_fold(1).get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def attention_types() -> list[str]:
    from components.attention.registry import ATTENTION

    return [name for name, kind in ATTENTION.items() if kind.input_rank == 4]


@pytest.mark.parametrize("kind", attention_types())
def test_every_attention_type_has_a_stacked_form_equal_to_its_layer(kind: str) -> None:
    """Parametrised from the registry: every feature-map attention type stacks (its
    hand-written form, or the one derived from the layer), and the stacked form computes, fold
    by fold, what the ordinary layer computes with that fold's weights; a type added to the
    registry is checked here without being listed."""
    from components.attention.factory import make_attention, make_stacked_attention
    from components.attention.stacked import FoldVectorized

    rng = np.random.default_rng(5)
    folds, shape = 3, (4, 6, 6, 16)
    x = rng.normal(size=(shape[0], shape[1], shape[2], folds, shape[3])).astype("float32")
    forms = [make_stacked_attention(kind, folds, "stacked")]
    forms.append(FoldVectorized(folds, lambda: make_attention(kind, "inner"), name="derived"))
    layers = []
    for f in range(folds):
        layer = make_attention(kind, f"fold{f}")
        layer.build((None, *shape[1:]))
        for v in layer.weights:
            v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
        layers.append(layer)
    for form in forms:
        form.build(x.shape)
        for f, layer in enumerate(layers):
            form.import_weights(f, layer.get_weights())
        out, _ = form(x)
        for f, layer in enumerate(layers):
            expected = layer(x[..., f, :]).numpy()
            np.testing.assert_allclose(out.numpy()[..., f, :], expected, atol=2e-5)
            for ours, theirs in zip(form.export(f), layer.get_weights(), strict=True):
                np.testing.assert_array_equal(ours, theirs)


def test_the_batch_moments_are_the_masked_conv_output_moments() -> None:
    """BatchNorm's per-fold mean and variance are the moments of that fold's conv outputs over
    its masked rows (padding rows excluded) and all positions: from the outputs of per-fold
    batches, and from the input patches of a shared batch."""
    import keras

    rng = np.random.default_rng(1)
    xs = rng.uniform(size=(10, 2, 28, 28, 3)).astype("float32")
    mask = (rng.uniform(size=(10, 2)) < 0.6).astype("float32")
    mask[0] = 1
    model = ststnet(ModelConfig("ststnet", AttentionConfig("none"), (), 0.0), 2, SIZES, 3)
    model.initialise([1, 2])
    kernel, bias = np.asarray(model.streams.kernel), np.asarray(model.streams.bias)
    h = model.streams.conv(xs, kernel, bias)
    per_fold = model.streams.output_moments(h, mask)
    stats = patch_statistics(tf.constant(xs.reshape(-1, 28, 28, 3))).numpy().reshape(10, 2, -1)
    from_stats = model.streams.stats_moments(stats, mask)  # the training stream's rows
    shared = model.streams.patch_moments(xs[:, 0], mask)  # every fold on fold 0's samples
    np.testing.assert_array_equal(np.asarray(per_fold[2]), mask.sum(0))
    np.testing.assert_array_equal(np.asarray(from_stats[2]), mask.sum(0))
    cases = ((per_fold, "per fold"), (from_stats, "per fold"), (shared, "shared"))
    for f in range(2):
        for (mean, variance, _), layout in cases:
            samples = xs[:, f] if layout == "per fold" else xs[:, 0]
            out = keras.ops.conv(samples, kernel[f], padding="same").numpy() + bias[f]
            chosen = out[mask[:, f] > 0].reshape(-1, out.shape[-1])
            np.testing.assert_allclose(np.asarray(mean)[f], chosen.mean(0), atol=1e-5)
            np.testing.assert_allclose(np.asarray(variance)[f], chosen.var(0), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("with_stats", [False, True])
@pytest.mark.parametrize(("kind", "placement"), [("none", ()), ("se", ("streams",))])
def test_training_on_per_fold_batches_is_each_fold_trained_alone(
    kind, placement, with_stats
) -> None:
    """Training mode on per-fold batches with padding rows (BatchNorm moments from the
    outputs, or from the rows' patch statistics): each fold is its ordinary model trained on its
    own rows alone, and the loss the sum of the folds' own."""

    def stats(xs):
        flat = tf.constant(xs.reshape(-1, 28, 28, 3))
        return patch_statistics(flat).numpy().reshape(*xs.shape[:2], -1)

    model = ststnet(ModelConfig("ststnet", AttentionConfig(kind), placement, 0.0), 3, SIZES, 3)
    model.initialise([1, 2, 3])
    assert_padded_training_is_each_fold_alone(model, stats if with_stats else None)


def test_one_batch_per_fold_gives_what_the_shared_batch_gives() -> None:
    """Validation feeds each fold its own samples ((B, F, H, W, C)): fold f's outputs equal
    those of the shared-batch path on fold f's samples (so selection costs each fold only its
    own validation subjects)."""
    rng = np.random.default_rng(2)
    for kind, placement in (("cbam", ("fused",)), ("se", ("streams",)), ("none", ())):
        model = ststnet(ModelConfig("ststnet", AttentionConfig(kind), placement, 0.0), 3, SIZES, 3)
        model.initialise([1, 2, 3])
        assert_per_fold_batches_match_the_shared_batch(model, rng)


def test_fold_predictor_gives_each_fold_its_own_samples() -> None:
    """Folds with different (and no) validation samples: fold f's probabilities are the
    model's fold-f outputs on exactly its own positions, in their order."""
    from components.config import TrainConfig
    from components.training.data import StreamOptions
    from components.training.fold_models import FoldData, StackedFolds

    inputs = np.random.default_rng(3).uniform(size=(9, 28, 28, 3)).astype("float32")
    labels = np.array([0, 1, 2] * 3)
    everyone = np.arange(9)
    folds = [FoldData(f"f{k}", everyone, everyone[:0], everyone[:0], k) for k in range(3)]
    cfg = ModelConfig("ststnet", AttentionConfig("cbam"), ("fused",), 0.0)
    models = StackedFolds(inputs, labels, folds, StreamOptions("flow", 4), 3, model_cfg=cfg,
                          train_cfg=TrainConfig(), input_sizes=SIZES, run_seed=1)  # fmt: skip
    positions = [np.array([4, 0, 7]), np.array([], int), np.array([2, 8, 1, 5, 3])]
    got = models.fold_predictor(positions, chunk=2)()
    everything = models.fold_predictor([everyone] * 3)()  # every sample through every fold
    assert [g.shape for g in got] == [(3, 3), (0, 3), (5, 3)]
    for f, (mine, probabilities) in enumerate(zip(positions, got, strict=True)):
        np.testing.assert_allclose(probabilities, everything[f][mine], atol=1e-6)
