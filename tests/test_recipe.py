"""Training recipe options (weight decay, learning-rate schedules, label smoothing, test-time
flip) and the probability ensemble: each against a reference computation, and each the same
for a fold trained stacked or alone."""

import itertools
from dataclasses import replace

import keras
import numpy as np
import pytest

from components.config import TrainConfig
from components.features.augment import apply_augmentation, mirror
from components.models.builder import build_model
from components.models.layers import probability_ensemble, with_test_flip
from components.training import runtime
from components.training.learning_rate import learning_rate
from tests.test_training import FAST, MODEL, SIZES, fit, fold, fold_outcome, planted


def test_schedules_follow_their_formulas() -> None:
    cfg = TrainConfig(epochs=10, learning_rate=0.01)
    assert [learning_rate(cfg, e) for e in range(10)] == [0.01] * 10
    cosine = [learning_rate(replace(cfg, lr_schedule="cosine"), e) for e in range(11)]
    assert cosine[0] == pytest.approx(0.01) and cosine[10] == pytest.approx(0.0, abs=1e-12)
    assert cosine[5] == pytest.approx(0.005)  # half-way: half the rate
    assert all(a > b for a, b in itertools.pairwise(cosine))
    cycle = [learning_rate(replace(cfg, lr_schedule="one_cycle"), e) for e in range(10)]
    assert cycle[0] == pytest.approx(0.01 / 25)  # warm-up: 3 epochs (30%) to the peak
    assert max(cycle) == pytest.approx(0.01) and int(np.argmax(cycle)) == 3
    assert cycle[-1] == pytest.approx(0.01 / 1e4)
    assert all(a < b for a, b in itertools.pairwise(cycle[:4]))
    assert all(a > b for a, b in itertools.pairwise(cycle[3:]))


def test_mirror_is_the_training_mirror_and_its_own_inverse() -> None:
    import tensorflow as tf

    x, _, _ = planted(subjects=1, per_class=2)
    every = tf.ones(len(x), tf.bool)
    zero = tf.zeros((len(x), 2), tf.int32)
    trained = apply_augmentation(tf.constant(x), "flow", every, zero, True, 0).numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mirror(x, "flow")), trained, atol=1e-7)
    twice = keras.ops.convert_to_numpy(mirror(mirror(x, "flow"), "flow"))
    np.testing.assert_allclose(twice, x, atol=1e-6)
    clip = np.random.default_rng(0).uniform(size=(2, 3, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(mirror(clip, "clip")), clip[..., ::-1, :]
    )


def test_test_flip_model_is_the_mean_over_a_sample_and_its_mirror(tmp_path) -> None:
    keras.utils.set_random_seed(3)
    model = build_model(MODEL, num_classes=3, **SIZES)
    x, _, _ = planted(subjects=1, per_class=2)
    flipped = with_test_flip(model, "flow")
    expected = (model(x).numpy() + model(mirror(x, "flow")).numpy()) / 2
    np.testing.assert_allclose(flipped(x).numpy(), expected, atol=1e-6)
    assert not np.allclose(expected, model(x).numpy(), atol=1e-4)  # the flip changes something
    flipped.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-6)


def test_probability_ensemble_is_the_mean_of_its_members(tmp_path) -> None:
    x, _, _ = planted(subjects=1, per_class=2)
    members = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        members.append(build_model(MODEL, num_classes=3, **SIZES))
    ensemble = probability_ensemble(members, "ensemble")
    expected = np.mean([m(x).numpy() for m in members], axis=0)
    np.testing.assert_allclose(ensemble(x).numpy(), expected, atol=1e-6)
    ensemble.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-6)


