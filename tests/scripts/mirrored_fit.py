"""Train a fixed model on fixed data with N logical CPU devices; print the loss history and
predictions as JSON. Run as a subprocess: logical devices are set once per process."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components.config import AttentionConfig, ModelConfig, TrainConfig
from components.training import runtime


def main(devices: int) -> None:
    # ordinary models on both sides: the stacked form trains on one replica only
    cfg = TrainConfig(
        devices=devices, batch_size=8 // devices, epochs=3, stack_folds=False,
        augment_flip=False, augment_shift_px=0, class_weighting="none",
    )  # fmt: skip
    runtime.configure(cfg, seed=5)
    import numpy as np
    import tensorflow as tf

    from components.training.fold_models import FoldData
    from components.training.run import fold_runs

    strategy = runtime.make_strategy(cfg)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 28, 28, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=32)
    model_cfg = ModelConfig(
        backbone="ststnet",
        attention=AttentionConfig(type="cbam"),
        placement=("fused",),
        dropout=0.0,
    )
    everyone = np.arange(32)
    (run,) = fold_runs(
        x, y, [FoldData("all", everyone, everyone[:0], everyone[:0], 5)], model_cfg, cfg,
        kind="flow", input_sizes={"flow_size": 28, "clip_frames": 8, "clip_size": 64},
        num_classes=3, seed=5, strategy=strategy,
    )  # fmt: skip
    run.fit()
    probe = np.random.default_rng(1).uniform(size=(16, 28, 28, 3)).astype(np.float32)
    predictions = run.models.model(probe, training=False).numpy()
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "devices": [d.name for d in tf.config.list_logical_devices("CPU")],
                "loss": run.losses,
                "predictions": predictions.tolist(),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
