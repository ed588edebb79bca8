"""Backbones with named placement points.

Each backbone is a function ``(inputs, place, num_classes, dropout) -> probabilities`` that calls
``place(point, x)`` at each of its points; its entry in :mod:`components.models.registry` says
which input it takes and which points it has.

- ``ststnet`` — Liong et al. 2019, shallow triple-stream 3-D CNN on (u, v, strain) 28×28: three
  3×3 conv streams (3, 5, 8 filters, BN, ReLU), 3×3/3 max-pool, concat, 2×2 average pool,
  dense. Layer for layer as the authors' published code: 1,683 trainable parameters.
- ``off_apexnet`` — Gan et al. 2019, two streams on u and v: 5×5 conv 6 → 2×2 max-pool →
  5×5 conv 16 → 2×2 max-pool, concat, FC 1024 → FC 1024 → softmax.
- ``resnet_small`` — a stem and three residual stages (16, 32, 64) for larger flow inputs.
- ``clip_net`` — a per-frame CNN over the T-frame clip, then temporal attention (or average
  pooling) over the frame features.
- ``htnet`` — HTNet-style (Wang et al. 2024) hierarchical transformer on (u, v, strain) 28×28:
  a conv stem, 2×2 patches embedded as 14×14 tokens, a transformer block attending within each
  of the four facial regions (the 2×2 grid of 7×7 tokens: eyes, mouth halves), aggregation
  (3×3/2 max-pool, 3×3 conv, layer norm) to 7×7, a global transformer block, average pooling.
  Scaled to the composite's 442 clips (widths 32/64, one block per level, ~60 k weights).
- ``rcn`` — RCN-W of Xia et al. 2020 ("Revealing the invisible with model and data shrinking
  for composite-database micro-expression recognition", IEEE TIP), the recurrent convolutional
  network built for the MEGC 2019 composite, as in the authors' code: three stride-3 streams on
  (u, v, strain) — a 3×3 conv (16) and 3×3 convs dilated 2 and 3 (8 each), each conv → ReLU →
  BN → dropout — concatenated (32 × 10×10), one recurrent convolutional layer (a 1×1
  feed-forward conv y, then a shared 3×3 conv applied twice, y ← conv(x + y)), 2×2 max-pool,
  dropout, dense (13,795 trainable weights). The authors' 60×60 input is the released 28×28 here (5×5 maps before the head,
  as theirs after adaptive pooling); dilated stride-3 convs are dilated convs sampled every 3
  pixels (the same taps); every dropout takes ``model.dropout``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from components.models.layers import ChannelSlice
from components.models.transformer import RegionTransformer

Place = Callable[[str, object], object]


def batch_norm(name: str | None) -> layers.BatchNormalization:
    """BatchNorm with statistics over the global batch under tf.distribute (synchronised
    across replicas), so N devices train like one; identical on a single device."""
    return layers.BatchNormalization(synchronized=True, name=name)


def conv_bn_relu(x, filters: int, kernel: int, name: str, stride: int = 1):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def classifier(x, num_classes: int, dropout: float):
    x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="probabilities")(x)


def ststnet(inputs, place: Place, num_classes: int, dropout: float):
    streams = []
    for filters in (3, 5, 8):
        x = conv_bn_relu(inputs, filters, 3, name=f"stream{filters}")
        x = place("streams", x)
        streams.append(layers.MaxPooling2D(3, strides=3, padding="same", name=f"pool{filters}")(x))
    x = layers.Concatenate(name="fuse")(streams)
    x = place("fused", x)
    x = layers.AveragePooling2D(2, name="avgpool")(x)
    x = place("pre_head", x)
    return classifier(layers.Flatten(name="flatten")(x), num_classes, dropout)


def off_apexnet(inputs, place: Place, num_classes: int, dropout: float):
    streams = []
    for index, name in enumerate(("u", "v")):
        x = ChannelSlice(index, index + 1, name=f"{name}_flow")(inputs)
        x = layers.Conv2D(6, 5, padding="same", activation="relu", name=f"{name}_conv1")(x)
        x = place("stem", x)
        x = layers.MaxPooling2D(2, name=f"{name}_pool1")(x)
        x = layers.Conv2D(16, 5, padding="same", activation="relu", name=f"{name}_conv2")(x)
        x = place("block1", x)
        streams.append(layers.MaxPooling2D(2, name=f"{name}_pool2")(x))
    x = layers.Concatenate(name="fuse")(streams)
    x = place("fused", x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(1024, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="fc1_dropout")(x)
    x = layers.Dense(1024, activation="relu", name="fc2")(x)
    return classifier(x, num_classes, dropout)


def residual_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = conv_bn_relu(x, filters, 3, name=f"{name}_a", stride=stride)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_b_conv")(y)
    y = batch_norm(f"{name}_b_bn")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_shortcut")(x)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def resnet_small(inputs, place: Place, num_classes: int, dropout: float):
    x = place("stem", conv_bn_relu(inputs, 16, 3, name="stem"))
    for index, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        x = place(f"block{index}", residual_block(x, filters, stride, name=f"block{index}"))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return classifier(x, num_classes, dropout)


def clip_net(inputs, place: Place, num_classes: int, dropout: float):
    def frames(layer, name):
        return layers.TimeDistributed(layer, name=name)

    x = frames(layers.Conv2D(16, 3, padding="same"), "frame_conv1")(inputs)
    x = frames(batch_norm(None), "frame_bn1")(x)
    x = layers.ReLU(name="frame_relu1")(x)
    x = frames(layers.MaxPooling2D(2), "frame_pool1")(x)
    x = frames(layers.Conv2D(32, 3, padding="same"), "frame_conv2")(x)
    x = frames(batch_norm(None), "frame_bn2")(x)
    x = layers.ReLU(name="frame_relu2")(x)
    x = place("frame", x)
    x = frames(layers.MaxPooling2D(2), "frame_pool2")(x)
    x = frames(layers.GlobalAveragePooling2D(), "frame_gap")(x)  # (B, T, 32)
    x = place("temporal", x)
    x = layers.GlobalAveragePooling1D(name="temporal_pool")(x)
    return classifier(x, num_classes, dropout)


def htnet(inputs, place: Place, num_classes: int, dropout: float):
    x = place("stem", conv_bn_relu(inputs, 16, 3, name="stem"))
    x = layers.Conv2D(32, 2, strides=2, name="patch_embed")(x)  # 14×14 tokens
    x = RegionTransformer(heads=2, key_dim=16, regions=2, name="regions_block")(x)
    x = place("regions", x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="aggregate_pool")(x)  # 7×7
    x = layers.Conv2D(64, 3, padding="same", name="aggregate_conv")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="aggregate_norm")(x)
    x = RegionTransformer(heads=2, key_dim=16, regions=1, name="global_block")(x)
    x = place("global", x)
    x = layers.LayerNormalization(epsilon=1e-6, name="head_norm")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return classifier(x, num_classes, dropout)


def rcn(inputs, place: Place, num_classes: int, dropout: float):
    streams = []
    for name, filters, dilation in (("stream1", 16, 1), ("stream2", 8, 2), ("stream3", 8, 3)):
        if dilation == 1:
            x = layers.Conv2D(filters, 3, strides=3, padding="same", name=f"{name}_conv")(inputs)
        else:  # Keras has no strided dilated conv: the dilated conv sampled every 3rd pixel
            x = layers.Conv2D(
                filters, 3, dilation_rate=dilation, padding="same", name=f"{name}_conv"
            )(inputs)
            x = layers.AveragePooling2D(1, strides=3, name=f"{name}_stride")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
        x = batch_norm(f"{name}_bn")(x)
        streams.append(layers.Dropout(dropout, name=f"{name}_dropout")(x))
    x = place("fused", layers.Concatenate(name="fuse")(streams))  # (10, 10, 32)
    width = x.shape[-1]
    y = conv_bn_relu(x, width, 1, name="rcl_feedforward")
    recurrent = [
        layers.Conv2D(width, 3, padding="same", name="rcl_recurrent_conv"),
        batch_norm("rcl_recurrent_bn"),
        layers.ReLU(name="rcl_recurrent_relu"),
    ]
    for step in (1, 2):  # the same weights each step
        y = layers.Add(name=f"rcl_input{step}")([x, y])
        for layer in recurrent:
            y = layer(y)
    y = place("recurrent", y)
    y = layers.MaxPooling2D(2, name="rcl_pool")(y)  # (5, 5, 32)
    y = place("pre_head", y)
    return classifier(layers.Flatten(name="flatten")(y), num_classes, dropout)


def input_layer(kind: str, flow_size: int, clip_frames: int, clip_size: int) -> keras.KerasTensor:
    """The model input: ``flow`` (S, S, 3: u, v, strain) or ``clip`` (T, S, S, 1 grey frames)."""
    if kind == "flow":
        return keras.Input((flow_size, flow_size, 3), name="flow")
    return keras.Input((clip_frames, clip_size, clip_size, 1), name="clip")
