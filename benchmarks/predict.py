"""`mer predict` latency per clip against its compute floor.

    python -m benchmarks.predict [--clips 9]

In one run, on synthetic clips of unseen subjects (default frame size and length, written as
frame folders to a temp dir), with the configured model (``params.yaml`` ``model``, built
untrained: inference cost does not depend on the weights):
1. the floor: what the records path computes for one sample, given its apex — face detection,
   alignment, TV-L1 flow, strain, clip (``clip_inputs`` with the apex) — plus one forward pass;
2. ``predict_clip`` as `mer predict` runs it: the same plus aligning every frame and spotting
   the apex, and the attention maps; and reading the clip from disk;
3. the ratio predict / floor: what reading a whole clip and apex spotting cost on top.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from benchmarks.results import write_section
from components.config import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=9)
    args = parser.parse_args()
    params = load_params("params.yaml")
    from components.training import runtime

    runtime.configure(params.train, params.seed)
    from components.datasets.labels import COMPOSITE_CLASSES
    from components.datasets.synthetic.generator import plan_subject, render_clip, subject_look
    from components.inference import read_clip
    from components.inference.predict import LoadedModel, clip_inputs, predict_clip
    from components.models import build_model
    from components.models.registry import BACKBONES
    from components.records.schema import model_input

    cfg, pre = params.synthesize, params.preprocess
    kind = BACKBONES[params.model.backbone].input_kind
    model = build_model(params.model, 3, pre.flow_size, pre.clip_frames, pre.clip_size)
    loaded = LoadedModel(model, params.model, pre, kind, COMPOSITE_CLASSES, "untrained")
    floor, predict, reading, lengths = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        index = 60
        while len(lengths) < args.clips:
            look = subject_look(index, cfg, params.seed)
            for plan in plan_subject(index, cfg, params.seed)[: args.clips - len(lengths)]:
                folder = Path(tmp) / plan.clip
                folder.mkdir()
                for k, frame in enumerate(render_clip(plan, look, cfg, params.seed, index)):
                    cv2.imwrite(str(folder / f"img{k + 1}.jpg"), frame)
                start = time.perf_counter()
                frames, _ = read_clip(folder)
                reading.append(time.perf_counter() - start)
                predict_clip(loaded, frames, plan.clip)  # warm-up (graph tracing)

                start = time.perf_counter()
                features, _ = clip_inputs(frames, pre, plan.clip, apex=plan.apex)
                model(model_input(kind, features.flow, features.clip)[None], training=False)
                floor.append(time.perf_counter() - start)

                start = time.perf_counter()
                predict_clip(loaded, frames, plan.clip)
                predict.append(time.perf_counter() - start)
                lengths.append(len(frames))
            index += 1
    f, p, r = (statistics.median(x) for x in (floor, predict, reading))
    body = f"""
{len(lengths)} clips of {min(lengths)}–{max(lengths)} frames at {cfg.frame_size}×{cfg.frame_size},
model {params.model.backbone} / {params.model.attention.type}; medians per clip:

| step | seconds |
| --- | ---: |
| floor: face, alignment, TV-L1 + strain, clip, one forward pass (apex given) | {f:.3f} |
| `predict_clip`: the same + every frame aligned, apex spotted, attention maps | {p:.3f} |
| reading the clip's frames from disk | {r:.3f} |

**predict / floor = {p / f:.2f}×**; with reading, a clip takes {p + r:.2f} s (the command adds
TensorFlow's import and the model download, a few seconds once).
"""
    print(body)
    write_section("predict", "python -m benchmarks.predict", body)


if __name__ == "__main__":
    main()
