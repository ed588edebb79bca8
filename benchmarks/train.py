"""Input pipeline vs training: is tf.data ever the bottleneck?

    python -m benchmarks.train        (needs data/records: run `dvc repro` first)

In one run, on the embedded records and the params.yaml model:
1. tf.data throughput: the training input (read shards, parse, filter, cache, shuffle,
   augment, batch) iterated alone, after the first (caching) epoch;
2. the model's consumption: training steps alone on batches already in memory;
3. end-to-end `fit` samples/s reading TFRecords vs reading in-memory arrays.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components.config import load_params
from components.training import runtime

EPOCHS = 40


def main() -> None:
    params = load_params("params.yaml")
    runtime.configure(params.train, params.seed)
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.results import write_section
    from components.evaluation.protocol import ExperimentData
    from components.training.data import finish
    from components.training.fit import compiled_model

    data = ExperimentData.load(params.preprocess)
    model_cfg, train_cfg = params.model, params.train
    kind = data.input_kind(model_cfg)
    subjects = data.subjects
    n = len(data.rows(subjects))
    batch = train_cfg.batch_size

    def input_pipeline() -> tf.data.Dataset:
        return data.dataset(subjects, kind, batch, train_cfg=train_cfg, seed=params.seed)

    # 1. input alone (epoch 1 fills the cache, as in training), consumed inside TensorFlow as
    #    `fit` consumes it (Python-side iteration would add ~1 ms per batch of its own)
    pipeline = input_pipeline()

    def drain(dataset: tf.data.Dataset) -> int:
        return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))

    drain(pipeline)
    start = time.perf_counter()
    drain(pipeline.repeat(EPOCHS))  # one iterator: steady state, reshuffled every pass
    input_rate = EPOCHS * n / (time.perf_counter() - start)

    def compiled() -> keras.Model:
        return compiled_model(model_cfg, train_cfg.learning_rate, data.input_sizes)

    # 2. the training step alone: fit on the same batches, already materialised in memory
    batches = [(x.numpy(), y.numpy()) for x, y in input_pipeline()]
    full = [b for b in batches if len(b[1]) == batch]
    stacked = tf.data.Dataset.from_tensor_slices(
        (np.stack([b[0] for b in full]), np.stack([b[1] for b in full]))
    ).cache()

    def fit_rate(dataset: tf.data.Dataset, samples: int) -> float:
        model = compiled()
        model.fit(dataset, epochs=1, verbose=0)  # compile + first epoch (cache fill) excluded
        start = time.perf_counter()
        model.fit(dataset, epochs=EPOCHS, verbose=0)
        return EPOCHS * samples / (time.perf_counter() - start)

    model = compiled()
    model.fit(stacked, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(stacked.repeat(EPOCHS), epochs=1, verbose=0)  # steady state, as for the input
    step_rate = EPOCHS * batch * len(full) / (time.perf_counter() - start)

    # 3. fit from TFRecords vs from in-memory arrays: the same pipeline tail (shuffle, batch,
    #    augmentation), only the source differs
    arrays_x = np.concatenate([x.numpy() for x, _ in data.dataset(subjects, kind, 256)])
    arrays_y = np.concatenate([y.numpy() for _, y in data.dataset(subjects, kind, 256)])
    records_rate = fit_rate(input_pipeline(), n)
    memory = finish(
        tf.data.Dataset.from_tensor_slices((arrays_x, arrays_y)),
        kind,
        batch,
        training=True,
        seed=params.seed,
        flip=train_cfg.augment_flip,
        shift_px=train_cfg.augment_shift_px,
        size=n,
    )
    memory_rate = fit_rate(memory, n)

    print(f"tf.data input alone:          {input_rate:9.0f} samples/s")
    print(f"training step alone:          {step_rate:9.0f} samples/s")
    print(f"input / training step:        {input_rate / step_rate:9.1f}x   (target >= 5x)")
    print(f"fit from TFRecords:           {records_rate:9.0f} samples/s")
    print(f"fit from in-memory arrays:    {memory_rate:9.0f} samples/s")
    print(f"TFRecords / in-memory:        {records_rate / memory_rate:9.2f}    (target >= 0.9)")
    body = f"""{n} embedded records, model `{model_cfg.backbone}` / `{model_cfg.attention.type}` at
{", ".join(model_cfg.placement)}, batch {batch}, {EPOCHS} timed epochs after a warm-up epoch.
Input and training step alone are steady-state rates (one iterator over {EPOCHS} repeats); the
`fit` rates include Keras' per-epoch overhead, equally for both sources.
Both `fit` inputs share the same shuffle, batch and augmentation (flip, shift); only the
source differs. "Training step alone" is `fit` on those batches pre-materialised in memory.

| measurement | samples/s |
| --- | ---: |
| tf.data training input alone | {input_rate:.0f} |
| training step alone (`fit` on pre-made batches) | {step_rate:.0f} |
| **input / training step** | **{input_rate / step_rate:.1f}×** (target ≥ 5×) |
| `fit` reading TFRecords | {records_rate:.0f} |
| `fit` reading in-memory arrays | {memory_rate:.0f} |
| **TFRecords / in-memory** | **{records_rate / memory_rate:.2f}** (target ≥ 0.9) |"""
    write_section("train", "python -m benchmarks.train", body)


if __name__ == "__main__":
    main()
