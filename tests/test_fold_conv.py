"""The fold-stacked convolution's forms against per-fold ordinary convolutions, forward and
backward; the probe that picks a form; platform limits reported as one line, never retried."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from components.errors import ConfigError, PlatformError
from components.models import fold_conv
from components.models.fold_conv import FORMS, fold_conv2d, grouped_gradients_supported
from components.models.pinned_form import check_pinned_form
from components.training.runtime import kernel_limits
from components.tuning.search import Interruption, check_complete

#: (map size, cin, cout, kernel, stride, dilation): the stacked backbones' geometries and odd ones
GEOMETRIES = [
    (12, 3, 4, 3, 1, 1),  # ststnet's streams
    (12, 3, 4, 3, 3, 1),  # rcn's strided stream
    (12, 3, 2, 3, 3, 3),  # rcn's dilated, sampled stream
    (5, 6, 6, 1, 1, 1),  # rcn's 1×1
    (13, 4, 5, 3, 2, 2),  # odd size, stride and dilation
    (11, 2, 3, 5, 2, 1),  # 5×5, odd size, TF's asymmetric SAME padding
]
FOLDS = 3
LIMITS = "not supported on CPU|filter_size does not have enough|do not yet support dilation"


def reference(x, kernel, stride: int, dilation: int):
    """Fold by fold: the ordinary (Keras-style) convolution of each fold's channels."""
    cin, cout = kernel.shape[2], kernel.shape[3] // FOLDS
    outs = []
    for f in range(FOLDS):
        xf, kf = x[..., f * cin : (f + 1) * cin], kernel[..., f * cout : (f + 1) * cout]
        if dilation > 1:
            out = tf.nn.convolution(xf, kf, 1, "SAME", dilations=dilation)[:, ::stride, ::stride]
        else:
            out = tf.nn.convolution(xf, kf, stride, "SAME")
        outs.append(out)
    return tf.concat(outs, axis=-1)


def with_gradients(function, x, kernel):
    @tf.function
    def run(x, kernel):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = function(x, kernel)
            loss = tf.reduce_sum(y * tf.sin(y))  # a non-trivial upstream gradient
        return (y, *tape.gradient(loss, [x, kernel]))

    return [v.numpy() for v in run(x, kernel)]


