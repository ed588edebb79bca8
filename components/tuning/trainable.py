"""The Ray Tune trainable: one trial trains one point of the space through the one training
loop (:mod:`components.training.fit`): stacked folds in one ``fit`` call whose epoch-end hook
reports (a call per epoch would rebuild and re-trace the input stream every epoch: ~0.17 s,
three times the epoch's training on the embedded search), a model per fold epoch by epoch.

Every epoch it reports the objective — validation UF1 pooled over the trial's folds (one for
``holdout``, ``tune.kfold`` for ``kfold``; stacked in one model when the backbone allows) —
with a checkpoint (weights, optimizer state, selection state, the next epoch), so a crashed
trial restarts from its last epoch and ASHA can stop it early. Inside the trial, TensorFlow is
capped to the trial's CPUs and trains under MirroredStrategy over the GPUs Ray gave it (or over
``devices_per_trial`` logical CPU devices).
"""

from __future__ import annotations

import functools
import pickle
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from components.config import PreprocessConfig, TrackingConfig, TrainConfig, model_from_dict
from components.evaluation.splits import Fold


@dataclass(frozen=True)
class TrialContext:
    """What every trial shares (passed with ``tune.with_parameters``)."""

    points: list[dict[str, Any]]
    preprocess: PreprocessConfig
    data_version: str
    train: TrainConfig
    tracking: TrackingConfig
    folds: tuple[Fold, ...]
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


def pooled_validation(runs) -> dict[str, float]:
    """The objective at the last epoch: validation UF1/UAR/loss of every fold of every run,
    pooled (one confusion matrix), as the protocol pools its folds."""
    from components.training.fit import validation_metrics

    truth, probabilities = [], []
    for run in runs:
        selection = run.selection
        truth += selection.truth
        probabilities += selection.last
    return validation_metrics(np.concatenate(truth), np.concatenate(probabilities))


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
    import ray

    from components.datasets.labels import NUM_CLASSES
    from components.evaluation.units import fold_seed
    from components.models.registry import BACKBONES
    from components.records.store import cached_records
    from components.training.fit import FoldData, fold_runs
    from components.tuning.space import describe

    model_cfg = model_from_dict(point["model"], "tune point")
    records = cached_records(context.preprocess.records_dir, context.data_version)
    kind = BACKBONES[model_cfg.backbone].input_kind
    p = context.preprocess
    folds = [
        FoldData(
            f.name,
            records.positions(f.train),
            records.positions(f.validation),
            np.zeros(0, int),
            fold_seed(context.seed, f.name),
        )
        for f in context.folds
    ]
    strategy = runtime.make_strategy(train_cfg)
    runs = fold_runs(
        records.inputs(kind),
        records.labels,
        folds,
        model_cfg,
        train_cfg,
        strategy=strategy,
        kind=kind,
        input_sizes=p.input_sizes(),
        num_classes=NUM_CLASSES,
        seed=context.seed,
        early_stopping=False,  # the scheduler stops trials
    )
    trial_id = tune.get_context().get_trial_id()
    checkpoint = tune.get_checkpoint()
    start_epoch = 0
    if checkpoint:
        with checkpoint.as_directory() as folder:
            states = pickle.loads((Path(folder) / "state.pkl").read_bytes())
        start_epoch = next(run.load(state) for run, state in zip(runs, states, strict=True))
    run_id = None
    try:
        run_id = _mlflow_child(context, trial_id, describe(point), point)
    except Exception as exc:
        print(f"trial {trial_id}: MLflow unavailable ({exc}); training goes on")

    node = ray.get_runtime_context().get_node_id()
    setup_s = time.perf_counter() - entered  # imports, data, model: the trial's start-up cost

    def report(epoch: int, *_) -> None:
        """The objective over every fold at ``epoch``, with a checkpoint, to Ray Tune."""
        metrics = {
            "epoch": epoch,
            **pooled_validation(runs),
            "replicas": strategy.num_replicas_in_sync,
            "stacked_folds": len(runs[0].folds),
            "node_id": node,
            "restored_from_epoch": start_epoch - 1 if checkpoint else -1,
            "setup_s": setup_s,
        }
        if context.crash_once_at_epoch == epoch and not checkpoint:
            raise RuntimeError(f"injected crash in trial {trial_id} at epoch {epoch}")
        if run_id:
            _with_retries(functools.partial(_log_epoch, run_id, metrics, epoch))
        with tempfile.TemporaryDirectory() as folder:
            states = [run.state(epoch + 1) for run in runs]
            (Path(folder) / "state.pkl").write_bytes(pickle.dumps(states))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    runs[-1].on_epoch = report  # when the last run ends an epoch, every run has trained it
    if len(runs) == 1:  # one run (stacked folds, or one fold): one fit call, not one an epoch
        runs[0].fit(start_epoch, train_cfg.epochs)
    else:  # a model per fold: epoch by epoch, so every report pools all folds
        for epoch in range(start_epoch, train_cfg.epochs):
            for run in runs:
                run.fit(epoch, epoch + 1)
