"""The pipeline's building blocks from Python: LOSO folds of a records folder, two folds trained
stacked, pooled UF1/UAR, a paired comparison and an attention map.

    python docs/examples/quickstart.py data/records [--epochs 20]

(`data/records` is what `mer preprocess` / `dvc repro` writes; the tests run this script on a
small planted records folder.)
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pandas as pd

from components.attention import attention_maps
from components.config import AttentionConfig, ModelConfig, TrainConfig
from components.datasets.labels import NUM_CLASSES
from components.evaluation.splits import loso_folds
from components.metrics import confusion_matrix, uar, uf1
from components.provenance import data_version
from components.statistics import Resampling, paired_bootstrap, verdict
from components.training.job import TrainingJob


def predictions(model: ModelConfig, train: TrainConfig, records_dir: str, folds) -> pd.DataFrame:
    """Train ``model`` on ``folds`` (stacked in one model) and return the test predictions."""
    job = TrainingJob.open(
        records_dir, data_version(records_dir), model, train, seed=1,
        input_sizes={"flow_size": 28}, num_classes=NUM_CLASSES,
    )  # fmt: skip
    data = [job.fold_data(f.name, f.train, f.validation, f.test) for f in folds]
    rows = []
    for fold, fit in zip(data, job.fit(data), strict=True):
        manifest = job.records.manifest.iloc[fold.predict]
        for (_, row), p in zip(manifest.iterrows(), fit.probabilities, strict=True):
            rows.append({"seed": 1, "uid": row.uid, "subject_id": row.subject_id,
                         "true": int(row.label), "predicted": int(p.argmax())})  # fmt: skip
    return pd.DataFrame(rows), job, fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    train = TrainConfig(epochs=args.epochs, min_epochs=2, patience=5, learning_rate=0.01)

    # 1. the protocol's folds: leave one subject out, validation subjects from the rest
    probe = TrainingJob.open(
        args.records, data_version(args.records), ModelConfig(), train, seed=1,
        input_sizes={"flow_size": 28}, num_classes=NUM_CLASSES,
    )  # fmt: skip
    folds = loso_folds(probe.records.subjects, validation_fraction=0.2, seed=1)[:4]
    print(f"{len(probe.records.manifest)} samples of {len(probe.records.subjects)} subjects; "
          f"training {len(folds)} LOSO folds")  # fmt: skip

    # 2. two configurations on the same folds: no attention, and CBAM after the fused streams
    plain = ModelConfig("ststnet", AttentionConfig("none"), (), dropout=0.0)
    cbam = replace(plain, attention=AttentionConfig("cbam"), placement=("fused",))
    base, _, _ = predictions(plain, train, args.records, folds)
    mine, job, fit = predictions(cbam, train, args.records, folds)

    # 3. the MEGC metrics of the pooled predictions, and the paired subject-bootstrap Δ
    for name, frame in (("none", base), ("cbam", mine)):
        matrix = confusion_matrix(frame.true, frame.predicted, NUM_CLASSES)
        print(f"{name}: UF1 {uf1(matrix):.3f}, UAR {uar(matrix):.3f}")
    subjects = sorted(base.subject_id.unique())
    delta = paired_bootstrap(mine, base, subjects, Resampling(NUM_CLASSES, 500, 1, 0.95))["uf1"]
    print(f"ΔUF1 {delta.estimate:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}]: {verdict(delta)}")

    # 4. the attention a trained fold model puts on a test sample (an (H, W, 1) map for CBAM)
    model = fit.export()
    sample = job.records.inputs("flow")[:1]
    maps = attention_maps(model, sample)
    name, values = next(iter(maps.items()))
    print(f"attention map {name}: shape {tuple(np.asarray(values).shape)}")


if __name__ == "__main__":
    main()
