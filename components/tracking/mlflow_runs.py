"""MLflow helpers shared by every stage: the store, the experiment, flattened params, tags."""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from components.config import TrackingConfig

#: The user's override, read once at start: ``mlflow.set_tracking_uri`` itself writes
#: MLFLOW_TRACKING_URI, so reading it later would mistake our own earlier setting for the user's.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def resolved_uri(cfg: TrackingConfig) -> str:
    """The tracking URI in force (the user's ``MLFLOW_TRACKING_URI`` wins), a relative SQLite
    path made absolute so processes with another working directory (Ray trials) reach it."""
    uri = USER_TRACKING_URI or cfg.uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def configure_tracking(cfg: TrackingConfig) -> str:
    """Point MLflow at the configured store (``MLFLOW_TRACKING_URI`` wins) and make sure the
    experiment exists. A local store keeps its artifacts under ``cfg.artifact_location`` (not
    ``./mlruns``); a tracking server (http/https) uses its own artifact root, unless
    ``cfg.artifact_location`` is a URI (s3://..., gs://...) that its clients can all reach.
    Returns the experiment id."""
    uri = resolved_uri(cfg)
    mlflow.set_tracking_uri(uri)
    with store_lock(uri):  # the first use creates the schema: one process at a time
        experiment = mlflow.get_experiment_by_name(cfg.experiment)
        if experiment is None:
            location = cfg.artifact_location
            if "://" not in location:
                remote = uri.startswith(("http://", "https://", "databricks"))
                location = None if remote else Path(location).resolve().as_uri()
            experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock next to a SQLite store while it is initialised: MLflow creates
    the schema (alembic migrations) on first use, and two processes doing it at once fail with
    "table _alembic_tmp_experiments already exists". Other stores need no lock."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def tracked_run(**kwargs: Any) -> Iterator[Any]:
    """``mlflow.start_run(**kwargs)`` that ends KILLED when interrupted (Ctrl-C, SIGTERM) and
    FAILED on an error, never FINISHED without its results."""
    from components.errors import Interrupted

    run = mlflow.start_run(**kwargs)
    try:
        yield run
    except (KeyboardInterrupt, Interrupted):
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dataclasses/dicts/lists → ``{"model.attention.type": "se", ...}`` for log_params."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list | tuple) and any(
        isinstance(v, dict) or dataclasses.is_dataclass(v) for v in value
    ):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}{index}."))
        return out
    text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return {prefix.rstrip("."): text[:6000]}
