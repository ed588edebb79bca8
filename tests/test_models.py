"""Backbones with named placements: pinned parameter counts, placement rules, maps, save/load."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from components.attention import attention_layers, attention_maps
from components.config import AttentionConfig, ModelConfig
from components.models import BACKBONES, PlacementError, build_model

ALL_MAP_POINTS = {
    "ststnet": ("streams", "fused", "pre_head"),
    "off_apexnet": ("stem", "block1", "fused"),
    "resnet_small": ("stem", "block1", "block2", "block3"),
    "htnet": ("stem", "regions", "global"),
    "rcn": ("fused", "recurrent", "pre_head"),
    "clip_net": ("frame",),
}
# Parameter counts (trainable + BN statistics) with the attention at every feature-map point
# (clip_net: temporal_mhsa at 'temporal'), default options. A change here is an architecture
# change: update deliberately.
PINNED = {
    "ststnet": {
        "none": 1715,
        "se": 2079,
        "eca": 1726,
        "channel": 2079,
        "spatial": 2210,
        "cbam": 2574,
        "mhsa": 18949,
    },
    "off_apexnet": {
        "none": 2664475,
        "se": 2665361,
        "eca": 2664486,
        "channel": 2665361,
        "spatial": 2664970,
        "cbam": 2665856,
        "mhsa": 2688611,
    },
    "resnet_small": {
        "none": 78211,
        "se": 81187,
        "eca": 78223,
        "channel": 81187,
        "spatial": 78607,
        "cbam": 81583,
        "mhsa": 136003,
    },
    "htnet": {
        "none": 64675,
        "se": 67503,
        "eca": 64684,
        "channel": 67503,
        "spatial": 64972,
        "cbam": 67800,
        "mhsa": 108803,
    },
    "rcn": {
        "none": 13987,
        "se": 15643,
        "eca": 13996,
        "channel": 15643,
        "spatial": 14284,
        "cbam": 15940,
        "mhsa": 34051,
    },
    "clip_net": {
        "none": 5091,
        "se": 5643,
        "eca": 5094,
        "channel": 5643,
        "spatial": 5190,
        "cbam": 5742,
        "mhsa": 42147,
        "temporal_mhsa": 9635,
    },
}


def config(backbone: str, kind: str, placement: tuple[str, ...] | None = None) -> ModelConfig:
    if placement is None:
        placement = ("temporal",) if kind == "temporal_mhsa" else ALL_MAP_POINTS[backbone]
    return ModelConfig(backbone=backbone, attention=AttentionConfig(type=kind), placement=placement)


@pytest.mark.parametrize(("backbone", "kind"), [(b, k) for b, row in PINNED.items() for k in row])
def test_pinned_parameter_counts(backbone: str, kind: str) -> None:
    model = build_model(config(backbone, kind))
    assert model.count_params() == PINNED[backbone][kind]
    extra = sum(layer.count_params() for layer in attention_layers(model))
    assert model.count_params() - PINNED[backbone]["none"] == extra


@pytest.mark.parametrize("backbone", sorted(PINNED))
def test_an_attention_leaves_every_other_layers_initial_weights_as_they_were(backbone) -> None:
    """Common random numbers (issue 37): built from the same seed, the backbone with any
    attention at every point starts each of its other layers from exactly the weights of the
    backbone without attention — a paired comparison's arms share them."""
    keras.utils.set_random_seed(7)
    plain = {
        layer.name: layer.get_weights() for layer in build_model(config(backbone, "none")).layers
    }
    for kind in PINNED[backbone]:
        if kind == "none":
            continue
        keras.utils.set_random_seed(7)
        model = build_model(config(backbone, kind))
        for name, weights in plain.items():
            mine = model.get_layer(name).get_weights()
            assert len(mine) == len(weights), (kind, name)
            for a, b in zip(mine, weights, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{kind}: {name}")


def test_ststnet_is_the_published_size() -> None:
    model = build_model(config("ststnet", "none", ()))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # conv 84 + 140 + 224, BN gamma/beta 32, dense 400*3 + 3: the authors' code, 1,683
    assert trainable == 84 + 140 + 224 + 32 + 1203 == 1683
    assert model.input_shape == (None, 28, 28, 3) and model.output_shape == (None, 3)


def test_se_at_one_point_adds_exactly_its_mlp() -> None:
    plain = build_model(config("ststnet", "none", ())).count_params()
    model = build_model(config("ststnet", "se", ("fused",)))  # 16 channels, hidden 16 // 4
    assert model.count_params() - plain == (16 * 4 + 4) + (4 * 16 + 16)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_none_everywhere_is_the_plain_backbone(backbone: str) -> None:
    points = tuple(BACKBONES[backbone].points)
    plain = build_model(config(backbone, "none", ()))
    everywhere = build_model(config(backbone, "none", points))
    assert everywhere.count_params() == plain.count_params()
    assert [type(layer) for layer in everywhere.layers] == [type(layer) for layer in plain.layers]


def test_a_point_the_backbone_lacks_is_an_error_when_the_config_is_read() -> None:
    """Checked as params.yaml is read (before Ray or any training starts), not inside every
    unit; with attention ``none`` nothing is placed and the points are not used."""
    from components.config import ConfigError, Params, parse

    message = (
        "backbone 'htnet' has no placement point 'fused'; its points are: stem, regions, global"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(Params, {"model": {"backbone": "htnet", "attention": {"type": "se"}}}, "params.yaml")
    with pytest.raises(ConfigError, match="has no placement point 'block9'"):
        config("ststnet", "se", ("block9",))
    plain = parse(Params, {"model": {"backbone": "htnet", "attention": {"type": "none"}}}, "p")
    assert (
        build_model(plain.model).count_params()
        == build_model(config("htnet", "none", ())).count_params()
    )


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            config("ststnet", "temporal_mhsa", ("fused",)),
            r"'temporal_mhsa' works on frame sequences .* points that fit: none",
        ),
        (
            config("clip_net", "cbam", ("temporal",)),
            r"'cbam' works on feature maps .* points that fit: frame",
        ),
        (config("clip_net", "temporal_mhsa", ("frame",)), r"points that fit: temporal"),
        (config("resnet_small", "se", ("stem", "stem")), r"names a point twice"),
        (config("resnet_small", "se", ()), r"needs at least one placement point"),
        (ModelConfig(backbone="vgg"), r"unknown backbone 'vgg'"),
    ],
)
def test_placement_errors(cfg: ModelConfig, message: str) -> None:
    with pytest.raises(PlacementError, match=message):
        build_model(cfg)


