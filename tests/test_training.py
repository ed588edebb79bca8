"""The training loop: batches, class weights, per-fold epoch selection, resumption, masked
stacking (no fold learns from its test subjects) and the multi-device path."""

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from components.config import AttentionConfig, ModelConfig, TrainConfig
from components.features.augment import apply_augmentation, draw_augmentation
from components.training import runtime
from components.training.data import StreamOptions, fold_stream, training_stream
from components.training.fold_models import FoldData, class_weights
from components.training.run import fold_runs
from components.training.schedule import fold_epoch, unit_epoch

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


def runs(x, y, folds, model, train, seed: int = 1, datasets=None) -> list:
    return fold_runs(
        x, y, folds, model, train, kind="flow", input_sizes=SIZES, num_classes=3, seed=seed,
        strategy=runtime.make_strategy(train), datasets=datasets,
    )  # fmt: skip


def fit(x, y, folds, model, train, datasets=None) -> list:
    out = []
    for run in runs(x, y, folds, model, train, datasets=datasets):
        run.fit()
        out += run.finish()
    return out


FAST = TrainConfig(
    epochs=25, patience=8, min_epochs=3, learning_rate=0.01, threads=1, augment_flip=False
)


def test_a_folds_epoch_is_a_function_of_its_key_and_the_epoch() -> None:
    """Each sample once, in ceil(n / batch) steps whose sizes differ by at most one; the same
    plan for the same (key, epoch), another for another epoch or key."""
    train = np.arange(100, 137)  # 37 samples
    plan = fold_epoch(train, batch=8, key=5, epoch=2, flip=True, shift_px=2)
    sizes = plan.mask.sum(axis=1)
    assert plan.steps == 5 and sizes.max() - sizes.min() <= 1 and sizes.sum() == 37
    assert sorted(plan.index[plan.mask > 0].tolist()) == train.tolist()
    again = fold_epoch(train, batch=8, key=5, epoch=2, flip=True, shift_px=2)
    for name in ("index", "mask", "mirror", "offsets"):
        np.testing.assert_array_equal(getattr(plan, name), getattr(again, name))
    assert not np.array_equal(plan.index, fold_epoch(train, 8, 5, 3, True, 2).index)
    assert not np.array_equal(plan.index, fold_epoch(train, 8, 6, 2, True, 2).index)
    real = plan.mask > 0
    assert 0 < plan.mirror[real].mean() < 1 and len(np.unique(plan.offsets[real])) == 5


def test_a_fold_has_the_same_batches_in_any_unit() -> None:
    """A fold's plan inside a stack is its plan alone, whatever the other folds, their sizes
    and its position; a shorter fold idles (masked) for the steps it does not have."""
    a, b, c = np.arange(0, 37), np.arange(20, 90), np.arange(5, 14)
    alone = fold_epoch(a, 8, key=11, epoch=1, flip=True, shift_px=1)
    for others, position in (([b], 0), ([c, b], 2), ([], 0)):
        members = [*others[:position], a, *others[position:]]
        keys = [21, 31][: len(others)]
        keys = [*keys[:position], 11, *keys[position:]]
        plans = [fold_epoch(t, 8, k, 1, True, 1) for t, k in zip(members, keys, strict=True)]
        stacked = unit_epoch(plans)
        steps, rows = alone.index.shape
        np.testing.assert_array_equal(stacked.index[:steps, :rows, position], alone.index)
        np.testing.assert_array_equal(stacked.mirror[:steps, :rows, position], alone.mirror)
        np.testing.assert_array_equal(stacked.offsets[:steps, :rows, position], alone.offsets)
        assert stacked.mask[:, :, position].sum() == len(a)
        assert not stacked.mask[steps:, :, position].any()  # idle after its own steps


