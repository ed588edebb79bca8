"""Train a fixed model on fixed data with N logical CPU devices; print the loss history and a
weight checksum as JSON. Run as a subprocess: logical devices are set once per process."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components.config import AttentionConfig, ModelConfig, TrainConfig
from components.training import runtime


def main(devices: int) -> None:
    cfg = TrainConfig(devices=devices, batch_size=8 // devices, epochs=3)
    runtime.configure(cfg, seed=5)
    import numpy as np
    import tensorflow as tf

    from components.training.fit import train_model

    strategy = runtime.make_strategy(cfg)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 28, 28, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=32)
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch)
    model_cfg = ModelConfig(
        backbone="ststnet",
        attention=AttentionConfig(type="cbam"),
        placement=("fused",),
        dropout=0.0,
    )
    result = train_model(
        model_cfg, cfg, data, None, y, strategy=strategy, input_sizes={"flow_size": 28}
    )
    probe = np.random.default_rng(1).uniform(size=(16, 28, 28, 3)).astype(np.float32)
    predictions = result.model(probe, training=False).numpy()
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "devices": [d.name for d in tf.config.list_logical_devices("CPU")],
                "loss": result.history["loss"],
                "predictions": predictions.tolist(),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
