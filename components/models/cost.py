"""What a model costs: TensorFlow's profiler count of its floating-point operations, and each
model's cost relative to the cheapest of a set (what a sweep's units are sized and ordered by).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping, Sequence

from components.config import ModelConfig
from components.imports import run_module


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


def config_flops(models: Sequence[ModelConfig], input_sizes: Mapping[str, int]) -> list[int]:
    """Forward FLOPs per sample of each model built for these input sizes, counted in a
    subprocess: the caller's TensorFlow stays uninitialised (a unit trained in this process
    sets its threads and logical devices first, which TensorFlow allows only before it starts).
    """
    return list(_config_flops(tuple(models), tuple(sorted(input_sizes.items()))))


@functools.cache
def _config_flops(models: tuple[ModelConfig, ...], sizes: tuple) -> tuple[int, ...]:
    payload = json.dumps({"models": [m.as_dict() for m in models], "sizes": dict(sizes)})
    done = run_module("components.models.cost", payload)
    if done.returncode:
        raise RuntimeError(f"counting the models' FLOPs failed:\n{done.stderr[-3000:]}")
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def relative_costs(
    models: Sequence[ModelConfig], input_sizes: Mapping[str, int]
) -> dict[ModelConfig, float]:
    """Each model's forward FLOPs per sample over the cheapest one's (the cheapest is 1)."""
    unique = list(dict.fromkeys(models))
    flops = dict(zip(unique, config_flops(unique, input_sizes), strict=True))
    cheapest = min(flops.values(), default=1) or 1
    return {m: f / cheapest for m, f in flops.items()}


def main() -> None:
    """``python -m components.models.cost`` < {"models": [...], "sizes": {...}}: their forward
    FLOPs per sample, a JSON list on the last line of stdout."""
    from components.config import model_from_dict
    from components.models.builder import build_model

    request = json.loads(sys.stdin.read())
    counts = [
        forward_flops(build_model(model_from_dict(raw, "model"), **request["sizes"]))
        for raw in request["models"]
    ]
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