def test_streams_give_the_planned_batches_and_resume_exactly() -> None:
    x, y, _ = planted(subjects=2, per_class=2)  # 12 samples
    options = StreamOptions("flow", batch=5, flip=True, shift_px=2)
    train = np.arange(1, 12)
    whole = [
        (b[0].numpy(), b[1].numpy()) for b in training_stream(x, y, train, 9, options, range(3))
    ]
    assert len(whole) == 3 * 3
    plan = fold_epoch(train, 5, 9, 1, True, 2)
    import tensorflow as tf

    for step, (xb, yb) in enumerate(whole[3:6]):
        real = plan.mask[step] > 0
        rows = plan.index[step][real]
        expected = apply_augmentation(
            tf.constant(x[rows]), "flow", tf.constant(plan.mirror[step][real]),
            tf.constant(plan.offsets[step][real]), True, 2,
        ).numpy()  # fmt: skip
        np.testing.assert_array_equal(xb, expected)
        np.testing.assert_array_equal(yb, y[rows])
    resumed = [b[0].numpy() for b in training_stream(x, y, train, 9, options, range(1, 3))]
    for (a, _), b in zip(whole[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    folds = [np.arange(0, 8), np.arange(4, 12)]
    stacked = list(fold_stream(x, y, folds, [9, 4], options, range(2)))
    assert len(stacked) == 2 * 2
    own = fold_epoch(folds[0], 5, 9, 1, True, 2)
    (xb, mask), yb = stacked[2]
    real = own.mask[0] > 0
    np.testing.assert_array_equal(yb.numpy()[: real.sum(), 0], y[own.index[0][real]])
    np.testing.assert_array_equal(mask.numpy()[: len(real), 0], own.mask[0])


def test_flip_negates_u_and_keeps_v_and_strain() -> None:
    import tensorflow as tf

    x, _, _ = planted(subjects=1, per_class=4)
    mirror, offsets = draw_augmentation(np.random.default_rng(2), len(x), True, 0)
    assert 0 < mirror.sum() < len(x)
    flipped = apply_augmentation(
        tf.constant(x), "flow", tf.constant(mirror), tf.constant(offsets), True, 0
    ).numpy()
    for k in range(len(x)):
        if mirror[k]:
            np.testing.assert_allclose(flipped[k][:, ::-1, 0], 1.0 - x[k][..., 0], atol=1e-6)
            np.testing.assert_array_equal(flipped[k][:, ::-1, 1:], x[k][..., 1:])
        else:
            np.testing.assert_array_equal(flipped[k], x[k])


@pytest.mark.parametrize("shape", [(9, 28, 28, 3), (4, 3, 16, 16, 3)])
def test_augment_is_mirror_then_symmetric_padded_shift(shape) -> None:
    """Against numpy: mirror the chosen samples (flow's u -> 1 - u), pad symmetrically by
    ``shift_px``, crop at the drawn offsets; images and clips alike."""
    import tensorflow as tf

    x = np.random.default_rng(6).uniform(size=shape).astype("float32")
    mirror, offsets = draw_augmentation(np.random.default_rng(11), shape[0], True, 2)
    got = apply_augmentation(
        tf.constant(x), "flow", tf.constant(mirror), tf.constant(offsets), True, 2
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


def test_balanced_class_weights() -> None:
    labels = [0] * 250 + [1] * 109 + [2] * 83  # the composite
    weights = class_weights(labels, 3)
    assert weights[0] == pytest.approx(442 / (3 * 250))
    assert sum(weights[c] * n for c, n in ((0, 250), (1, 109), (2, 83))) == pytest.approx(442)
    assert class_weights([0, 0, 1], 3)[2] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("stack", [True, False])
def test_folds_learn_the_signal_and_keep_their_best_validation_epoch(stack: bool) -> None:
    """Trained as the project trains (no early stop before 20 epochs; batches of 8 give its 36
    samples enough steps): with FAST's 25 epochs, 3 before a stop and batches of 16, 3 of 8
    initialisations stalled at chance and stopped, a test that held by the luck of one seed;
    these settings learnt the signal from 16 of 16."""
    train = replace(FAST, stack_folds=stack, epochs=40, min_epochs=20, batch_size=8)
    runtime.configure(train, 0)
    x, y, subject = planted()
    folds = [fold("a", subject, 0, 1), fold("b", subject, 2, 3)]
    fits = fit(x, y, folds, MODEL, train)
    for f, data in zip(fits, folds, strict=True):
        scores = [h["val_uf1"] for h in f.history]
        assert len(scores) == f.epochs_run <= train.epochs
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
        (stacked,) = runs(inputs, y, folds, MODEL, FAST)
        stacked.fit(0, 4)
        assert stacked.stacked
        return [np.array(v) for v in stacked.models.model.fold_state()], stacked.selection.history

    before, history_before = run(x)
    after, history_after = run(shifted)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a[0], b[0])  # fold a: identical weights and BN statistics
    assert history_before[0] == history_after[0]
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(before, after, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("stack", [True, False], ids=["stacked", "ordinary"])
def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(stack: bool) -> None:
    """With dropout: a checkpoint carries the dropout seed generators' states too."""
    runtime.configure(FAST, 0)
    x, y, subject = planted()
    folds = [fold("a", subject, 0, 1), fold("b", subject, 2, 3)][: 2 if stack else 1]
    model, train = replace(MODEL, dropout=0.5), replace(FAST, stack_folds=stack)
    (straight,) = runs(x, y, folds, model, train)
    straight.fit(0, 6)
    (first,) = runs(x, y, folds, model, train)
    first.fit(0, 3)
    state = first.state(3)
    (second,) = runs(x, y, folds, model, train)
    second.fit(second.load(state), 6)
    for a, b in zip(
        straight.models.model.get_weights(), second.models.model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert straight.selection.history == second.selection.history

    # a checkpoint taken by an epoch-end hook inside one fit call (as a tune trial takes it)
    (hooked,) = runs(x, y, folds, model, train)
    taken = {}
    hooked.on_epoch = lambda epoch, *_: taken.setdefault(
        epoch, copy.deepcopy(hooked.state(epoch + 1))
    )
    hooked.fit(0, 6)
    assert sorted(taken) == list(range(6))
    assert taken[2]["losses"] == straight.losses[:3]  # this epoch's loss is already in it
    (from_hook,) = runs(x, y, folds, model, train)
    from_hook.fit(from_hook.load(taken[2]), 6)
    for a, b in zip(
        straight.models.model.get_weights(), from_hook.models.model.get_weights(), strict=True
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


@pytest.mark.slow
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


def fold_outcome(fits, name: str, x: np.ndarray):
    """A fold's validation history and its exported model's outputs on every sample."""
    (found,) = [f for f in fits if f.name == name]
    return found.history, found.export()(x).numpy()


STACKED_MODELS = {
    "ststnet": MODEL,
    "rcn": ModelConfig("rcn", AttentionConfig("spatial"), ("recurrent",), 0.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", STACKED_MODELS.values(), ids=STACKED_MODELS.keys())
def test_a_fold_trains_the_same_stacked_or_alone(model: ModelConfig) -> None:
    """The same fold gets the same batches (flip and shifts on) and the same loss whether it
    trains in a stack of folds of other sizes or alone as an ordinary Keras model: the first
    step's loss agrees to float rounding. Adam turns rounding-level gradients (a conv bias
    before BatchNorm has a gradient of ~1e-6, noise) into full steps, so after 8 epochs the
    ordinary model itself moves when its input is nudged by a few ulp (measured: validation
    loss by up to 0.02, a few near-tie classes flip; more under Eigen kernels than oneDNN; in
    two modes, a near-tie flipping or not, so the drift is the largest of four nudges): the
    stacked fold's curve and predictions must stay within twice that drift of the ordinary
    model's, measured in the same run (dropout off: its masks are drawn differently). A real
    difference (another batch, a fold's BatchNorm statistics moving with others' rows) is far
    outside it: `make test-mutations`. For every backbone with a stacked form."""
    import tensorflow as tf

    from components.training.fold_models import fold_models

    runtime.configure(FAST, 0)
    x, y, subject = planted(subjects=8, per_class=2)
    train = replace(FAST, epochs=8, patience=8, augment_flip=True, augment_shift_px=2)
    a = fold("a", subject, 0, 1, seed=17)
    small = fold("s", subject, 2, 3, seed=5)  # other sizes: more and fewer steps than a
    small = replace(small, train=small.train[:9])
    large = replace(fold("l", subject, 4, 5, seed=6), train=np.arange(len(y)))
    options = dict(kind="flow", input_sizes=SIZES, num_classes=3, seed=1,
                   strategy=runtime.make_strategy(train))  # fmt: skip
    (ordinary,) = fold_models(x, y, [a], model, replace(train, stack_folds=False), **options)
    (stack,) = fold_models(x, y, [small, a, large], model, train, **options)
    assert stack.stacked
    (xo, yo) = next(iter(ordinary.stream(range(1))))
    (inputs, ys) = next(iter(stack.stream(range(1))))  # (x, mask[, patch statistics])
    real = inputs[1].numpy()[:, 1] > 0
    np.testing.assert_array_equal(inputs[0].numpy()[real, 1], xo.numpy())  # the same batch
    weights = tf.constant(ordinary.class_weights[0][yo.numpy()])
    loss_alone = ordinary.model.compute_loss(
        x=xo, y=yo, y_pred=ordinary.model(xo, training=True), sample_weight=weights
    )
    per_fold = stack.model.fold_losses(inputs, ys, stack.model(inputs, training=True))
    assert float(per_fold[1]) == pytest.approx(float(loss_alone), abs=1e-5)

    alone = replace(train, stack_folds=False)
    history, outputs = fold_outcome(fit(x, y, [a], model, alone), "a", x)
    nudges = [
        outcome_distance(
            (history, outputs),
            fold_outcome(
                fit((x * np.float32(1 + u)).astype(x.dtype), y, [a], model, alone), "a", x
            ),
        )
        for u in NUDGES
    ]
    drift = {measure: max(n[measure] for n in nudges) for measure in FLOOR}
    for members in ([small, a, large], [a, small]):
        stacked = fold_outcome(fit(x, y, members, model, train), "a", x)
        assert len(stacked[0]) == len(history)
        distance = outcome_distance((history, outputs), stacked)
        for measure, value in distance.items():
            assert value <= 2 * drift[measure] + FLOOR[measure], (measure, distance, drift)


#: the input scaled by 1 ± 2 and ± 4 ulp: the drift is the largest of them (it is bimodal, a
#: near-tie sample flipping or not, so one nudge may land in the small mode by chance)
NUDGES = (2**-22, -(2**-22), 2**-21, -(2**-21))
#: differences no drift of the ordinary model can excuse (the old fixed tolerances)
FLOOR = {"val_loss": 5e-3, "outputs": 2e-2, "flipped": 0}


def outcome_distance(one, other) -> dict[str, float]:
    """How far two trainings of a fold ended apart: the largest per-epoch validation-loss
    difference, the largest output difference, and how many samples changed class."""
    (history, outputs), (other_history, other_outputs) = one, other
    return {
        "val_loss": max(
            abs(m["val_loss"] - t["val_loss"]) for m, t in zip(history, other_history, strict=True)
        ),
        "outputs": float(np.abs(outputs - other_outputs).max()),
        "flipped": int((outputs.argmax(1) != other_outputs.argmax(1)).sum()),
    }


@pytest.mark.slow
def test_stopped_folds_leave_the_stack_and_the_others_train_on_unchanged(monkeypatch) -> None:
    """Folds that stopped leave a stack (a smaller stack takes over every other fold's weights,
    optimizer and selection state): each fold's curve, chosen epoch and predictions are those
    of the same stack keeping every fold to the end, and the stopped folds' exported models
    are their best epochs'."""
    import components.training.run as run_module

    runtime.configure(FAST, 0)
    x, y, subject = planted(subjects=10, per_class=2)
    train = replace(FAST, epochs=14, patience=2, min_epochs=3)
    folds = [fold(f"f{k}", subject, 2 * k, 2 * k + 1, seed=20 + k) for k in range(4)]
    folds[0] = replace(folds[0], train=folds[0].train[:12])  # another size

    def trained(leaving: bool):
        monkeypatch.setattr(run_module, "leave_after", (lambda n: 1) if leaving else (lambda n: 0))
        (run,) = runs(x, y, folds, MODEL, train)
        run.fit()
        return run, run.finish()

    run, fits = trained(True)
    assert len(run.folds) < len(folds)  # some left before the end
    kept, reference = trained(False)
    assert len(kept.folds) == len(folds)
    stops = sorted({f.epochs_run for f in reference})
    assert len(stops) > 1 and stops[0] < train.epochs  # they stopped at different epochs
    assert [f.name for f in fits] == [f.name for f in folds]
    for mine, theirs in zip(fits, reference, strict=True):
        assert (mine.epochs_run, mine.best_epoch) == (theirs.epochs_run, theirs.best_epoch)
        assert len(mine.history) == len(theirs.history)
        for a, b in zip(mine.history, theirs.history, strict=True):
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=5e-3)
        np.testing.assert_allclose(mine.probabilities, theirs.probabilities, atol=2e-2)
        index = folds[[f.name for f in folds].index(mine.name)].predict
        exported = mine.export()(x[index]).numpy()
        np.testing.assert_allclose(exported, mine.probabilities, atol=1e-5)
