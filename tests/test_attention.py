"""Attention layers: the full Keras contract for every registry entry, and numbers checked
against independent NumPy references with fixed weights."""

import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.attention import ATTENTION, make_attention, used_options
from components.attention.channel import eca_kernel_size

RNG = np.random.default_rng(0)
MAP_SHAPE = (2, 6, 5, 8)  # B, H, W, C (H != W catches transposed reshapes)
SEQ_SHAPE = (2, 7, 12)  # B, T, D
OPTIONS = {"heads": 3, "key_dim": 4, "reduction": 4, "kernel_size": 3}


def sample_input(name: str) -> np.ndarray:
    shape = SEQ_SHAPE if ATTENTION[name].input_rank == 3 else MAP_SHAPE
    return RNG.normal(size=shape).astype("float32")


def expected_weight_count(name: str, shape: tuple) -> int:
    """Parameter count from each module's definition, computed independently of Keras."""
    c = shape[-1]
    hidden = max(1, c // OPTIONS["reduction"])
    mlp = c * hidden + hidden + hidden * c + c
    k = OPTIONS["kernel_size"]
    tokens = shape[1] * shape[2] if len(shape) == 4 else shape[1]
    heads, kd = OPTIONS["heads"], OPTIONS["key_dim"]
    mha = 3 * (c * heads * kd + heads * kd) + heads * kd * c + c
    return {
        "none": 0,
        "se": mlp,
        "channel": mlp,
        "eca": k,
        "spatial": k * k * 2 + 1,
        "cbam": mlp + k * k * 2 + 1,
        "mhsa": tokens * c + mha + 2 * c,
        "temporal_mhsa": tokens * c + mha + 2 * c,
    }[name]


def expected_map_shape(name: str, shape: tuple) -> tuple:
    b, c = shape[0], shape[-1]
    if name in ("none", "spatial", "cbam"):
        return (*shape[:3], 1)
    if name in ("se", "eca", "channel"):
        return (b, c)
    tokens = shape[1] * shape[2] if name == "mhsa" else shape[1]
    return (b, tokens, tokens)


def randomise(layer: keras.layers.Layer, scale: float = 0.5) -> None:
    layer.set_weights([RNG.normal(scale=scale, size=w.shape) for w in layer.get_weights()])


@pytest.mark.parametrize("name", list(ATTENTION))
def test_layer_contract(name: str, tmp_path: Path) -> None:
    x = sample_input(name)
    layer = make_attention(name, layer_name=f"att_{name}", **OPTIONS)
    y, attention = layer(x, return_attention=True)

    # shapes and weight count
    assert tuple(y.shape) == x.shape
    assert tuple(attention.shape) == expected_map_shape(name, x.shape)
    assert layer.compute_output_shape(x.shape) == x.shape
    assert layer.count_params() == expected_weight_count(name, x.shape)
    randomise(layer)
    y = keras.ops.convert_to_numpy(layer(x))
    assert np.isfinite(y).all()
    # the map does not change the outputs
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, return_attention=True)[0]), y)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.attention_map(x)),
        keras.ops.convert_to_numpy(layer(x, return_attention=True)[1]),
    )

    # get_config -> from_config round trip
    config = layer.get_config()
    clone = type(layer).from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), y, rtol=1e-6, atol=1e-6)

    # .keras save -> load without custom_objects -> identical predictions
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(loaded.layers[-1]) is type(layer)

    # one training step: every trainable weight gets a non-zero gradient
    target = RNG.normal(size=x.shape).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum((layer(x, training=True) - target) ** 2)
    gradients = tape.gradient(loss, layer.trainable_weights)
    assert len(gradients) == len(layer.trainable_weights)
    for weight, gradient in zip(layer.trainable_weights, gradients, strict=True):
        assert gradient is not None and np.abs(gradient.numpy()).max() > 0, weight.path


def test_unknown_type_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown attention type 'sse'; valid attention types are: none, se"
    ):
        make_attention("sse")


