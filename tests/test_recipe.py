"""Training recipe options (weight decay, learning-rate schedules, label smoothing, mixup,
test-time flip, dataset-balanced epochs) and the probability ensemble: each against a reference
computation, and each the same for a fold trained stacked or alone."""

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
    # every other option once (cosine and one-cycle exclude each other): a stacking bug in any
    # one of them makes the stacked fold differ from the fold alone
    "mixup and smoothing, dataset-balanced epochs, cosine": dict(
        mixup_alpha=0.4, label_smoothing=0.1, balance_datasets=True, lr_schedule="cosine"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_a_recipe_trains_a_fold_the_same_stacked_or_alone(recipe: dict) -> None:
    """As tests/test_training.py's stacked-or-alone test, with the recipe's options on: the
    first step's loss agrees to rounding, the validation curves within Adam's amplified noise,
    and the models after the last epoch predict the same classes."""
    import tensorflow as tf

    from components.training.fold_models import fold_models

    runtime.configure(FAST, 0)
    x, y, subject = planted(subjects=8, per_class=2)
    datasets = datasets_of(subject)
    train = replace(FAST, epochs=8, patience=8, augment_flip=True, augment_shift_px=2, **recipe)
    a = fold("a", subject, 0, 1, seed=17)
    large = replace(fold("l", subject, 4, 5, seed=6), train=np.arange(len(y)))
    options = dict(kind="flow", input_sizes=SIZES, num_classes=3, seed=1,
                   strategy=runtime.make_strategy(train), datasets=datasets)  # fmt: skip
    (ordinary,) = fold_models(x, y, [a], MODEL, replace(train, stack_folds=False), **options)
    (stack,) = fold_models(x, y, [a, large], MODEL, train, **options)
    (xo, yo) = next(iter(ordinary.stream(range(1))))
    (inputs, ys) = next(iter(stack.stream(range(1))))
    real = inputs[1].numpy()[:, 0] > 0
    np.testing.assert_allclose(inputs[0].numpy()[real, 0], xo.numpy(), atol=1e-6)  # same batch
    labels = yo.numpy().argmax(1) if yo.ndim == 2 else yo.numpy()  # Keras: a soft target's class
    weights = tf.constant(ordinary.class_weights[0][labels])
    loss_alone = ordinary.model.compute_loss(
        x=xo, y=yo, y_pred=ordinary.model(xo, training=True), sample_weight=weights
    )
    per_fold = stack.model.fold_losses(inputs, ys, stack.model(inputs, training=True))
    assert float(per_fold[0]) == pytest.approx(float(loss_alone), abs=1e-5)

    alone = replace(train, stack_folds=False)
    history, _ = fold_outcome(fit(x, y, [a], MODEL, alone, datasets), "a", x)
    other_history, _ = fold_outcome(fit(x, y, [a, large], MODEL, train, datasets), "a", x)
    assert len(other_history) == len(history)
    for mine, theirs in zip(history, other_history, strict=True):
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], abs=5e-3)
    # the models after the last epoch (no validation subjects, so no epoch choice, whose
    # near-ties can fall either way on rounding-level differences), trained long enough that
    # most predictions are clear on every kernel set (8 epochs of a cosine schedule left the
    # ordinary model 23 of 48 clear ones on Eigen kernels, 24 needed)
    last = replace(a, validation=a.validation[:0])
    longer = replace(train, epochs=12, patience=12)
    longer_alone = replace(longer, stack_folds=False)
    _, outputs = fold_outcome(fit(x, y, [last], MODEL, longer_alone, datasets), "a", x)
    _, other_outputs = fold_outcome(fit(x, y, [last, large], MODEL, longer, datasets), "a", x)
    np.testing.assert_allclose(other_outputs, outputs, atol=2e-2)
    top = np.sort(outputs, axis=1)
    clear = top[:, -1] - top[:, -2] > 4e-2  # not a near-tie within the tolerance above
    assert clear.sum() >= len(outputs) // 2  # a model that learned something
    assert (other_outputs.argmax(1) == outputs.argmax(1))[clear].all()


@pytest.mark.slow
def test_each_recipe_option_changes_training() -> None:
    """Every option reaches the arithmetic: three epochs with it give another validation curve
    or other outputs than without (a wiring check: an option that is parsed but ignored fails
    here). The curve, not only the kept epoch's outputs: a cosine schedule starts at the same
    rate, so when the first epoch is the best the kept weights are the same."""
    runtime.configure(FAST, 0)
    x, y, subject = planted(subjects=6, per_class=2)
    datasets = datasets_of(subject)
    a = fold("a", subject, 0, 1, seed=17)
    base = replace(FAST, epochs=3, patience=3, min_epochs=3)
    curve, reference = fold_outcome(fit(x, y, [a], MODEL, base, datasets), "a", x)
    for option in (
        dict(label_smoothing=0.2),
        dict(weight_decay=0.1),
        dict(lr_schedule="cosine"),
        dict(test_flip=True),
        dict(mixup_alpha=0.4),
        dict(balance_datasets=True),
    ):
        trained = fit(x, y, [a], MODEL, replace(base, **option), datasets)
        history, outputs = fold_outcome(trained, "a", x)
        assert len(history) == len(curve) == 3
        same_curve = all(
            np.isclose(mine["val_loss"], theirs["val_loss"], atol=1e-6)
            for mine, theirs in zip(history, curve, strict=True)
        )
        assert not (same_curve and np.allclose(outputs, reference, atol=1e-5)), option


