"""MLflow records of an evaluation, built from the stored units: under the stage's parent run,
one child run per (seed, fold) with its subjects, configuration, per-epoch validation metrics
and chosen epoch; the parent gets the pooled metrics with their CIs and the figures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag

from components.artifacts import Evaluation
from components.tracking.mlflow_runs import flatten

BATCH = 900  # MLflow's log_batch takes at most 1000 metrics


def log_folds(parent_id: str, results: Sequence, tags: dict[str, str]) -> None:
    """A child run per (seed, fold) of ``results`` (stored units)."""
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_run(parent_id).info.experiment_id
    for result in results:
        # the unit's own times (a unit read back from the store keeps its first run's)
        now = int(1000 * (result.started_at or time.time()))
        ended = int(1000 * (result.ended_at or time.time()))
        for fold in result.folds:
            run = client.create_run(
                experiment,
                start_time=now,
                run_name=f"fold-{fold.fold.name}-seed{fold.seed}",
                tags={
                    **tags,
                    "mlflow.parentRunId": parent_id,
                    "fold": fold.fold.name,
                    "seed": str(fold.seed),
                    "unit": result.key,
                    "node_id": result.node_id,
                    "stacked": str(result.stacked).lower(),
                },
            )
            params = {
                "test_subjects": ",".join(fold.fold.test),
                "validation_subjects": ",".join(fold.fold.validation),
                "train_subjects": str(len(fold.fold.train)),
                **flatten({"model": result.spec.variant.as_dict()}),
            }
            correct = sum(p["true"] == p["predicted"] for p in fold.predictions)
            metrics = [
                Metric(name, float(value), now, row["epoch"])
                for row in fold.history
                for name, value in row.items()
                if name != "epoch"
            ]
            metrics += [
                Metric("best_epoch", float(fold.best_epoch), now, 0),
                Metric("epochs_run", float(fold.epochs_run), now, 0),
                Metric("test_samples", float(len(fold.predictions)), now, 0),
                Metric("test_accuracy", correct / max(len(fold.predictions), 1), now, 0),
            ]
            client.log_batch(
                run.info.run_id,
                params=[Param(k, v[:6000]) for k, v in params.items()],
                tags=[RunTag("stage", tags.get("stage", ""))],
            )
            for start in range(0, len(metrics), BATCH):
                client.log_batch(run.info.run_id, metrics=metrics[start : start + BATCH])
            client.set_terminated(run.info.run_id, end_time=ended)


def summary_metrics(summary: dict) -> dict[str, float]:
    """Pooled metrics (with CIs) of every subset, named as ``dvc metrics show`` names them:
    ``composite.uf1``, ``casme2.uf1_ci_low``, ..."""
    return {
        f"{subset}.{key}": float(block[key])
        for subset, block in summary.items()
        for key in Evaluation.METRIC_KEYS[:-1]  # all but the sample count
        if block.get(key) is not None
    }


def log_summary(summary: dict, folder: Path, files: Sequence[str]) -> None:
    """Pooled metrics (with CIs) of every subset on the active run, and the report files."""
    mlflow.log_metrics(summary_metrics(summary))
    for name in files:
        path = folder / name
        if path.is_dir():
            mlflow.log_artifacts(str(path), name)
        elif path.is_file():
            mlflow.log_artifact(str(path))