def test_shared_option_names() -> None:
    assert used_options("se") == ("reduction",)
    assert used_options("spatial") == ("kernel_size",)
    assert used_options("cbam") == ("reduction", "kernel_size")
    assert used_options("mhsa") == ("heads", "key_dim", "max_keys", "positions")
    # options a type does not use are ignored, None keeps the layer default
    assert make_attention("spatial", heads=4, kernel_size=None).kernel_size == 7


# ---------------------------------------------------------------- NumPy references


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def mlp(s, w1, b1, w2, b2):
    return np.maximum(s @ w1 + b1, 0) @ w2 + b2


def conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """'same' cross-correlation over the spatial axes of (B, *S, Cin) with (*K, Cin, Cout)."""
    spatial = kernel.shape[:-2]
    pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in spatial]
    padded = np.pad(x, [(0, 0), *pads, (0, 0)])
    out = np.zeros((*x.shape[:-1], kernel.shape[-1]))
    for offset in np.ndindex(*spatial):
        window = padded[
            (slice(None), *(slice(o, o + n) for o, n in zip(offset, x.shape[1:-1], strict=True)))
        ]
        out += window @ kernel[offset]
    return out + (0 if bias is None else bias)


def channel_reference(x, weights):
    w1, b1, w2, b2 = weights
    return sigmoid(
        mlp(x.mean(axis=(1, 2)), w1, b1, w2, b2) + mlp(x.max(axis=(1, 2)), w1, b1, w2, b2)
    )


def spatial_reference(x, kernel, bias):
    descriptor = np.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], -1)
    return sigmoid(conv_same(descriptor, kernel, bias))


def fixed(name: str, x: np.ndarray):
    layer = make_attention(name, **OPTIONS)
    layer(x)
    randomise(layer)
    out, attention = layer(x, return_attention=True)
    return layer, keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(attention)


def test_se_matches_reference() -> None:
    x = sample_input("se")
    layer, out, weights = fixed("se", x)
    w1, b1, w2, b2 = layer.get_weights()
    expected = sigmoid(mlp(x.mean(axis=(1, 2)), w1, b1, w2, b2))
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, x * expected[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_eca_matches_reference() -> None:
    x = sample_input("eca")
    layer, out, weights = fixed("eca", x)
    (kernel,) = layer.get_weights()  # (k, 1, 1)
    pooled = x.mean(axis=(1, 2))[..., None]  # channels as a length-C sequence
    expected = sigmoid(conv_same(pooled, kernel)[..., 0])
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, x * expected[:, None, None, :], rtol=1e-5, atol=1e-6)
    assert [eca_kernel_size(c) for c in (8, 16, 64, 256)] == [3, 3, 3, 5]