def test_adamw_decay_of_a_stacked_fold_is_kerass_and_idle_folds_keep_theirs() -> None:
    from components.training.fold_models import FoldAdam

    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4, 2)).astype("float32")
    gradient = rng.normal(size=(3, 4, 2)).astype("float32")
    stacked = keras.Variable(start)
    fold_adam = FoldAdam(3, learning_rate=0.1, weight_decay=0.2)
    fold_adam.apply_fold_gradients([gradient], [stacked], np.array([1, 0, 1], "float32"))
    for f in range(3):
        alone = keras.Variable(start[f])
        keras.optimizers.Adam(learning_rate=0.1, weight_decay=0.2).apply([gradient[f]], [alone])
        expected = alone.numpy() if f != 1 else start[1]
        np.testing.assert_allclose(stacked.numpy()[f], expected, atol=1e-6)
    assert not np.allclose(stacked.numpy()[0], start[0])


RECIPES = {
    "smoothing, AdamW, one-cycle, test flip": dict(
        label_smoothing=0.1, weight_decay=0.05, lr_schedule="one_cycle", test_flip=True
    ),
    "cosine": dict(lr_schedule="cosine"),
}


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_a_recipe_trains_a_fold_the_same_stacked_or_alone(recipe: dict) -> None:
    """As tests/test_training.py's stacked-or-alone test, with the recipe's options on: the
    first step's loss agrees to rounding, the curves within Adam's amplified noise, and the
    final models predict the same classes."""
    import tensorflow as tf

    from components.training.fold_models import fold_models

    runtime.configure(FAST, 0)
    x, y, subject = planted(subjects=8, per_class=2)
    train = replace(FAST, epochs=8, patience=8, augment_flip=True, augment_shift_px=2, **recipe)
    a = fold("a", subject, 0, 1, seed=17)
    large = replace(fold("l", subject, 4, 5, seed=6), train=np.arange(len(y)))
    options = dict(kind="flow", input_sizes=SIZES, num_classes=3, seed=1,
                   strategy=runtime.make_strategy(train))  # fmt: skip
    (ordinary,) = fold_models(x, y, [a], MODEL, replace(train, stack_folds=False), **options)
    (stack,) = fold_models(x, y, [a, large], MODEL, train, **options)
    (xo, yo) = next(iter(ordinary.stream(range(1))))
    ((xs, mask, stats), ys) = next(iter(stack.stream(range(1))))
    labels = yo.numpy().argmax(1) if yo.ndim == 2 else yo.numpy()
    weights = tf.constant(ordinary.class_weights[0][labels])
    loss_alone = ordinary.model.compute_loss(
        x=xo, y=yo, y_pred=ordinary.model(xo, training=True), sample_weight=weights
    )
    per_fold = stack.model.fold_losses(
        (xs, mask, stats), ys, stack.model((xs, mask, stats), training=True)
    )
    assert float(per_fold[0]) == pytest.approx(float(loss_alone), abs=1e-5)

    history, outputs = fold_outcome(
        fit(x, y, [a], MODEL, replace(train, stack_folds=False)), "a", x
    )
    other_history, other_outputs = fold_outcome(fit(x, y, [a, large], MODEL, train), "a", x)
    assert len(other_history) == len(history)
    for mine, theirs in zip(history, other_history, strict=True):
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], abs=5e-3)
    np.testing.assert_allclose(other_outputs, outputs, atol=2e-2)
    assert other_outputs.argmax(1).tolist() == outputs.argmax(1).tolist()


def test_each_recipe_option_changes_training() -> None:
    """Every option reaches the arithmetic: one epoch with it gives other weights than
    without (a wiring check: an option that is parsed but ignored fails here)."""
    runtime.configure(FAST, 0)
    x, y, subject = planted(subjects=6, per_class=2)
    a = fold("a", subject, 0, 1, seed=17)
    base = replace(FAST, epochs=3, patience=3, min_epochs=1)
    _, reference = fold_outcome(fit(x, y, [a], MODEL, base), "a", x)
    for option in (
        dict(label_smoothing=0.2),
        dict(weight_decay=0.1),
        dict(lr_schedule="cosine"),
        dict(test_flip=True),
    ):
        _, outputs = fold_outcome(fit(x, y, [a], MODEL, replace(base, **option)), "a", x)
        assert not np.allclose(outputs, reference, atol=1e-5), option