def datasets_of(subject: np.ndarray) -> np.ndarray:
    """Three datasets of unequal sizes: half the subjects, a third, the rest."""
    count = subject.max() + 1
    return np.where(subject < count // 2, "big", np.where(subject < 5 * count // 6, "mid", "small"))


def test_a_balanced_epoch_draws_every_dataset_as_often_as_the_largest() -> None:
    """Every sample at least once, each dataset topped up to the largest's count with its own
    samples (no sample more than once beyond its round), anew each epoch, the same for the same
    key; steps and class weights follow the balanced epoch."""
    from collections import Counter

    from components.training.data import StreamOptions
    from components.training.fold_models import class_weights
    from components.training.schedule import fold_epoch

    _, y, subject = planted(subjects=12, per_class=2)
    datasets = datasets_of(subject)
    # 11 subjects of 6 samples (5 big, 4 mid, 2 small); the small dataset without class 2, so
    # balancing the datasets shifts the class counts
    train = np.flatnonzero((subject != 0) & ~((datasets == "small") & (y == 2)))
    sizes = Counter(datasets[train])
    assert sizes == {"big": 30, "mid": 24, "small": 8}
    largest = max(sizes.values())
    cfg = replace(FAST, balance_datasets=True)
    options = StreamOptions.training(cfg, "flow", 7, 3, datasets)
    epochs = []
    for epoch in (0, 1):
        plan = options.plan(train, key=5, epoch=epoch)
        drawn = plan.index[plan.mask > 0]
        assert len(drawn) == largest * len(sizes)
        assert Counter(datasets[drawn]) == {name: largest for name in sizes}
        assert set(drawn) == set(train)  # nobody left out
        uses = Counter(drawn)
        for name in sizes:  # a dataset's samples used equally, ±1
            counts = [uses[i] for i in train[datasets[train] == name]]
            assert max(counts) - min(counts) <= 1 and sum(counts) == largest, name
        epochs.append(drawn)
    again = options.plan(train, key=5, epoch=1)
    np.testing.assert_array_equal(again.index[again.mask > 0], epochs[1])
    assert Counter(epochs[0]) != Counter(epochs[1])  # the top-up is drawn anew
    assert options.steps([train]) == plan.steps == -(-largest * len(sizes) // 7)
    plain = fold_epoch(train, 7, key=5, epoch=0, flip=False, shift_px=0)
    assert plain.steps == -(-len(train) // 7)
    # class weights: balanced over the class counts a balanced epoch draws on average
    drawn = [options.plan(train, key=5, epoch=e) for e in range(300)]
    mean = np.bincount(np.concatenate([y[p.index[p.mask > 0]] for p in drawn]), minlength=3)
    mean = mean / len(drawn)
    expected = sum(
        np.bincount(y[train[datasets[train] == name]], minlength=3) * largest / size
        for name, size in sizes.items()
    )
    np.testing.assert_allclose(mean, expected, rtol=0.02)
    weights = class_weights(y[train], 3, options.shares(train))
    np.testing.assert_allclose(weights, expected.sum() / (3 * expected), rtol=1e-6)
    assert not np.allclose(weights, class_weights(y[train], 3), rtol=1e-3)
    with pytest.raises(ValueError, match="dataset"):
        StreamOptions.training(cfg, "flow", 7, 3, None)


def test_mixup_mixes_each_row_with_a_row_of_its_step() -> None:
    """The plan: a permutation of each step's real rows and λ ~ Beta(α, α) from the fold's key
    (none without mixup); the stream: λ·x + (1 − λ)·x[partner] and the same mix of one-hot
    labels, for a fold alone and for each fold of a stack."""
    import tensorflow as tf

    from components.training.data import StreamOptions, fold_stream, training_stream
    from components.training.schedule import fold_epoch

    x, y, _ = planted(subjects=2, per_class=3)
    train = np.arange(len(y))
    plain = fold_epoch(train, 5, key=3, epoch=1, flip=False, shift_px=0)
    assert (plain.lam == 1).all() and (plain.partner == np.arange(plain.partner.shape[1])).all()
    plan = fold_epoch(train, 5, key=3, epoch=1, flip=False, shift_px=0, mixup_alpha=0.4)
    np.testing.assert_array_equal(plan.index, plain.index)  # mixup draws from its own stream
    for step in range(plan.steps):
        size = int(plan.mask[step].sum())
        assert sorted(plan.partner[step, :size]) == list(range(size))
        assert ((plan.lam[step, :size] > 0) & (plan.lam[step, :size] < 1)).all()
    again = fold_epoch(train, 5, key=3, epoch=1, flip=False, shift_px=0, mixup_alpha=0.4)
    np.testing.assert_array_equal(again.lam, plan.lam)
    options = StreamOptions("flow", batch=5, mixup_alpha=0.4, classes=3)
    xb, soft = next(iter(training_stream(x, y, train, 3, options, range(1, 2))))
    size = int(plan.mask[0].sum())
    rows, partner, lam = plan.index[0, :size], plan.partner[0, :size], plan.lam[0, :size]
    expected = (
        lam[:, None, None, None] * x[rows] + (1 - lam[:, None, None, None]) * x[rows][partner]
    )
    np.testing.assert_allclose(xb.numpy(), expected, atol=1e-6)
    one_hot = np.eye(3)[y[rows]]
    np.testing.assert_allclose(
        soft.numpy(), lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[partner], atol=1e-6
    )
    ((xs, mask), ys) = next(
        iter(fold_stream(x, y, [train, train[:7]], [3, 4], options, range(1, 2)))
    )
    real = mask.numpy()[:, 0] > 0
    np.testing.assert_allclose(xs.numpy()[real, 0], xb.numpy(), atol=1e-6)  # fold 0 as alone
    np.testing.assert_allclose(ys.numpy()[real, 0], soft.numpy(), atol=1e-6)
    assert tf.reduce_all(tf.abs(tf.reduce_sum(ys, -1) - 1) < 1e-5)
