"""Samples drawn for attention-map figures, and their maps from the model that tested them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from components.datasets.labels import COMPOSITE_CLASSES


def pick_examples(manifest: pd.DataFrame, per_class: int, seed: int) -> set[str]:
    """``per_class`` uids of each class, drawn reproducibly."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for _, group in manifest.sort_values("uid").groupby("label"):
        count = min(per_class, len(group))
        chosen.update(rng.choice(group.uid.to_numpy(), size=count, replace=False).tolist())
    return chosen


def attention_overlay(records, row: int, model, kind: str) -> dict:
    """Row ``row`` of the records drawn for the figure: the face at apex (the clip frame nearest
    the apex), the flow, the first attention map of ``model`` and a caption."""
    from components.attention.maps import attention_maps

    entry = records.manifest.iloc[row]
    x = records.inputs(kind)[row : row + 1]
    probabilities = np.asarray(model(x, training=False))[0]
    maps = attention_maps(model, x)
    attention = next(iter(maps.values()))[0] if maps else None
    clip = records.clip[row]
    apex = _apex_index(records, row)
    predicted = COMPOSITE_CLASSES[int(probabilities.argmax())]
    return {
        "uid": entry.uid,
        "face": clip[apex, ..., 0],
        "flow": records.flow[row],
        "attention": attention,
        "caption": f"{COMPOSITE_CLASSES[int(entry.label)]} → {predicted}\n{entry.uid.split('/', 1)[1]}",
    }


def _apex_index(records, row: int) -> int:
    """The clip frame nearest the apex (frame numbers from the manifest when it has them)."""
    entry = records.manifest.iloc[row]
    frames = records.clip_frames[row]
    if not frames:
        return records.clip.shape[1] // 2
    return int(np.argmin([abs(n - entry.apex_frame) for n in frames]))


def overlays_for(records, uids: Sequence[str], model, kind: str) -> list[dict]:
    """Overlays of ``uids`` drawn by ``model``, sorted by caption."""
    index = {uid: k for k, uid in enumerate(records.manifest.uid)}
    found = [attention_overlay(records, index[uid], model, kind) for uid in uids if uid in index]
    return sorted(found, key=lambda e: e["caption"])