def test_several_points_get_their_own_layers_and_maps() -> None:
    model = build_model(config("ststnet", "spatial", ("streams", "fused")))
    names = [layer.name for layer in attention_layers(model)]
    assert names == ["streams_spatial", "streams_spatial_1", "streams_spatial_2", "fused_spatial"]
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    maps = attention_maps(model, x)
    assert maps["streams_spatial"].shape == (2, 28, 28, 1)
    assert maps["fused_spatial"].shape == (2, 10, 10, 1)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)


def test_clip_net_maps_per_frame_and_over_time() -> None:
    frames = build_model(config("clip_net", "spatial", ("frame",)), clip_frames=4, clip_size=32)
    x = np.random.default_rng(1).normal(size=(2, 4, 32, 32, 1)).astype("float32")
    assert attention_maps(frames, x)["frame_spatial"].shape == (2 * 4, 16, 16, 1)
    temporal = build_model(config("clip_net", "temporal_mhsa"), clip_frames=4, clip_size=32)
    attention = attention_maps(temporal, x)["temporal_temporal_mhsa"]
    assert attention.shape == (2, 4, 4)
    np.testing.assert_allclose(attention.sum(-1), 1, rtol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [
        config("ststnet", "cbam"),
        config("off_apexnet", "mhsa", ("fused",)),
        config("clip_net", "temporal_mhsa"),
        config("htnet", "cbam", ("regions",)),
        config("rcn", "spatial", ("recurrent",)),
    ],
    ids=["ststnet-cbam", "off_apexnet-mhsa", "clip_net-temporal", "htnet-cbam", "rcn-spatial"],
)
def test_model_save_load_round_trip(cfg: ModelConfig, tmp_path: Path) -> None:
    model = build_model(cfg, clip_frames=4, clip_size=32)
    shape = (3, *model.input_shape[1:])
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-5)


