"""The Ray Tune trainable: one trial trains one point of the space, epoch by epoch.

Every epoch it reports validation UF1 (subjects of the search's validation split only) with a
checkpoint (the compiled ``.keras`` model with its optimizer state, and the epoch), so a crashed
trial restarts from its last epoch and ASHA can stop it early. Inside the trial, TensorFlow is
capped to the trial's CPUs and trains under MirroredStrategy over the GPUs Ray gave it (or over
``devices_per_trial`` logical CPU devices).
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from components.config import ModelConfig, PreprocessConfig, TrackingConfig, TrainConfig, parse


@dataclass(frozen=True)
class TrialContext:
    """What every trial shares (passed with ``tune.with_parameters``)."""

    points: list[dict[str, Any]]
    preprocess: PreprocessConfig
    train: TrainConfig
    tracking: TrackingConfig
    train_subjects: tuple[str, ...]
    validation_subjects: tuple[str, ...]
    seed: int
    cpus: float
    devices: int
    parent_run_id: str | None
    crash_once_at_epoch: int | None = None  # fault injection for tests: crash once, then resume


def _mlflow_child(ctx: TrialContext, trial_id: str, label: str, point: dict) -> str | None:
    """The trial's MLflow run under the search's parent run (found again after a restart)."""
    if ctx.parent_run_id is None:
        return None
    import mlflow

    from components.tracking import flatten

    mlflow.set_tracking_uri(ctx.tracking.uri)  # resolved by the driver
    client = mlflow.tracking.MlflowClient()
    parent = client.get_run(ctx.parent_run_id)
    found = client.search_runs(
        [parent.info.experiment_id],
        f"tags.trial_id = '{trial_id}' and tags.`mlflow.parentRunId` = '{ctx.parent_run_id}'",
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        parent.info.experiment_id,
        run_name=f"trial-{trial_id}",
        tags={
            "mlflow.parentRunId": ctx.parent_run_id,
            "trial_id": trial_id,
            "label": label,
            "stage": "tune",
        },
    )
    for key, value in flatten({"point": point}).items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def _log_epoch(run_id: str, metrics: dict[str, Any], epoch: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for key, value in metrics.items():
        if isinstance(value, int | float):
            client.log_metric(run_id, key, float(value), step=epoch)


def _with_retries(action, attempts: int = 5) -> None:
    """SQLite may be locked for a moment by another trial: retry before giving up."""
    for attempt in range(attempts):
        try:
            action()
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def train_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train ``context.points[config['index']]``; report every epoch (pure function of config)."""
    entered = time.perf_counter()
    from ray import tune

    point = context.points[config["index"]]
    train_cfg = replace(
        context.train,
        learning_rate=point["learning_rate"],
        batch_size=point["batch_size"],
        epochs=point["epochs"],
        devices=context.devices,
        threads=max(1, int(context.cpus)),
    )
    from components.training import runtime

    runtime.configure(train_cfg, context.seed)  # before any TensorFlow op in this process
    import keras
    import ray

    from components.evaluation.protocol import ExperimentData
    from components.training.fit import (
        class_weights,
        compiled_model,
        predict_labels,
        validation_metrics,
    )

    strategy = runtime.make_strategy(train_cfg)
    model_cfg = parse(ModelConfig, point["model"], where="tune point")
    data = ExperimentData.load(context.preprocess)
    kind = data.input_kind(model_cfg)
    global_batch = train_cfg.batch_size * strategy.num_replicas_in_sync
    validation = data.dataset(context.validation_subjects, kind, 64)
    labels = data.rows(context.train_subjects).label.to_numpy()
    weights = class_weights(labels, 3) if train_cfg.class_weighting == "balanced" else None

    trial_id = tune.get_context().get_trial_id()
    checkpoint = tune.get_checkpoint()
    start_epoch = 0
    with strategy.scope():
        if checkpoint:
            with checkpoint.as_directory() as folder:
                model = keras.saving.load_model(Path(folder) / "model.keras")
                start_epoch = json.loads((Path(folder) / "state.json").read_text())["epoch"] + 1
        else:
            model = compiled_model(model_cfg, train_cfg.learning_rate, data.input_sizes)
    run_id = None
    from components.tuning.space import describe

    try:
        run_id = _mlflow_child(context, trial_id, describe(point), point)
    except Exception as exc:
        print(f"trial {trial_id}: MLflow unavailable ({exc}); training goes on")

    node = ray.get_runtime_context().get_node_id()
    setup_s = time.perf_counter() - entered  # imports, data, model: the trial's start-up cost
    for epoch in range(start_epoch, train_cfg.epochs):
        runtime.seed_everything(context.seed + epoch)  # the same epoch after a restart
        train = data.dataset(
            context.train_subjects,
            kind,
            global_batch,
            train_cfg=train_cfg,
            seed=context.seed + epoch,
        )
        history = model.fit(train, epochs=1, class_weight=weights, shuffle=False, verbose=0)
        metrics = {
            "epoch": epoch,
            "loss": float(history.history["loss"][-1]),
            **validation_metrics(predict_labels(model, validation), 3),
            "replicas": strategy.num_replicas_in_sync,
            "node_id": node,
            "restored_from_epoch": start_epoch - 1 if checkpoint else -1,
            "setup_s": setup_s,
        }
        if context.crash_once_at_epoch == epoch and not checkpoint:
            raise RuntimeError(f"injected crash in trial {trial_id} at epoch {epoch}")
        if run_id:
            _with_retries(functools.partial(_log_epoch, run_id, metrics, epoch))
        with tempfile.TemporaryDirectory() as folder:
            model.save(Path(folder) / "model.keras")
            (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
