"""``mer predict``: clips (folders of frames or videos) through the pipeline's preprocessing and
a registered model; prints each clip's class and probabilities, writes its attention map over
the face. The model is loaded once for every clip; with several clips, a clip that cannot be
classified is reported and the others still are (the exit code says some failed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.config import load_params
from pipelines.arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "clips", nargs="+", metavar="clip", help="a folder of frames (onset first) or a video file"
    )
    parser.add_argument(
        "--model", help="model URI (default: models:/<register.model_name>@<register.alias>)"
    )
    parser.add_argument(
        "--apex", type=positive_int, help="apex frame index of a single clip (default: spotted)"
    )
    parser.add_argument(
        "--output",
        help="attention-map PNG of a single clip (default: <clip name>_attention.png here); "
        "with several clips a folder for their <clip name>_attention.png (default: here)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON (a list for several clips)"
    )


def load_model(uri: str, params):
    """The model at ``uri`` (a registry or run URI, or a local model folder), loaded safely."""
    import mlflow

    from components.errors import ArtifactError
    from components.inference import load_registered_model
    from components.tracking import resolved_uri
    from components.tracking.mlflow_runs import check_reachable

    tracking = resolved_uri(params.tracking)
    if uri.startswith(("models:", "runs:")):
        check_reachable(tracking)
    mlflow.set_tracking_uri(tracking)
    try:
        return load_registered_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise ArtifactError(f"cannot load {uri}: {exc.message}") from None


def attention_outputs(clips: list[str], output: str | None) -> list[Path]:
    """Each clip's attention-map PNG, checked writable before any work."""
    from components.errors import ConfigError
    from components.outputs import check_writable

    names = [Path(c).name for c in clips]
    if len(clips) == 1:
        paths = [Path(output or f"{names[0]}_attention.png")]
    else:
        twins = sorted({n for n in names if names.count(n) > 1})
        if twins:
            raise ConfigError(f"clips share a name ({', '.join(twins)}): their maps would clash")
        paths = [Path(output or ".") / f"{n}_attention.png" for n in names]
    for path in paths:
        check_writable(path, "--output")
    return paths


def classify(clip: str, png: Path, model: Callable[[], Any], apex: int | None) -> dict:
    """One clip read, classified by ``model()`` (loaded on first use) and its map drawn."""
    from components.errors import DataError
    from components.evaluation import plots
    from components.inference import predict_clip, read_clip
    from components.preprocessing.extract import SampleError

    frames, _ = read_clip(clip)  # before loading the model: bad input fails fast
    loaded = model()
    try:
        prediction = predict_clip(loaded, frames, clip, apex)
    except (SampleError, ValueError) as exc:
        raise DataError(str(exc)) from None
    top = prediction.probabilities[prediction.label]
    face = {
        "face": prediction.features.apex_face,
        "flow": prediction.features.flow,
        "attention": prediction.attention,
        "caption": f"{prediction.label} ({top:.2f})\napex frame {prediction.apex}",
    }
    config = loaded.model_cfg
    title = f"{Path(clip).name}: {config.backbone} / {config.attention.type}"
    png.parent.mkdir(parents=True, exist_ok=True)
    plots.attention_grid_png([face], png, title)
    return {
        "clip": clip,
        "label": prediction.label,
        "probabilities": prediction.probabilities,
        "apex": prediction.apex,
        "attention_png": str(png),
    }


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    from components.errors import ConfigError, DataError
    from components.inference.clip import ClipInputError

    if args.apex is not None and len(args.clips) > 1:
        raise ConfigError("--apex names a frame of a single clip; give one clip with it")
    pngs = attention_outputs(args.clips, args.output)
    uri = args.model or f"models:/{params.register.model_name}@{params.register.alias}"
    loaded: list = []

    def model():
        if not loaded:
            loaded.append(load_model(uri, params))
        return loaded[0]

    results = []
    for clip, png in zip(args.clips, pngs, strict=True):
        try:
            results.append({**classify(clip, png, model, args.apex), "model": uri})
        except (ClipInputError, DataError) as exc:  # this clip's: the others go on
            if len(args.clips) == 1:
                raise
            print(f"mer predict: {clip}: {exc}", file=sys.stderr)
            results.append({"clip": clip, "error": str(exc)})
    show(results, args.json, uri)
    failed = sum("error" in r for r in results)
    if failed:
        print(f"mer predict: {failed} of {len(results)} clips not classified", file=sys.stderr)
    return 2 if failed else 0


def show(results: list[dict], as_json: bool, uri: str) -> None:
    """Print each classified clip's class and probabilities (or all of them as JSON)."""
    if as_json:
        payload = results[0] if len(results) == 1 else results
        print(json.dumps(payload, indent=2, allow_nan=False))  # strict JSON
        return
    for result in results:
        if "error" in result:
            continue
        print(f"predict: {result['clip']}: {result['label']} (apex frame {result['apex']}, {uri})")
        for label, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
            print(f"predict:   {label:<9} {p:.3f}")
        print(f"predict: attention map over the face: {result['attention_png']}")
