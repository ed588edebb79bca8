"""Parameters, FLOPs and CPU inference latency per backbone × attention type.

    python -m benchmarks.models
    python -m benchmarks.models --backbones rcn     (only these: a section of their own)

FLOPs are TensorFlow's profiler count of the frozen inference graph for one sample (a
multiply-add is 2 FLOPs). Latency is the median wall time of a compiled forward pass on one
sample, and per sample at batch 32, on this machine's CPU.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from benchmarks.results import write_section
from components.config import AttentionConfig, ModelConfig
from components.models import BACKBONES, build_model
from components.models.cost import forward_flops as flops

TYPES = ("none", "se", "eca", "channel", "spatial", "cbam", "mhsa", "temporal_mhsa")
PLACEMENT = {
    "ststnet": "fused",
    "off_apexnet": "fused",
    "resnet_small": "block2",
    "clip_net": "frame",
}


def placement_point(backbone: str) -> str:
    """Where the table puts a feature-map attention: the point named above, else the
    backbone's middle feature-map point."""
    if backbone in PLACEMENT:
        return PLACEMENT[backbone]
    maps = [p for p, kind in BACKBONES[backbone].points.items() if kind != "sequence"]
    return maps[len(maps) // 2]


def latency_ms(model: tf.keras.Model, batch: int, repeats: int = 30) -> float:
    """Median milliseconds per sample of a compiled forward pass."""
    forward = tf.function(lambda x: model(x, training=False), jit_compile=False)
    x = tf.constant(
        np.random.default_rng(0).normal(size=(batch, *model.input_shape[1:])), tf.float32
    )
    for _ in range(3):
        forward(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(x).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.models")
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), metavar="NAME")
    only = parser.parse_args(argv).backbones
    load = os.getloadavg()[0]
    rows = []
    for backbone, spec in BACKBONES.items():
        if only and backbone not in only:
            continue
        for kind in TYPES:
            point = "temporal" if kind == "temporal_mhsa" else placement_point(backbone)
            if point not in spec.points:
                continue
            cfg = ModelConfig(
                backbone=backbone, attention=AttentionConfig(type=kind), placement=(point,)
            )
            model = build_model(cfg)
            row = (
                backbone,
                kind,
                point if kind != "none" else "-",
                model.count_params(),
                flops(model),
                latency_ms(model, 1),
                latency_ms(model, 32),
            )
            rows.append(row)
            print(
                f"{row[0]:13} {row[1]:14} {row[2]:9} params {row[3]:>9,}  MFLOPs {row[4] / 1e6:8.3f}  "
                f"latency {row[5]:7.3f} ms (batch 1)  {row[6]:7.3f} ms/sample (batch 32)",
                flush=True,
            )
    plain = {r[0]: r for r in rows if r[1] == "none"}
    lines = [
        "| backbone | attention | at | params | MFLOPs | × plain FLOPs | ms, batch 1 | ms/sample, batch 32 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = r[4] / plain[r[0]][4]
        lines.append(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,} | {r[4] / 1e6:.3f} | {ratio:.2f} | {r[5]:.3f} | {r[6]:.3f} |"
        )
    body = (
        "Inputs: flow 28×28×3 (clip_net: 8 frames of 64×64). One attention module at the point "
        "named in `at`, default options (heads 2, reduction 4, kernel 7). Load average at the "
        f"start: {load:.1f} on {os.cpu_count()} cores (latency is this machine's as it was "
        "then; FLOPs and parameters do not depend on it).\n\n" + "\n".join(lines)
    )
    if only:
        name, command = (
            f"models: {', '.join(only)}",
            f"python -m benchmarks.models --backbones {' '.join(only)}",
        )
    else:
        name, command = "models", "python -m benchmarks.models"
    write_section(name, command, body)


if __name__ == "__main__":
    main()
