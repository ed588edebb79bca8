"""Log a Keras model that ``mlflow models serve`` can load without this project installed.

The model is saved by MLflow's Keras 3 flavour (``mlflow.keras.save_model``: the ``keras``
flavour and its metadata are MLflow's own, so ``mlflow.keras.load_model`` works as usual). Its
attention layers are custom Keras classes, which a serving process knows only once their
module is imported; the Keras flavour has no ``code_paths``. So the ``python_function`` flavour
is pointed at this module, shipped with the model under ``code/``: it imports the layers, then
hands over to MLflow's own Keras pyfunc loader.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import Model

import components

CODE_DIR = "code"


def save_model(model, path: str, mlflow_model: Model | None = None, **kwargs: Any) -> None:
    """``mlflow.keras.save_model`` plus the project code the pyfunc loader imports."""
    mlflow_model = mlflow_model or Model()
    Path(path).mkdir(parents=True, exist_ok=True)  # the input example is written first
    mlflow.keras.save_model(model, path, mlflow_model=mlflow_model, **kwargs)
    shutil.copytree(
        Path(components.__file__).parent,
        Path(path) / CODE_DIR / "components",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    pyfunc = mlflow_model.flavors["python_function"]
    pyfunc["loader_module"] = __name__
    pyfunc["code"] = CODE_DIR
    mlflow_model.save(str(Path(path) / "MLmodel"))


def register_custom_layers() -> None:
    """Make the project's Keras classes known to Keras (they register on import), as loading
    a saved model needs."""
    import components.models.layers  # noqa: F401
    from components.attention.factory import register_all

    register_all()


def _load_pyfunc(path: str):
    """The pyfunc loader (``mlflow models serve``, ``mlflow.pyfunc.load_model``)."""
    from mlflow.keras.load import _load_pyfunc as keras_pyfunc

    register_custom_layers()
    return keras_pyfunc(path)


def log_model(model, *, name: str, **kwargs: Any):
    """Like ``mlflow.keras.log_model`` (same arguments), saving through :func:`save_model`."""
    return Model.log(
        artifact_path=None, name=name, flavor=sys.modules[__name__], model=model, **kwargs
    )