def test_channel_matches_reference() -> None:
    x = sample_input("channel")
    layer, out, weights = fixed("channel", x)
    expected = channel_reference(x, layer.get_weights())
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, x * expected[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_spatial_matches_reference() -> None:
    x = sample_input("spatial")
    layer, out, attention = fixed("spatial", x)
    expected = spatial_reference(x, *layer.get_weights())
    assert attention.shape == (*x.shape[:3], 1)
    np.testing.assert_allclose(attention, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, x * expected, rtol=1e-5, atol=1e-6)


def test_cbam_is_channel_then_spatial() -> None:
    x = sample_input("cbam")
    layer, out, attention = fixed("cbam", x)
    weights = layer.get_weights()
    refined = x * channel_reference(x, weights[:4])[:, None, None, :]
    expected = spatial_reference(refined, *weights[4:])
    np.testing.assert_allclose(attention, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, refined * expected, rtol=1e-5, atol=1e-5)


def layer_norm(x, gamma, beta, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("name", ["mhsa", "temporal_mhsa"])
def test_self_attention_matches_reference(name: str) -> None:
    x = sample_input(name)
    layer, out, attention = fixed(name, x)
    tokens = x.reshape(x.shape[0], -1, x.shape[-1])
    position = layer.position.numpy()
    wq, bq, wk, bk, wv, bv, wo, bo = (w.numpy() for w in layer.mha.weights)
    gamma, beta = layer.norm.gamma.numpy(), layer.norm.beta.numpy()
    t = tokens + position
    q = np.einsum("bnc,chk->bhnk", t, wq) + bq[None, :, None, :]
    k = np.einsum("bnc,chk->bhnk", t, wk) + bk[None, :, None, :]
    v = np.einsum("bnc,chk->bhnk", t, wv) + bv[None, :, None, :]
    scores = softmax(np.einsum("bhnk,bhmk->bhnm", q, k) / np.sqrt(q.shape[-1]))
    heads = np.einsum("bhnm,bhmk->bhnk", scores, v)
    mixed = np.einsum("bhnk,hkc->bnc", heads, wo) + bo
    expected = layer_norm(t + mixed, gamma, beta).reshape(x.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attention, scores.mean(axis=1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(attention.sum(-1), 1, rtol=1e-5)

    # the core equals keras.layers.MultiHeadAttention on the token sequence, same weights
    reference = keras.layers.MultiHeadAttention(
        num_heads=OPTIONS["heads"], key_dim=OPTIONS["key_dim"]
    )
    reference(t, t)
    reference.set_weights([wq, bq, wk, bk, wv, bv, wo, bo])
    core = keras.ops.convert_to_numpy(reference(t, t))
    np.testing.assert_allclose(
        out, layer_norm(t + core, gamma, beta).reshape(x.shape), rtol=1e-4, atol=1e-5
    )


def average_pool_same(grid: np.ndarray, stride: int) -> np.ndarray:
    """(B, H, W, C) average-pooled (window = stride) with ``same`` padding, the padding left
    out of each mean (TensorFlow's rule), written out window by window."""
    _, height, width, _ = grid.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    top = max((out_h - 1) * stride + stride - height, 0) // 2
    left = max((out_w - 1) * stride + stride - width, 0) // 2
    pooled = np.zeros((grid.shape[0], out_h, out_w, grid.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            rows = slice(max(i * stride - top, 0), min(i * stride - top + stride, height))
            cols = slice(max(j * stride - left, 0), min(j * stride - left + stride, width))
            pooled[:, i, j] = grid[:, rows, cols].mean(axis=(1, 2))
    return pooled


@pytest.mark.parametrize(("side", "max_keys", "stride"), [(7, 9, 3), (28, 100, 3), (6, 4, 3)])
def test_pooled_self_attention_matches_reference(
    side: int, max_keys: int, stride: int, tmp_path: Path
) -> None:
    """With ``max_keys``, every position queries the map average-pooled by the smallest
    stride that leaves at most ``max_keys`` positions (PVT's spatial-reduction attention):
    checked against NumPy, and it survives a .keras save and load."""
    from components.attention.self_attention import key_stride

    assert key_stride(side, side, max_keys) == stride
    x = RNG.normal(size=(2, side, side, 6)).astype("float32")
    layer = make_attention("mhsa", heads=2, key_dim=3, max_keys=max_keys)
    layer(x)
    randomise(layer)
    out, attention = (keras.ops.convert_to_numpy(v) for v in layer(x, return_attention=True))
    wq, bq, wk, bk, wv, bv, wo, bo = (w.numpy() for w in layer.mha.weights)
    gamma, beta = layer.norm.gamma.numpy(), layer.norm.beta.numpy()
    t = x.reshape(2, -1, 6) + layer.position.numpy()
    keys = average_pool_same(t.reshape(x.shape), stride).reshape(2, -1, 6)
    assert keys.shape[1] <= max_keys and attention.shape == (2, side * side, keys.shape[1])
    q = np.einsum("bnc,chk->bhnk", t, wq) + bq[None, :, None, :]
    k = np.einsum("bmc,chk->bhmk", keys, wk) + bk[None, :, None, :]
    v = np.einsum("bmc,chk->bhmk", keys, wv) + bv[None, :, None, :]
    scores = softmax(np.einsum("bhnk,bhmk->bhnm", q, k) / np.sqrt(q.shape[-1]))
    mixed = np.einsum("bhnm,bhmk,hkc->bnc", scores, v, wo) + bo
    expected = layer_norm(t + mixed, gamma, beta).reshape(x.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attention, scores.mean(axis=1), rtol=1e-4, atol=1e-6)

    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "pooled.keras")
    loaded = keras.saving.load_model(tmp_path / "pooled.keras")
    assert loaded.layers[-1].max_keys == max_keys
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_map_within_max_keys_is_attended_in_full() -> None:
    """``max_keys`` at least the map's positions changes nothing: the same weights give the
    same outputs as full attention."""
    x = RNG.normal(size=(2, 10, 10, 4)).astype("float32")
    limited = make_attention("mhsa", heads=2, max_keys=100)
    limited(x)
    randomise(limited)
    full = make_attention("mhsa", heads=2)
    full(x)
    full.set_weights(limited.get_weights())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(limited(x)), keras.ops.convert_to_numpy(full(x))
    )


@pytest.mark.parametrize("kind", ["mhsa", "temporal_mhsa"])
def test_without_positions_self_attention_does_not_see_the_tokens_order(kind: str) -> None:
    """``positions: none``: no position embedding (one weight fewer), so permuting the tokens
    (a map's positions, a sequence's frames) permutes the outputs the same way; with the
    learned embedding (the default) the order is seen."""
    shape = (2, 4, 5, 6) if kind == "mhsa" else (2, 7, 6)
    x = RNG.normal(size=shape).astype("float32")
    tokens = x.reshape(shape[0], -1, shape[-1])
    order = RNG.permutation(tokens.shape[1])
    permuted = tokens[:, order].reshape(shape)
    sizes = {}
    for positions, equivariant in (("none", True), ("learned", False)):
        layer = make_attention(kind, heads=2, positions=positions)
        out = keras.ops.convert_to_numpy(layer(x)).reshape(tokens.shape)
        moved = keras.ops.convert_to_numpy(layer(permuted)).reshape(tokens.shape)
        gap = float(np.abs(out[:, order] - moved).max())
        assert (gap < 1e-5) == equivariant, (positions, gap)
        sizes[positions] = len(layer.weights)
    assert sizes["none"] == sizes["learned"] - 1


def test_spatial_map_varies_across_positions() -> None:
    """A feature map that is large in one region gets a map that is not constant per image."""
    x = np.zeros((1, 12, 12, 4), "float32")
    x[:, 2:5, 7:10, :] = 5.0
    layer = make_attention("spatial")
    layer(x)
    kernel, bias = layer.get_weights()
    layer.set_weights([np.full_like(kernel, 0.1), np.zeros_like(bias)])
    attention = keras.ops.convert_to_numpy(layer.attention_map(x))[0, ..., 0]
    assert attention.shape == (12, 12)
    assert attention[3, 8] > attention[10, 1] + 0.3  # the active region is weighted up
    assert attention.std() > 0.1


def test_a_self_attention_map_is_the_attention_each_key_position_receives() -> None:
    """(N, M) self-attention, full (M = N) or to pooled keys, becomes the mean attention each
    of the M key positions receives, on their square grid; frame attention has no layout."""
    from components.evaluation.plots import spatial_map

    rng = np.random.default_rng(3)
    for queries, keys in [(784, 784), (784, 100), (100, 100)]:
        attention = rng.dirichlet(np.ones(keys), size=queries)
        side = math.isqrt(keys)
        heat = spatial_map(attention)
        assert heat.shape == (side, side)
        np.testing.assert_allclose(heat[1, 2], attention[:, side + 2].mean())
        np.testing.assert_allclose(heat.sum(), 1.0)  # rows are distributions
    assert spatial_map(rng.dirichlet(np.ones(8), size=8)) is None
