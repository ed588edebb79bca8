"""``mer predict``: one clip (a folder of frames or a video) through the pipeline's
preprocessing and a registered model; prints the class and probabilities, writes the
attention map over the face."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from components.config import load_params
from pipelines.arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", help="a folder of frames (onset first) or a video file")
    parser.add_argument(
        "--model", help="model URI (default: models:/<register.model_name>@<register.alias>)"
    )
    parser.add_argument("--apex", type=positive_int, help="apex frame index (default: spotted)")
    parser.add_argument(
        "--output", help="attention-map PNG (default: <clip name>_attention.png here)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


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


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    from components.errors import DataError
    from components.inference import read_clip
    from components.outputs import check_writable
    from components.preprocessing.extract import SampleError

    output = Path(args.output or f"{Path(args.clip).name}_attention.png")
    check_writable(output, "--output")
    frames, _ = read_clip(args.clip)  # before loading the model: bad input fails fast

    from components.evaluation import plots
    from components.inference import predict_clip

    uri = args.model or f"models:/{params.register.model_name}@{params.register.alias}"
    loaded = load_model(uri, params)
    try:
        prediction = predict_clip(loaded, frames, str(args.clip), args.apex)
    except (SampleError, ValueError) as exc:
        raise DataError(str(exc)) from None

    top = prediction.probabilities[prediction.label]
    plots.attention_grid_png(
        [
            {
                "face": prediction.features.apex_face,
                "flow": prediction.features.flow,
                "attention": prediction.attention,
                "caption": f"{prediction.label} ({top:.2f})\napex frame {prediction.apex}",
            }
        ],
        output,
        f"{Path(args.clip).name}: {loaded.model_cfg.backbone} / {loaded.model_cfg.attention.type}",
    )
    if args.json:
        payload = {
            "clip": str(args.clip),
            "model": uri,
            "label": prediction.label,
            "probabilities": prediction.probabilities,
            "apex": prediction.apex,
            "attention_png": str(output),
        }
        print(json.dumps(payload, indent=2, allow_nan=False))  # strict JSON
    else:
        print(f"predict: {args.clip}: {prediction.label} (apex frame {prediction.apex}, {uri})")
        for label, p in sorted(prediction.probabilities.items(), key=lambda kv: -kv[1]):
            print(f"predict:   {label:<9} {p:.3f}")
        print(f"predict: attention map over the face: {output}")
    return 0
