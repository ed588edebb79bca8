"""Test-wide setup: quiet TensorFlow, two logical CPU devices for the multi-device paths."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


import mlflow
import pytest


@pytest.fixture(autouse=True)
def isolated_mlflow():
    """Each test starts and ends without an MLflow tracking URI or active run left behind
    (``mlflow.set_tracking_uri`` also writes MLFLOW_TRACKING_URI into the environment)."""
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
