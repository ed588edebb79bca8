"""MLflow helpers shared by every stage: the store, the experiment, flattened params, tags."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import keras
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


#: What ``dvc repro`` itself rewrites while it runs: changes there do not make the code dirty.
PIPELINE_OUTPUTS = ("dvc.lock", "reports")


def git_commit() -> str:
    """The commit of the code, ``-dirty`` if tracked files other than the pipeline's own
    outputs (:data:`PIPELINE_OUTPUTS`) differ from it; ``unknown`` outside a git checkout."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return "unknown"
        excluded = [f":(exclude){path}" for path in PIPELINE_OUTPUTS]
        dirty = git("diff", "--quiet", "HEAD", "--", ".", *excluded).returncode != 0
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def data_version(records_dir: str | Path) -> str:
    """The version of the data a run used: DVC's hash of the records directory, exactly the
    ``md5`` that ``dvc.lock`` records for it (``<md5 of the sorted file listing>.dir``), so a
    run can be traced to its ``dvc.lock`` entry and back."""
    root = Path(records_dir)
    listing = [
        {
            "md5": hashlib.md5(path.read_bytes()).hexdigest(),
            "relpath": path.relative_to(root).as_posix(),
        }
        for path in root.rglob("*")
        if path.is_file()
    ]
    listing.sort(key=lambda entry: entry["relpath"])  # DVC orders by the joined path string
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def provenance_tags(records_dir: str | Path, stage: str) -> dict[str, str]:
    return {"git_commit": git_commit(), "data_version": data_version(records_dir), "stage": stage}


class EpochLogger(keras.callbacks.Callback):
    """Log every epoch's metrics to an MLflow run (by id, so it works inside nested runs)."""

    def __init__(self, run_id: str, prefix: str = ""):
        super().__init__()
        self.run_id = run_id
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {f"{self.prefix}{k}": float(v) for k, v in (logs or {}).items()}
        if metrics:
            mlflow.tracking.MlflowClient().log_batch(
                self.run_id,
                metrics=[
                    mlflow.entities.Metric(k, v, int(1000 * time.time()), epoch)
                    for k, v in metrics.items()
                ],
            )
