"""The fold-stacked convolution: F folds' convolutions as one op, on every kernel set.

A stacked model convolves fold ``f``'s input channels ``[f·cin, (f+1)·cin)`` with fold ``f``'s
kernel into output channels ``[f·cout, (f+1)·cout)`` — a grouped convolution. TensorFlow's CPU
kernels differ in what they can do with one: with oneDNN (on by default only on CPUs with
AVX-512 VNNI/BF16 or AMX, or with ``TF_ENABLE_ONEDNN_OPTS=1``) and on GPUs (cuDNN) it trains;
TensorFlow's own Eigen kernels, used on every other CPU, compute it forward but have no
gradient ("Gradients for grouped convolutions are not supported on CPU").

So the stacked convolution has three exact forms:

- ``grouped``: one ``tf.nn.conv2d`` with the grouped filter (where its gradient exists);
- ``patches``: the folds moved into the batch axis, the k×k shifted views of the padded input
  side by side, and one batched matmul with the folds' kernels (gradients are slices,
  transposes and matmuls on every kernel set);
- ``loop``: one ordinary convolution per fold, concatenated.

A probe run once per process (:func:`grouped_gradients_supported`) takes ``grouped`` where its
gradient runs; elsewhere each convolution takes the faster of the other two for its geometry
(:func:`fallback_form`, measured by ``benchmarks.kernels`` under both CPU kernel sets).
``MER_FOLD_CONV=grouped|patches|loop`` pins one form for the process.

Geometry: ``same`` padding; with ``stride`` s > 1 and ``dilation`` d > 1 together (which
TensorFlow's convolutions refuse) the output is the stride-1 dilated convolution sampled every
s-th pixel from the first — the contract of every form.
"""

from __future__ import annotations

import functools
import os
import sys

import tensorflow as tf

from components.errors import ConfigError, PlatformError
from components.models.pinned_form import ENVIRONMENT

FORMS = ("grouped", "patches", "loop")


def fold_conv2d(x, kernel, folds: int, stride: int = 1, dilation: int = 1, form: str | None = None):
    """Fold ``f``'s ``x[..., f·cin:(f+1)·cin]`` convolved with ``kernel[..., f·cout:(f+1)·cout]``
    for every fold: ``x`` (B, H, W, F·cin), ``kernel`` (k, k, cin, F·cout) → (B, H', W', F·cout),
    ``same`` padding, no bias (see the module docstring for stride with dilation). An ``x`` of
    ``cin`` channels (one batch shared by the folds) takes one ordinary convolution."""
    if x.shape[-1] == kernel.shape[2]:
        return _ordinary(x, kernel, stride, dilation)
    form = form or chosen_form(kernel.shape[0], dilation)
    if form == "grouped":
        return _grouped(x, kernel, stride, dilation)
    if form == "loop":
        return _loop(x, kernel, folds, stride, dilation)
    if form == "patches":
        return _patches(x, kernel, folds, stride, dilation)
    raise ValueError(f"unknown fold convolution form {form!r}; forms: {', '.join(FORMS)}")


def _sampled(h, stride: int, dilation: int):
    return h[:, ::stride, ::stride] if stride > 1 and dilation > 1 else h


def _ordinary(x, kernel, stride: int, dilation: int):
    # tf.nn.convolution: its dilated form (space-to-batch) has gradients on every kernel set
    if dilation > 1:
        h = tf.nn.convolution(x, kernel, 1, "SAME", dilations=dilation)
        return _sampled(h, stride, dilation)
    return tf.nn.convolution(x, kernel, stride, "SAME")


def _grouped(x, kernel, stride: int, dilation: int):
    if dilation > 1:
        return _sampled(tf.nn.conv2d(x, kernel, 1, "SAME", dilations=dilation), stride, dilation)
    return tf.nn.conv2d(x, kernel, stride, "SAME")


def _loop(x, kernel, folds: int, stride: int, dilation: int):
    cin, cout = kernel.shape[2], kernel.shape[3] // folds
    parts = [
        _ordinary(
            x[..., f * cin : (f + 1) * cin],
            kernel[..., f * cout : (f + 1) * cout],
            stride,
            dilation,
        )
        for f in range(folds)
    ]
    return tf.concat(parts, axis=-1)


