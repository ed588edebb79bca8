"""The training loop: batches, class weights, per-fold epoch selection, resumption, masked
stacking (no fold learns from its test subjects) and the multi-device path."""

import json
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from components.config import AttentionConfig, ModelConfig, TrainConfig
from components.training import runtime
from components.training.data import (
    StreamOptions,
    augment,
    fold_batch_index,
    fold_stream,
    training_stream,
)
from components.training.fit import FoldData, FoldRun, class_weights, fit_folds

ROOT = Path(__file__).parent.parent
SIZES = {"flow_size": 28, "clip_frames": 4, "clip_size": 16}


def planted(subjects: int = 6, per_class: int = 3, seed: int = 0):
    """Flow-like inputs with a learnable class signal; subject of every sample."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:28, 0:28]
    centres = [(7, 8), (21, 20), (14, 5)]
    inputs, labels, subject = [], [], []
    for s in range(subjects):
        for label in range(3):
            for _ in range(per_class):
                x = rng.uniform(0, 0.3, (28, 28, 3)).astype(np.float32)
                cy, cx = centres[label]
                x[..., label] += 0.7 * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 18).astype(
                    np.float32
                )
                inputs.append(np.clip(x, 0, 1))
                labels.append(label)
                subject.append(s)
    return np.stack(inputs), np.array(labels), np.array(subject)


def fold(name: str, subject: np.ndarray, test: int, validation: int, seed: int = 1) -> FoldData:
    where = lambda s: np.flatnonzero(subject == s)  # noqa: E731
    train = np.flatnonzero(~np.isin(subject, [test, validation]))
    return FoldData(name, train, where(validation), where(test), seed)


MODEL = ModelConfig("ststnet", AttentionConfig("cbam"), ("fused",), 0.0)
FAST = TrainConfig(
    epochs=25, patience=8, min_epochs=3, learning_rate=0.01, threads=1, augment_flip=False
)


def test_stream_is_a_function_of_seed_and_epoch_and_resumes_exactly() -> None:
    x, y, _ = planted(subjects=2, per_class=2)

    def batches(seed: int, start: int, stop: int) -> list[np.ndarray]:
        options = StreamOptions("flow", batch=5, seed=seed, flip=True, shift_px=2)
        return [b[0].numpy() for b in training_stream(x, y, options, range(start, stop))]

    whole = batches(3, 0, 3)
    steps = -(-len(y) // 5)
    assert len(whole) == 3 * steps
    resumed = batches(3, 1, 3)  # a run resumed at epoch 1 sees exactly the batches of 1 and 2
    for a, b in zip(whole[steps:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    other = batches(4, 0, 1)
    assert not all(np.array_equal(a, b) for a, b in zip(whole[:steps], other, strict=True))
    options = StreamOptions("flow", batch=5, seed=3, flip=True, shift_px=2)
    labels = np.concatenate([b[1].numpy() for b in training_stream(x, y, options, range(1))])
    assert sorted(labels.tolist()) == sorted(y.tolist())  # an epoch is a permutation


def test_fold_batches_give_each_fold_its_own_samples_once_an_epoch() -> None:
    """Per-fold batches: every fold sees each of its training positions exactly once an epoch
    (never another fold's), every step holds at least one real sample of every fold and at most
    ``batch`` rows; the plan is a function of (seed, epoch)."""
    folds = [np.arange(0, 37), np.arange(20, 50), np.array([3, 9, 40, 41, 42, 43, 44, 45, 46])]
    index, mask = fold_batch_index(folds, batch=8, seed=5, epoch=2)
    steps, rows, _ = index.shape
    assert steps == 5 and rows <= 8  # ceil(37 / 8) steps
    for f, train in enumerate(folds):
        real = index[..., f][mask[..., f] > 0]
        assert sorted(real.tolist()) == sorted(train.tolist())
        assert (mask[..., f].sum(axis=1) >= 1).all()
        assert np.isin(index[..., f], train).all()  # padding rows repeat the fold's own samples
    again, _ = fold_batch_index(folds, batch=8, seed=5, epoch=2)
    other, _ = fold_batch_index(folds, batch=8, seed=5, epoch=3)
    np.testing.assert_array_equal(index, again)
    assert not np.array_equal(index, other)


def test_fold_stream_batches_are_the_planned_samples_and_resume_exactly() -> None:
    x, y, _ = planted(subjects=2, per_class=2)  # 12 samples
    folds = [np.arange(0, 8), np.arange(4, 12)]
    options = StreamOptions("flow", batch=3, seed=4)
    whole = list(fold_stream(x, y, folds, options, range(2)))
    assert len(whole) == 2 * 3
    index, mask = fold_batch_index(folds, batch=3, seed=4, epoch=1)
    for step, ((xb, mb), yb) in enumerate(whole[3:]):
        np.testing.assert_array_equal(xb.numpy(), x[index[step]])
        np.testing.assert_array_equal(yb.numpy(), y[index[step]])
        np.testing.assert_array_equal(mb.numpy(), mask[step])
    resumed = list(fold_stream(x, y, folds, options, range(1, 2)))
    for (a, _), (b, _) in zip(whole[3:], resumed, strict=True):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())


def test_flip_negates_u_and_keeps_v_and_strain() -> None:
    x, y, _ = planted(subjects=1, per_class=4)

    def epoch(flip: bool) -> np.ndarray:
        options = StreamOptions("flow", batch=len(y), seed=7, flip=flip)
        stream = training_stream(x, y, options, range(1))
        return next(iter(stream))[0].numpy()

    plain, flipped = epoch(False), epoch(True)
    changed = [k for k in range(len(plain)) if not np.array_equal(plain[k], flipped[k])]
    assert 0 < len(changed) < len(plain)  # about half are mirrored
    for k in changed:
        np.testing.assert_allclose(flipped[k][:, ::-1, 0], 1.0 - plain[k][..., 0], atol=1e-6)
        np.testing.assert_array_equal(flipped[k][:, ::-1, 1:], plain[k][..., 1:])


@pytest.mark.parametrize("shape", [(9, 28, 28, 3), (4, 3, 16, 16, 3)])
def test_augment_is_mirror_then_symmetric_padded_shift(shape) -> None:
    """Against numpy: mirror the chosen samples (flow's u -> 1 - u), pad symmetrically by
    ``shift_px``, crop at the drawn offsets; images and clips alike."""
    import tensorflow as tf

    x = np.random.default_rng(6).uniform(size=shape).astype("float32")
    stream = tf.constant([11, 2], tf.int64)
    got = augment(tf.constant(x), "flow", True, 2, stream).numpy()
    mirror = tf.random.stateless_uniform([shape[0]], seed=stream).numpy() < 0.5
    offsets = tf.random.stateless_uniform(
        [shape[0], 2], seed=stream + 1, minval=0, maxval=5, dtype=tf.int32
    ).numpy()
    assert 0 < mirror.sum() < shape[0] and len(np.unique(offsets)) > 1
    for b in range(shape[0]):
        sample = x[b]
        if mirror[b]:
            sample = sample[..., ::-1, :].copy()
            sample[..., 0] = 1.0 - sample[..., 0]
        pad = [(0, 0)] * (sample.ndim - 3) + [(2, 2), (2, 2), (0, 0)]
        padded = np.pad(sample, pad, mode="symmetric")
        dy, dx = offsets[b]
        expected = padded[..., dy : dy + shape[-3], dx : dx + shape[-2], :]
        np.testing.assert_allclose(got[b], expected, atol=1e-7)
    np.testing.assert_array_equal(augment(tf.constant(x), "flow", False, 0, stream).numpy(), x)


def test_balanced_class_weights() -> None:
    labels = [0] * 250 + [1] * 109 + [2] * 83  # the composite
    weights = class_weights(labels, 3)
    assert weights[0] == pytest.approx(442 / (3 * 250))
    assert sum(weights[c] * n for c, n in ((0, 250), (1, 109), (2, 83))) == pytest.approx(442)
    assert class_weights([0, 0, 1], 3)[2] == 0.0


@pytest.mark.parametrize("stack", [True, False])
def test_folds_learn_the_signal_and_keep_their_best_validation_epoch(stack: bool) -> None:
    runtime.configure(FAST, 0)
    x, y, subject = planted()
    folds = [fold("a", subject, 0, 1), fold("b", subject, 2, 3)]
    fits = fit_folds(
        x, y, folds, MODEL, TrainConfig(**{**FAST.__dict__, "stack_folds": stack}),
        kind="flow", input_sizes=SIZES, num_classes=3, seed=1, strategy=runtime.make_strategy(FAST),
    )  # fmt: skip
    for f, data in zip(fits, folds, strict=True):
        scores = [h["val_uf1"] for h in f.history]
        assert len(scores) == f.epochs_run <= FAST.epochs
        assert scores[f.best_epoch] == max(scores)  # the kept epoch is the best on validation
        assert (f.probabilities.argmax(1) == y[data.predict]).mean() > 0.8
        model = f.export()  # the fold as an ordinary Keras model gives the same predictions
        np.testing.assert_allclose(model(x[data.predict]).numpy(), f.probabilities, atol=1e-5)


def test_a_fold_learns_nothing_from_its_test_subject() -> None:
    """Stacked folds share every batch; BatchNorm moments and the loss of a fold are masked to
    its own training samples. A change planted only in fold a's test subject must leave fold
    a's training bit for bit unchanged, and change fold b, which trains on that subject."""
    runtime.configure(FAST, 0)
    x, y, subject = planted()
    shifted = x.copy()
    shifted[subject == 0] = np.clip(shifted[subject == 0] + 0.4, 0, 1)
    folds = [fold("a", subject, 0, 1), fold("b", subject, 2, 3)]

    def run(inputs: np.ndarray):
        (stacked,) = [
            FoldRun(inputs, y, folds, MODEL, FAST, kind="flow", input_sizes=SIZES, num_classes=3, seed=1, strategy=runtime.make_strategy(FAST))
        ]  # fmt: skip
        stacked.fit(0, 4)
        assert stacked.trainer.stacked
        return [np.array(v) for v in stacked.trainer.model.fold_state()], stacked.selection.history

    before, history_before = run(x)
    after, history_after = run(shifted)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a[0], b[0])  # fold a: identical weights and BN statistics
    assert history_before[0] == history_after[0]
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "ordinary"])
def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(stack: bool) -> None:
    """With dropout: a checkpoint carries the dropout seed generators' states too."""
    runtime.configure(FAST, 0)
    x, y, subject = planted()
    folds = [fold("a", subject, 0, 1), fold("b", subject, 2, 3)][: 2 if stack else 1]
    options = dict(
        kind="flow", input_sizes=SIZES, num_classes=3, seed=1, strategy=runtime.make_strategy(FAST)
    )
    model, train = replace(MODEL, dropout=0.5), replace(FAST, stack_folds=stack)
    straight = FoldRun(x, y, folds, model, train, **options)
    straight.fit(0, 6)
    first = FoldRun(x, y, folds, model, train, **options)
    first.fit(0, 3)
    state = first.state(3)
    second = FoldRun(x, y, folds, model, train, **options)
    second.fit(second.load(state), 6)
    for a, b in zip(
        straight.trainer.model.get_weights(), second.trainer.model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert straight.selection.history == second.selection.history

    # a checkpoint taken by an epoch-end hook inside one fit call (as a tune trial takes it)
    hooked = FoldRun(x, y, folds, model, train, **options)
    taken = {}
    hooked.on_epoch = lambda epoch, *_: taken.setdefault(
        epoch, pickle.loads(pickle.dumps(hooked.state(epoch + 1)))
    )
    hooked.fit(0, 6)
    assert sorted(taken) == list(range(6))
    assert taken[2]["losses"] == straight.losses[:3]  # this epoch's loss is already in it
    from_hook = FoldRun(x, y, folds, model, train, **options)
    from_hook.fit(from_hook.load(taken[2]), 6)
    for a, b in zip(
        straight.trainer.model.get_weights(), from_hook.trainer.model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert straight.selection.history == from_hook.selection.history


def run_script(devices: int) -> dict:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tests/scripts/mirrored_fit.py"), str(devices)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_two_logical_devices_train_like_one() -> None:
    """Same global batch, synchronised BatchNorm: 2 replicas follow the same loss curve and
    end as the same function."""
    one, two = run_script(1), run_script(2)
    assert one["replicas"] == 1 and two["replicas"] == 2
    assert len(two["devices"]) == 2
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    assert one["loss"][-1] < one["loss"][0]  # it did train
    np.testing.assert_allclose(two["predictions"], one["predictions"], atol=5e-4)
    assert np.argmax(two["predictions"], 1).tolist() == np.argmax(one["predictions"], 1).tolist()
