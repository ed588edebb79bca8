"""A tune trial's MLflow child run: found again when the trial restarts, given every epoch's
metrics, and ended with its real status when the search ends."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

TRIAL_KEY = "trial_key"
STATUS = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}  # Ray's trial status → MLflow's


def _with_retries(action: Callable[[], Any], attempts: int = 5) -> Any:
    """SQLite may be locked for a moment by another trial: retry before giving up."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    return None


def trial_run(
    uri: str, parent_run_id: str, key: str, tags: Mapping[str, str], params: Mapping[str, str]
) -> str:
    """The child run of trial ``key`` under ``parent_run_id`` (created the first time, with
    ``tags`` and ``params``; found again after a restart)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    query = f"tags.{TRIAL_KEY} = '{key}' and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    found = client.search_runs([parent.info.experiment_id], query)
    if found:
        return found[0].info.run_id
    run = client.create_run(
        parent.info.experiment_id,
        run_name=f"trial-{key}",
        tags={"mlflow.parentRunId": parent_run_id, TRIAL_KEY: key, **tags},
    )
    for name, value in params.items():
        client.log_param(run.info.run_id, name, value)
    return run.info.run_id


def tag_run(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    """Set ``tags`` on a run (e.g. the node a trial runs on now; a restart may move it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for name, value in tags.items():
        _with_retries(functools.partial(client.set_tag, run_id, name, value))


def log_epoch(uri: str, run_id: str, metrics: Mapping[str, Any], epoch: int) -> None:
    """The numeric ``metrics`` of one epoch, at step ``epoch``."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, epoch)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    client = MlflowClient(uri)
    _with_retries(functools.partial(client.log_batch, run_id, metrics=batch))


def close_trial_runs(uri: str, parent_run_id: str, statuses: Mapping[str, str]) -> None:
    """End every child run of ``parent_run_id`` still RUNNING: with its trial's outcome
    (``statuses``: trial key → Ray status; FINISHED or FAILED), or KILLED when its trial did
    not end (an interrupted search)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    query = f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'"
    for run in client.search_runs([parent.info.experiment_id], query, max_results=10_000):
        status = STATUS.get(statuses.get(run.data.tags.get(TRIAL_KEY, ""), ""), "KILLED")
        client.set_terminated(run.info.run_id, status)
