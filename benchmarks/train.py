"""Input vs training: is the batch stream ever the bottleneck, and what does stacking buy?

    python -m benchmarks.train        (needs data/records: run `dvc repro` first)

In one run, on the embedded records and the params.yaml model, one thread (as units run):
1. the training streams alone (in-memory records → per-epoch permutation → batch → flip/shift
   augmentation), drained inside TensorFlow: the ordinary one, and the per-fold one of a
   10-fold stack (each fold its own batch; model-samples/s);
2. the training step alone: ``fit`` on those batches pre-materialised, for the ordinary model
   and for the stacked form with 1 and 10 folds (model-samples/s: a stacked sample counts once
   per fold).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from components.config import load_params
from components.training import runtime

EPOCHS = 30


def main() -> None:
    from dataclasses import replace

    params = load_params("params.yaml")
    train_cfg = replace(params.train, threads=1)
    runtime.configure(train_cfg, params.seed)
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.results import write_section
    from components.artifacts import Records
    from components.models import build_model
    from components.models.patch_stats import patch_stats_table
    from components.models.registry import BACKBONES
    from components.models.stacked import ststnet
    from components.training.data import StreamOptions, fold_stream, training_stream
    from components.training.fold_models import FoldAdam

    records = Records.of(params).read()
    model_cfg = params.model
    kind = BACKBONES[model_cfg.backbone].input_kind
    x, y = records.inputs(kind), records.labels
    n, batch = len(y), train_cfg.batch_size
    options = StreamOptions.training(train_cfg, kind, batch)
    everyone = np.arange(n)
    stream = training_stream(x, y, everyone, params.seed, options, range(EPOCHS))
    rng = np.random.default_rng(params.seed)
    folds_train = [np.sort(rng.choice(n, int(0.8 * n), replace=False)) for _ in range(10)]
    keys = list(range(10))
    table = patch_stats_table(x, kind, train_cfg.augment_flip, train_cfg.augment_shift_px)
    per_fold = fold_stream(x, y, folds_train, keys, options, range(EPOCHS), patch_stats=table)

    def drain(data: tf.data.Dataset) -> float:
        data.reduce(0, lambda c, _: c + 1)  # warm-up
        start = time.perf_counter()
        data.reduce(0, lambda c, _: c + 1)
        return time.perf_counter() - start

    input_rate = EPOCHS * n / drain(stream)
    fold_input_rate = EPOCHS * sum(len(t) for t in folds_train) / drain(per_fold)

    plain = StreamOptions(kind, batch)
    batches = [
        (bx.numpy(), by.numpy()) for bx, by in training_stream(x, y, everyone, 1, plain, range(1))
    ]
    xs, ys = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    sizes = params.preprocess.input_sizes()

    def step_rate(folds: int | None) -> float:
        steps = len(ys) // batch
        if folds is None:
            model = build_model(model_cfg, **sizes)
            data = tf.data.Dataset.from_tensor_slices((xs, ys))
            model.compile(
                optimizer=keras.optimizers.Adam(1e-3),
                loss="sparse_categorical_crossentropy",
                steps_per_execution=steps,
            )
        else:
            model = ststnet(model_cfg, folds, sizes, 3)
            model.initialise(list(range(folds)))
            order = np.stack([rng.permutation(len(ys)) for _ in range(folds)], 1)  # (N, F)
            stats = patch_stats_table(xs, kind, False, 0)[:, 0]
            data = tf.data.Dataset.from_tensor_slices(
                ((xs[order], np.ones(order.shape, "float32"), stats[order]), ys[order])
            )  # each fold its own batches with their patch statistics, as fold_stream gives
            model.compile(optimizer=FoldAdam(folds, learning_rate=1e-3), steps_per_execution=steps)
        data = data.batch(batch).cache()
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False)
        return EPOCHS * len(ys) * (folds or 1) / (time.perf_counter() - start)

    ordinary, one, ten = step_rate(None), step_rate(1), step_rate(10)
    print(f"training stream alone:        {input_rate:9.0f} samples/s")
    print(f"per-fold stream (10 folds):   {fold_input_rate:9.0f} model-samples/s")
    print(f"training step, ordinary:      {ordinary:9.0f} samples/s")
    print(f"training step, stacked ×1:    {one:9.0f} samples/s")
    print(f"training step, stacked ×10:   {ten:9.0f} model-samples/s")
    body = f"""{n} embedded records, model `{model_cfg.backbone}` / `{model_cfg.attention.type}` at
{", ".join(model_cfg.placement)}, batch {batch}, one TensorFlow thread, {EPOCHS} timed epochs after
a warm-up epoch (Keras `fit` with one call per epoch: `steps_per_execution` = steps per epoch).

| measurement | samples/s |
| --- | ---: |
| training stream alone (permute, batch, augment) | {input_rate:.0f} |
| per-fold stream of 10 folds, with patch statistics (model-samples/s) | {fold_input_rate:.0f} |
| training step, ordinary Keras model | {ordinary:.0f} |
| training step, stacked form, 1 fold | {one:.0f} |
| training step, stacked form, 10 folds (model-samples/s) | {ten:.0f} |
| **stream / ordinary step** | **{input_rate / ordinary:.1f}×** |
| **per-fold stream / stacked ×10 step** | **{fold_input_rate / ten:.1f}×** |
| **stacked ×10 / ordinary (model-samples)** | **{ten / ordinary:.1f}×** |

A stacked step gives every fold its own batch, so its stream produces one input sample per
model-sample; each stream runs in tf.data's own threads, prefetched, beside the training step,
and must outrun the step that consumes it."""
    write_section("train", "python -m benchmarks.train", body)


if __name__ == "__main__":
    main()
