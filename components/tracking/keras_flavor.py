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
#: Key of the registered model's MLmodel metadata that holds what inference needs.
METADATA_KEY = "mer_attention"


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
    import components.models.layers
    import components.models.transformer  # noqa: F401
    from components.attention.factory import register_all

    register_all()


def keras_file(folder: str | Path) -> Path:
    """The ``.keras`` file of a downloaded model folder in the format this project writes (the
    Keras 3 flavour's native file); :class:`~components.errors.ArtifactError` in one line for
    anything else (no MLmodel, no keras flavour, an exported SavedModel, whose graph ops would
    run on load, a data path that leaves the folder)."""
    from components.errors import ArtifactError

    folder = Path(folder)
    meta = folder / "MLmodel"
    if not meta.is_file():
        raise ArtifactError(f"{folder} is not an MLflow model folder (no MLmodel)")
    flavor = (Model.load(str(meta)).flavors or {}).get("keras")
    if not isinstance(flavor, dict):
        raise ArtifactError(f"{meta} has no keras flavour: not a model this project wrote")
    if flavor.get("save_exported_model"):
        raise ArtifactError(
            f"{meta} holds an exported SavedModel (save_exported_model: true), which this "
            "project never writes and does not load (loading runs its graph)"
        )
    path = (folder / str(flavor.get("data", "data")) / "model.keras").resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ArtifactError(f"{meta}: its keras flavour names no model.keras inside {folder}")
    return path


def load_keras_model(folder: str | Path):
    """The Keras model of a downloaded model folder, loaded with Keras' safe mode (no lambda
    or other code from the file runs); only the project's registered layers are known."""
    import zipfile

    import keras

    from components.errors import ArtifactError

    path = keras_file(folder)
    if not zipfile.is_zipfile(path):
        raise ArtifactError(f"{path} is not a .keras archive (truncated or damaged)")
    register_custom_layers()
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
        # safe mode refusing a lambda, a layer this project does not define, a damaged member
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"{path} cannot be loaded as this project's model: {reason}") from None


def _load_pyfunc(path: str):
    """The pyfunc loader (``mlflow models serve``, ``mlflow.pyfunc.load_model``): the same safe
    loading as ``mer predict``, wrapped as MLflow's Keras pyfunc."""
    from mlflow.keras.load import KerasModelWrapper

    folder = Path(path) if (Path(path) / "MLmodel").is_file() else Path(path).parent
    signature = Model.load(str(folder / "MLmodel")).signature
    return KerasModelWrapper(load_keras_model(folder), signature, save_exported_model=False)


def log_model(model, *, name: str, **kwargs: Any):
    """Like ``mlflow.keras.log_model`` (same arguments), saving through :func:`save_model`."""
    return Model.log(
        artifact_path=None, name=name, flavor=sys.modules[__name__], model=model, **kwargs
    )
