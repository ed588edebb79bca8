"""FLOPs of a model, profiled in a subprocess (TensorFlow's profiler; the caller stays light)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def model_flops(model: dict) -> tuple[float, float]:
    """(forward FLOPs, training-step FLOPs) per sample of one model, profiled in a subprocess."""
    code = r"""
import json, sys
import tensorflow as tf, keras
from components.config import model_from_dict
from components.models import build_model
from components.models.cost import forward_flops as flops
model = build_model(model_from_dict(json.loads(sys.argv[1]), "model"), flow_size=28)
forward = flops(model)
spec = (tf.TensorSpec((1, 28, 28, 3), tf.float32), tf.TensorSpec((1,), tf.int64))
loss = keras.losses.SparseCategoricalCrossentropy()
def step(x, y):
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=True))
    return tape.gradient(value, model.trainable_variables)
graph = tf.function(step).get_concrete_function(*spec).graph
options = tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
train = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options).total_float_ops
print(json.dumps([forward, train]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(model)],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    forward, train = json.loads(done.stdout.strip().splitlines()[-1])
    return float(forward), float(train)
