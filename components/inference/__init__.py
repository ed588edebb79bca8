"""Using a trained model on a new clip: read it, preprocess it as the pipeline does, predict."""

from components.inference.clip import ClipInputError, read_clip, spot_apex
from components.inference.predict import Prediction, load_registered_model, predict_clip

__all__ = [
    "ClipInputError",
    "Prediction",
    "load_registered_model",
    "predict_clip",
    "read_clip",
    "spot_apex",
]
