"""Samples drawn for attention-map figures, and their maps from the fold that tested them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.attention import attention_maps
from components.config import ModelConfig
from components.datasets.labels import COMPOSITE_CLASSES
from components.records.schema import decode, model_input
from components.records.tfrecord import read_records


def pick_examples(manifest: pd.DataFrame, per_class: int, seed: int) -> set[str]:
    """``per_class`` uids of each class, drawn reproducibly."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for _, group in manifest.sort_values("uid").groupby("label"):
        count = min(per_class, len(group))
        chosen.update(rng.choice(group.uid.to_numpy(), size=count, replace=False).tolist())
    return chosen


def load_records(shards: list[str], uids: set[str]) -> dict:
    """Decoded records for ``uids`` (Python-side, TensorFlow-free)."""
    found = {}
    for shard in shards:
        for serialized in read_records(shard):
            record = decode(serialized)
            if record.uid in uids:
                found[record.uid] = record
    return found


def attention_examples(
    data, model, model_cfg: ModelConfig, examples: dict, test_subjects
) -> list[dict]:
    """For the example records (uid -> record, loaded once) among ``test_subjects``: the face
    at apex, the flow and the model's attention map."""
    wanted = set(data.rows(test_subjects).uid) & set(examples)
    out = []
    kind = data.input_kind(model_cfg)
    for uid in sorted(wanted):
        record = examples[uid]
        x = model_input(kind, record.flow, record.clip)[None]
        probabilities = model(x, training=False).numpy()[0]
        maps = attention_maps(model, x)
        attention = next(iter(maps.values()))[0] if maps else None
        apex = int(np.argmin([abs(n - record.frames[1]) for n in record.clip_frames]))
        predicted = COMPOSITE_CLASSES[int(probabilities.argmax())]
        out.append(
            {
                "face": record.clip[apex, ..., 0],
                "flow": record.flow,
                "attention": attention,
                "caption": f"{COMPOSITE_CLASSES[record.label]} → {predicted}\n{uid.split('/', 1)[1]}",
            }
        )
    return out
