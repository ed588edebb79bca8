"""MLflow helpers shared by every stage: the store, the experiment, flattened params, tags."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from components.config import TrackingConfig
from components.outputs import pid_alive

#: The user's override, read once at start: ``mlflow.set_tracking_uri`` itself writes
#: MLFLOW_TRACKING_URI, so reading it later would mistake our own earlier setting for the user's.
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")
USER_EXPERIMENT = os.environ.get("MLFLOW_EXPERIMENT_NAME")  # likewise: wins over the setting


def resolved_uri(cfg: TrackingConfig) -> str:
    """The tracking URI in force (the user's ``MLFLOW_TRACKING_URI`` wins), a relative SQLite
    path made absolute so processes with another working directory (Ray trials) reach it."""
    uri = USER_TRACKING_URI or cfg.uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def configure_tracking(cfg: TrackingConfig) -> str:
    """Point MLflow at the configured store and experiment (``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_EXPERIMENT_NAME`` win) and make sure the experiment exists. A local store keeps its artifacts under ``cfg.artifact_location`` (not
    ``./mlruns``); a tracking server (http/https) uses its own artifact root, unless
    ``cfg.artifact_location`` is a URI (s3://..., gs://...) that its clients can all reach.
    Returns the experiment id."""
    uri = resolved_uri(cfg)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # may hold secrets
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    with store_lock(uri):  # the first use creates the schema: one process at a time
        if (database := sqlite_path(uri)) is not None:
            ensure_sqlite_store(database)
        name = USER_EXPERIMENT or cfg.experiment
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            location = cfg.artifact_location
            if "://" not in location:
                remote = uri.startswith(("http://", "https://", "databricks"))
                location = None if remote else Path(location).resolve().as_uri()
            experiment_id = mlflow.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
            )
        else:
            experiment_id = experiment.experiment_id
            if EXPERIMENT_KIND not in experiment.tags:  # a kind set by a user stays
                mlflow.MlflowClient().set_experiment_tag(
                    experiment_id, EXPERIMENT_KIND, MODEL_TRAINING
                )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


#: the experiment's kind, for MLflow UIs that choose its view by it (MLflow 3.x before its
#: GenAI / Model training switch); 3.17's switch ignores it (see :func:`training_view_url`)
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
#: MLflow 3.17's UI opens every experiment on its GenAI overview (traces, token usage) unless
#: the page's ``workflowType`` search parameter (or the browser's remembered switch) says model
#: training; the app keeps the parameter on every link it follows from there
TRAINING_VIEW = "workflowType=machine_learning"


def training_view_url(
    server: str, experiment_id: str | None = None, run_id: str | None = None
) -> str:
    """A link to the MLflow UI at ``server`` that opens on the training runs (an experiment's
    runs, one run, or the experiment list), whatever the browser last showed."""
    path = "/experiments" + (f"/{experiment_id}" if experiment_id else "")
    path += f"/runs/{run_id}" if experiment_id and run_id else ""
    return f"{server.rstrip('/')}/#{path}?{TRAINING_VIEW}"


def ui_link(experiment_id: str, run_id: str) -> str:
    """Where to see a run: its training-view URL when the tracking store is a server, else how
    to start the UI on the local store (its links then open on the training runs)."""
    import mlflow

    from components.errors import redact

    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return redact(training_view_url(uri, experiment_id, run_id))
    return f"`mlflow ui --backend-store-uri {uri}`, then {training_view_url('http://127.0.0.1:5000', experiment_id, run_id)}"


def log_records_input(records_dir: str | Path, data_version: str, context: str) -> None:
    """The records a run used, as an MLflow dataset input (its manifest's schema and a digest
    from the data version, its source the records folder)."""
    import mlflow.data
    import pandas as pd

    from components.records.files import MANIFEST, read_table

    manifest: pd.DataFrame = read_table(Path(records_dir) / MANIFEST).to_pandas()
    dataset = mlflow.data.from_pandas(
        manifest, source=str(records_dir), name="records", digest=data_version[:8]
    )
    mlflow.log_input(dataset, context=context)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Refuse, in one line and within ``timeout`` seconds, a tracking store that cannot be
    reached (MLflow itself retries for minutes, silently, then fails with a traceback)."""
    from components.errors import TrackingError, redact

    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
        except requests.RequestException as exc:
            raise TrackingError(
                f"the MLflow server {redact(uri)} does not answer ({type(exc).__name__}): start "
                "it, or set tracking.uri / MLFLOW_TRACKING_URI"
            ) from None
    elif (database := sqlite_path(uri)) is not None:
        folder = database.parent if database.parent != Path("") else Path(".")
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not os.access(existing, os.W_OK) or (
            database.exists() and not os.access(database, os.W_OK)
        ):
            raise TrackingError(f"the MLflow store {database} cannot be written (permissions)")
    elif "://" in uri and not uri.startswith(("file:", "databricks")):
        import sqlalchemy

        arguments = (
            {"connect_timeout": int(timeout)} if uri.startswith(("postgres", "mysql")) else {}
        )
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=arguments)
            with engine.connect():
                pass
            engine.dispose()
        except Exception as exc:  # the driver's own error types
            reason = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
            raise TrackingError(
                f"the MLflow store {redact(uri)} cannot be reached ({reason}): start it, or set "
                "tracking.uri / MLFLOW_TRACKING_URI"
            ) from None


def ensure_sqlite_store(path: Path) -> None:
    """A local SQLite store whose schema is complete. A new store is created atomically: its
    schema is built in a temporary file that replaces ``path`` only when complete, so Ctrl-C
    during the first run can no longer leave a half schema ("table spans already exists" for
    ever after). A half-built store left by an older version, holding no run, is set aside
    (renamed, not deleted) and created anew."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    if path.is_file() and path.stat().st_size:
        if not _half_built(path):
            return
        aside = path.with_name(f"{path.name}.half-built-{int(time.time())}")
        os.replace(path, aside)
        print(f"tracking: {path} held a half-built MLflow schema and no run; set aside as {aside}")
    for stale in path.parent.glob(f".{path.name}.creating-*"):
        if not pid_alive(int(stale.name.rsplit("-", 1)[1])):
            stale.unlink()
    temporary = path.with_name(f".{path.name}.creating-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    engine = sqlalchemy.create_engine(f"sqlite:///{temporary}")
    try:
        _initialize_tables(engine)  # MLflow's own schema creation and migrations
    except BaseException:
        engine.dispose()
        temporary.unlink(missing_ok=True)  # Ctrl-C or an error: nothing half-built is left
        raise
    engine.dispose()
    os.replace(temporary, path)


def _half_built(path: Path) -> bool:
    """A store whose schema is not at MLflow's head revision and that holds no run and no
    registered model (an interrupted first creation): safe to set aside."""
    import sqlite3

    from mlflow.store.db.utils import _get_latest_schema_revision

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
        version = (
            db.execute("select version_num from alembic_version").fetchone()
            if "alembic_version" in tables
            else None
        )
        if version is not None and version[0] == _get_latest_schema_revision():
            return False
        for table in ("runs", "registered_models"):
            if table in tables and db.execute(f"select count(*) from {table}").fetchone()[0]:
                return False
    return True


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
