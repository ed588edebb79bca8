"""What a model costs: TensorFlow's profiler count of its floating-point operations, and each
model's cost relative to the cheapest of a set (what a sweep's units are sized and ordered by).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from components.config import ModelConfig


def forward_flops(model) -> int:
    """FLOPs of one sample's forward pass through a Keras ``model`` (TensorFlow's profiler on
    the frozen inference graph; a multiply-add is 2 FLOPs)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = (
        tf.compat.v1.profiler.ProfileOptionBuilder(
            tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        )
        .with_empty_output()
        .build()
    )
    info = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options)
    return int(info.total_float_ops)


@functools.cache
def _config_flops(cfg: ModelConfig, sizes: tuple[tuple[str, int], ...]) -> int:
    from components.models.builder import build_model

    return forward_flops(build_model(cfg, **dict(sizes)))


def config_flops(cfg: ModelConfig, input_sizes: Mapping[str, int]) -> int:
    """Forward FLOPs per sample of model ``cfg`` built for these input sizes (cached)."""
    return _config_flops(cfg, tuple(sorted(input_sizes.items())))


def relative_costs(
    models: Sequence[ModelConfig], input_sizes: Mapping[str, int]
) -> dict[ModelConfig, float]:
    """Each model's forward FLOPs per sample over the cheapest one's (the cheapest is 1)."""
    flops = {m: config_flops(m, input_sizes) for m in dict.fromkeys(models)}
    cheapest = min(flops.values(), default=1) or 1
    return {m: f / cheapest for m, f in flops.items()}