def test_rcn_is_the_authors_strided_dilated_streams_and_recurrent_layer() -> None:
    """RCN-W's streams are PyTorch's stride-3 convs (padding = dilation), computed here tap by
    tap, and its recurrent layer is y ← relu(bn(conv(x + y))) twice with the same weights, on
    top of the 1×1 feed-forward conv."""
    model = build_model(config("rcn", "none", ()))
    x = np.random.default_rng(4).normal(size=(2, 28, 28, 3)).astype("float32")
    for stream, dilation, output in (("stream1", 1, "stream1_conv"),
                                     ("stream2", 2, "stream2_stride"),
                                     ("stream3", 3, "stream3_stride")):  # fmt: skip
        kernel, bias = model.get_layer(f"{stream}_conv").get_weights()
        padded = np.pad(x, ((0, 0), (dilation, dilation), (dilation, dilation), (0, 0)))
        expected = np.zeros((2, 10, 10, kernel.shape[-1]), np.float64) + bias
        for i, j, a, b in np.ndindex(10, 10, 3, 3):
            tap = padded[:, 3 * i + dilation * a, 3 * j + dilation * b]  # (2, 3)
            expected[:, i, j] += tap @ kernel[a, b]
        found = keras.Model(model.input, model.get_layer(output).output)(x)
        np.testing.assert_allclose(found, expected, atol=1e-4)
    fused = keras.Model(model.input, model.get_layer("fuse").output)(x, training=False)
    layer = model.get_layer

    def step(inputs, name):
        return layer(f"{name}_relu")(
            layer(f"{name}_bn")(layer(f"{name}_conv")(inputs), training=False)
        )

    y = step(fused, "rcl_feedforward")
    for _ in range(2):
        y = step(fused + y, "rcl_recurrent")
    found = keras.Model(model.input, layer("rcl_pool").input)(x, training=False)
    np.testing.assert_allclose(found, y, atol=1e-5)
    assert model.count_params() == PINNED["rcn"]["none"]


def test_region_attention_stays_inside_each_facial_region() -> None:
    """HTNet's local block: changing one region of the map changes the outputs of that region
    only; with a 1×1 grid (global attention) it changes every position. Splitting a map into
    regions and merging them back is the identity."""
    from components.models.transformer import RegionTransformer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 14, 14, 8)).astype("float32")
    changed = x.copy()
    changed[:, :7, 7:] += rng.normal(size=(2, 7, 7, 8)).astype("float32")  # top-right region
    local = RegionTransformer(heads=2, key_dim=4, regions=2)
    moved = np.abs(local(changed).numpy() - local(x).numpy()).max(axis=(0, 3))
    assert moved[:7, 7:].min() > 1e-3
    assert moved[:7, :7].max() < 1e-6 and moved[7:].max() < 1e-6
    np.testing.assert_array_equal(local._merge(local._split(x), 14, 14).numpy(), x)
    everywhere = RegionTransformer(heads=2, key_dim=4, regions=1)
    assert np.abs(everywhere(changed).numpy() - everywhere(x).numpy()).max(axis=3).min() > 1e-4
    with pytest.raises(ValueError, match="does not split into a 3×3 grid"):
        RegionTransformer(regions=3)(x)