def _padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of one spatial axis."""
    extent = (k - 1) * dilation + 1
    out = -(-size // stride)
    if stride > 1 and dilation > 1:  # the stride-1 dilated convolution, sampled
        before = (extent - 1) // 2
    else:  # TensorFlow's SAME
        before = max((out - 1) * stride + extent - size, 0) // 2
    after = max((out - 1) * stride + extent - size - before, 0)
    return out, before, after


def _patches(x, kernel, folds: int, stride: int, dilation: int):
    # the folds moved into the batch axis (a transpose of the input, k² times smaller than
    # the patches), the k×k shifted views side by side, one batched matmul per fold's kernel
    k, _, cin, width = kernel.shape
    cout = width // folds
    rows, top, bottom = _padding(x.shape[1], k, stride, dilation)
    cols, left, right = _padding(x.shape[2], k, stride, dilation)
    batch = tf.shape(x)[0]
    by_fold = tf.transpose(
        tf.reshape(x, (batch, x.shape[1], x.shape[2], folds, cin)), (3, 0, 1, 2, 4)
    )
    by_fold = tf.reshape(by_fold, (folds * batch, x.shape[1], x.shape[2], cin))
    padded = tf.pad(by_fold, ((0, 0), (top, bottom), (left, right), (0, 0)))
    views = [
        padded[
            :,
            i * dilation : i * dilation + (rows - 1) * stride + 1 : stride,
            j * dilation : j * dilation + (cols - 1) * stride + 1 : stride,
        ]
        for i in range(k)
        for j in range(k)
    ]
    patches = tf.concat(views, axis=-1) if len(views) > 1 else views[0]
    patches = tf.reshape(patches, (folds, batch * rows * cols, k * k * cin))
    weights = tf.transpose(tf.reshape(kernel, (k * k * cin, folds, cout)), (1, 0, 2))
    out = tf.reshape(tf.matmul(patches, weights), (folds, batch, rows, cols, cout))
    return tf.reshape(tf.transpose(out, (1, 2, 3, 0, 4)), (batch, rows, cols, folds * cout))


@functools.cache
def grouped_gradients_supported() -> bool:
    """Whether this process's TensorFlow can take the gradient of a grouped convolution on its
    default device (a tiny probe, run once)."""
    with tf.init_scope():
        # the gradient's two kernels, called directly (init_scope pauses gradient tapes)
        x, kernel, upstream = tf.ones((1, 4, 4, 4)), tf.ones((3, 3, 2, 4)), tf.ones((1, 4, 4, 4))
        geometry = {"strides": [1, 1, 1, 1], "padding": "SAME"}
        try:
            tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=kernel.shape, out_backprop=upstream, **geometry
            ).numpy()
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x.shape, filter=kernel, out_backprop=upstream, **geometry
            ).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            return False
    return True


def fallback_form(k: int, dilation: int) -> str:
    """The faster gradient-safe form of a geometry where ``grouped`` cannot train (measured on
    Eigen kernels by ``benchmarks.kernels``): ``patches`` for 1×1 and dilated kernels, else
    ``loop``."""
    return "patches" if k == 1 or dilation > 1 else "loop"


@functools.cache
def process_form() -> str:
    """This process's choice: ``MER_FOLD_CONV`` if set, else ``grouped`` where its gradient
    runs, else ``fallback`` (:func:`fallback_form` per geometry)."""
    pinned = os.environ.get(ENVIRONMENT, "").strip()
    if pinned:
        if pinned not in FORMS:
            raise ConfigError(f"{ENVIRONMENT}={pinned!r} is not a form; forms: {', '.join(FORMS)}")
        if pinned == "grouped" and not grouped_gradients_supported():
            raise PlatformError(
                f"{ENVIRONMENT}=grouped, but {kernel_set()} have no gradient for grouped "
                f"convolutions: unset {ENVIRONMENT} (the folds' convolutions then take a form "
                "that trains here) or export TF_ENABLE_ONEDNN_OPTS=1"
            )
        return pinned
    return "grouped" if grouped_gradients_supported() else "fallback"


def chosen_form(k: int, dilation: int) -> str:
    """The form a convolution of this geometry takes in this process."""
    form = process_form()
    return fallback_form(k, dilation) if form == "fallback" else form


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels in this process."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def kernel_set() -> str:
    """This process's TensorFlow kernels, in words."""
    if tf.config.list_physical_devices("GPU"):
        return "TensorFlow's GPU kernels"
    return f"TensorFlow's {'oneDNN' if onednn_enabled() else 'Eigen'} CPU kernels"


def describe() -> str:
    """One line: the kernels and the form of the stacked convolution (``mer --version``)."""
    try:
        form = process_form()
    except PlatformError as exc:
        return f"{kernel_set()}; fold-stacked convolution: none trains here ({exc})"
    if form == "fallback":
        form = "per geometry: patches for 1×1 and dilated kernels, loop otherwise"
    return f"{kernel_set()}; fold-stacked convolution: {form}"


if __name__ == "__main__":
    try:
        process_form()
    except (ConfigError, PlatformError) as exc:
        print(exc)
        sys.exit(2)
    print(describe())
