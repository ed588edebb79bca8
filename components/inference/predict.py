"""Predict a clip with a registered model: the pipeline's preprocessing, the class
probabilities and the model's attention over the face."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from components.config import ModelConfig, PreprocessConfig, model_from_dict, parse
from components.errors import ArtifactError, ConfigError
from components.features import sample_indices
from components.preprocessing.extract import ClipFeatures, clip_features, detect, grey
from components.records.schema import model_input


@dataclass(frozen=True)
class ModelMetadata:
    """What the register stage writes into the model's MLmodel metadata (read back typed)."""

    model: dict[str, Any]
    preprocess: dict[str, Any]
    input_kind: Literal["flow", "clip"]
    classes: list[str]
    data_version: str = ""


@dataclass(frozen=True)
class LoadedModel:
    """A registered Keras model with the preprocessing and classes it was trained with."""

    model: object  # keras.Model
    model_cfg: ModelConfig
    preprocess: PreprocessConfig
    input_kind: str
    classes: tuple[str, ...]
    uri: str


@dataclass(frozen=True)
class Prediction:
    """One clip's prediction."""

    label: str
    probabilities: dict[str, float]
    apex: int  # frame index used as apex (spotted unless given)
    features: ClipFeatures
    attention: np.ndarray | None  # the first attention layer's map, if the model has one


def load_registered_model(uri: str) -> LoadedModel:
    """Download and load ``uri`` (``models:/name@alias``, ``models:/name/3``, ``runs:/...``)."""
    import mlflow
    from mlflow.models import Model

    from components.tracking.keras_flavor import METADATA_KEY, keras_file, load_keras_model

    local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    keras_file(local)  # refused before anything is read from it
    meta = (Model.load(str(Path(local) / "MLmodel")).metadata or {}).get(METADATA_KEY)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{uri} is not a mer-attention model (no '{METADATA_KEY}' metadata)")
    try:
        facts = parse(ModelMetadata, meta, f"{uri} MLmodel metadata {METADATA_KEY}")
        model_cfg = model_from_dict(facts.model, f"{uri} metadata model")
        preprocess = parse(PreprocessConfig, facts.preprocess, f"{uri} metadata preprocess")
    except ConfigError as exc:
        raise ArtifactError(str(exc)) from None
    return LoadedModel(
        model=load_keras_model(local),
        model_cfg=model_cfg,
        preprocess=preprocess,
        input_kind=facts.input_kind,
        classes=tuple(facts.classes),
        uri=uri,
    )


def clip_inputs(
    frames: list[np.ndarray], cfg: PreprocessConfig, where: str, apex: int | None = None
) -> tuple[ClipFeatures, int]:
    """Features of a whole clip (onset = first frame, offset = last) and the apex used."""
    from components.faces import crop

    located = detect(frames[0], cfg, where)
    if apex is None:
        from components.inference.clip import spot_apex

        apex = spot_apex([grey(crop(f, located[1], cfg.face_size)) for f in frames])
    elif not 0 < apex < len(frames):
        raise ValueError(f"{where}: apex {apex} is outside the clip's frames 1..{len(frames) - 1}")
    indices = sample_indices(len(frames), cfg.clip_frames)
    features = clip_features(
        frames[0], frames[apex], [frames[i] for i in indices], cfg, where, located
    )
    return features, apex


def checked_probabilities(outputs, loaded: LoadedModel) -> np.ndarray:
    """The model's output for one clip, if it is a probability for each of its classes: finite,
    in [0, 1], summing to 1. Anything else (damaged weights giving NaN, a model of another
    head) is an :class:`ArtifactError` naming the model: no label is given from it."""
    values = np.asarray(outputs, dtype="float64")
    shape = (1, len(loaded.classes))
    if values.shape != shape:
        raise ArtifactError(
            f"{loaded.uri}: the model outputs shape {values.shape}, not one probability for each "
            f"of its {len(loaded.classes)} classes {shape}: it is not the model registered "
            "with this metadata; register it again (`mer register`)"
        )
    row = values[0]
    if not np.isfinite(row).all() or (row < 0).any() or abs(row.sum() - 1.0) > 1e-3:
        shown = ", ".join(f"{v:.3g}" for v in row)
        raise ArtifactError(
            f"{loaded.uri}: the model's outputs ({shown}) are not probabilities (finite, in "
            "[0, 1], summing to 1): its weights are damaged; register it again (`mer register`)"
        )
    return row


def predict_clip(
    loaded: LoadedModel, frames: list[np.ndarray], where: str, apex: int | None = None
) -> Prediction:
    """Class probabilities and attention for one clip of BGR frames."""
    from components.attention.maps import attention_maps

    features, apex = clip_inputs(frames, loaded.preprocess, where, apex)
    x = model_input(loaded.input_kind, features.flow, features.clip)[None]
    probabilities = checked_probabilities(loaded.model(x, training=False), loaded)
    maps = attention_maps(loaded.model, x)
    attention = next(iter(maps.values()))[0] if maps else None
    return Prediction(
        label=loaded.classes[int(np.argmax(probabilities))],
        probabilities={c: float(p) for c, p in zip(loaded.classes, probabilities, strict=True)},
        apex=apex,
        features=features,
        attention=attention,
    )