def inputs(size, cin, cout, k, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(2, size, size, FOLDS * cin)), tf.float32)
    kernel = tf.constant(rng.normal(size=(k, k, cin, FOLDS * cout)), tf.float32)
    return x, kernel


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_every_form_is_the_per_fold_convolution_forward_and_backward(form, geometry):
    size, cin, cout, k, stride, dilation = geometry
    x, kernel = inputs(size, cin, cout, k)
    expected = with_gradients(lambda a, b: reference(a, b, stride, dilation), x, kernel)

    def stacked(a, b):
        return fold_conv2d(a, b, FOLDS, stride, dilation, form)

    forward = stacked(x, kernel).numpy()
    np.testing.assert_allclose(forward, expected[0], rtol=1e-4, atol=1e-4)
    assert forward.shape == expected[0].shape
    if form == "grouped" and not grouped_gradients_supported():
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            with_gradients(stacked, x, kernel)  # the probe said so: the kernel set has none
        assert re.search(LIMITS, str(caught.value))
        with pytest.raises(PlatformError), kernel_limits():  # and it is named as a limit
            with_gradients(stacked, x, kernel)
        return
    for got, want in zip(with_gradients(stacked, x, kernel), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_a_shared_batch_takes_one_ordinary_convolution_on_every_kernel_set():
    """The input of cin channels (one batch for every fold): no grouping, and the dilated case
    (whose plain conv2d gradient Eigen lacks) trains."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 12, 12, 3)), tf.float32)
    kernel = tf.constant(rng.normal(size=(3, 3, 3, FOLDS * 2)), tf.float32)
    got = with_gradients(lambda a, b: fold_conv2d(a, b, FOLDS, 3, 3), x, kernel)
    tiled = tf.tile(x, (1, 1, 1, FOLDS))  # each fold sees the same batch
    want = with_gradients(lambda a, b: reference(tf.tile(a, (1, 1, 1, FOLDS)), b, 3, 3), x, kernel)
    assert tiled.shape[-1] == FOLDS * 3
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_the_probe_agrees_with_the_kernels():
    x, kernel = inputs(6, 2, 2, 3)

    def grouped(a, b):
        return fold_conv2d(a, b, FOLDS, form="grouped")

    try:
        with_gradients(grouped, x, kernel)
        trains = True
    except tf.errors.InvalidArgumentError:
        trains = False
    assert grouped_gradients_supported() is trains


@pytest.fixture
def fresh_choice(monkeypatch):
    fold_conv.process_form.cache_clear()
    yield monkeypatch
    fold_conv.process_form.cache_clear()


def test_the_process_takes_grouped_where_it_trains_else_the_fallback(fresh_choice):
    fresh_choice.delenv(fold_conv.ENVIRONMENT, raising=False)
    form = fold_conv.process_form()
    assert form == ("grouped" if grouped_gradients_supported() else "fallback")
    chosen = {fold_conv.chosen_form(k, d) for k, d in [(3, 1), (1, 1), (3, 3)]}
    assert chosen == ({"grouped"} if form == "grouped" else {"loop", "patches"})


def test_a_pinned_form_is_checked(fresh_choice):
    fresh_choice.setenv(fold_conv.ENVIRONMENT, "winograd")
    with pytest.raises(ConfigError, match="MER_FOLD_CONV='winograd' is not a form"):
        fold_conv.process_form()
    fold_conv.process_form.cache_clear()
    fresh_choice.setenv(fold_conv.ENVIRONMENT, "patches")
    assert fold_conv.chosen_form(3, 1) == "patches"
    fold_conv.process_form.cache_clear()
    fresh_choice.setenv(fold_conv.ENVIRONMENT, "grouped")
    if grouped_gradients_supported():
        assert fold_conv.process_form() == "grouped"
    else:
        with pytest.raises(PlatformError, match=r"unset MER_FOLD_CONV .* TF_ENABLE_ONEDNN_OPTS=1"):
            fold_conv.process_form()
        assert "none trains here" in fold_conv.describe()


def test_a_kernel_limit_becomes_one_line_naming_the_fix():
    limit = "Gradients for grouped convolutions are not supported on CPU. Please file a request"
    fix = "cannot train this model: Gradients for grouped .*TF_ENABLE_ONEDNN_OPTS=1"
    with pytest.raises(PlatformError, match=fix), kernel_limits():
        raise tf.errors.InvalidArgumentError(None, None, f"Graph execution error:\n{limit}")
    # any other error is left as it is
    with pytest.raises(tf.errors.InvalidArgumentError, match="shapes differ"), kernel_limits():
        raise tf.errors.InvalidArgumentError(None, None, "shapes differ")


def test_a_search_whose_trials_hit_a_platform_limit_says_so_not_resume():
    statuses = {"a": (0, "ERROR"), "b": (1, "TERMINATED")}
    limit = PlatformError("TensorFlow's kernels on this machine cannot train this model: X")
    wrapped = RuntimeError("trial failed")
    wrapped.__cause__ = limit
    with pytest.raises(Exception, match="a retry cannot cure this") as caught:
        check_complete(statuses, Interruption(), 2, [wrapped])
    assert "cannot train this model: X" in str(caught.value)
    assert "resumes" not in str(caught.value)
    with pytest.raises(Exception, match="resumes and retries"):  # a crash: resumable as before
        check_complete(statuses, Interruption(), 2, [RuntimeError("worker died")])


@pytest.mark.slow
def test_a_stage_refuses_a_pinned_form_before_it_trains(tmp_path, monkeypatch):
    """``mer evaluate`` with a form that does not exist (or cannot train here) ends at once with
    one line and exit code 2: nothing starts, no traceback."""
    import subprocess
    import sys

    env = {**os.environ, fold_conv.ENVIRONMENT: "winograd"}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "evaluate"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "mer evaluate: MER_FOLD_CONV='winograd' is not a form; forms: grouped, patches, loop"
    ]
    monkeypatch.setenv(fold_conv.ENVIRONMENT, "grouped")
    if grouped_gradients_supported():
        check_pinned_form()  # trains here: nothing to say
    else:
        with pytest.raises(PlatformError, match="have no gradient for grouped convolutions"):
            check_pinned_form()
