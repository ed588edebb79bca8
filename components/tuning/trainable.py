"""The Ray Tune trainable: one trial trains one point of the space through the one training
loop (:mod:`components.training.run`): stacked folds in one ``fit`` call whose epoch-end hook
reports (a call per epoch would rebuild and re-trace the input stream every epoch: ~0.17 s,
three times the epoch's training on the embedded search), a model per fold epoch by epoch.

Every epoch it reports the objective — validation UF1 pooled over the trial's folds (one for
``holdout``, ``tune.kfold`` for ``kfold``; stacked in one model when the backbone allows) —
with a checkpoint (weights, optimizer state, selection state, the next epoch; stored as data in
the search store and given to Ray as its checkpoint), so a crashed, paused or interrupted
trial goes on from its last epoch exactly, and ASHA can stop it early. Inside the trial, TensorFlow is
capped to the trial's CPUs and trains under MirroredStrategy over the GPUs Ray gave it (or over
``devices_per_trial`` logical CPU devices).
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from components import datafiles
from components.config import PreprocessConfig, TrackingConfig, TrainConfig, model_from_dict
from components.errors import ArtifactError, ConfigError, MerError, redact, user_message
from components.evaluation.splits import Fold
from components.parsing import parse
from components.tracking.mlflow_runs import flatten
from components.tracking.trial_runs import log_epoch, tag_run, trial_run
from components.tuning.store import SearchStore, TrialSlot, TrialState


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
    storage: str  # the search store (components.tuning.store): storage folder or URI, and name
    search: str
    slots: tuple[TrialSlot, ...] | None  # grid/random: the trials; optuna: None
    tags: dict[str, str]  # provenance (commit, data version) for the trial's MLflow run
    crash_once_at_epoch: int | None = None  # fault injection for tests: crash once, then resume


STATE = "state.npz"


def saved_state(store: SearchStore, key: str) -> TrialState | None:
    """The trial's latest state: from Ray's checkpoint when Ray restarts or unpauses it within
    a run, else from the search store (a search interrupted and run again); checked by type."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if not checkpoint:
        return store.trial_state(key)
    with checkpoint.as_directory() as folder:
        raw = datafiles.load(Path(folder) / STATE)
    try:
        return parse(TrialState, raw, f"the checkpoint of trial {key}")
    except ConfigError as exc:
        raise ArtifactError(str(exc)) from None


def pooled_validation(runs) -> dict[str, float]:
    """The objective at the last epoch: validation UF1/UAR/loss of every fold of every run,
    pooled (one confusion matrix), as the protocol pools its folds."""
    from components.training.selection import validation_metrics

    truth, probabilities = [], []
    for run in runs:
        selection = run.selection
        truth += selection.truth
        probabilities += selection.last
    return validation_metrics(np.concatenate(truth), np.concatenate(probabilities))


def ending_on_user_errors(train: Callable[[dict[str, Any], TrialContext], None]):
    """``train`` as a trial that ends, instead of failing, on an error a retry cannot cure (a
    :class:`~components.errors.MerError`: a setting, a platform limit): Ray Tune would retry a
    failed trial ``max_failures`` times, each failing the same way. Its one line goes to the
    search store, where the search reports it (:meth:`SearchStore.fatal_messages`)."""

    @functools.wraps(train)
    def trial(config: dict[str, Any], context: TrialContext) -> None:
        try:
            train(config, context)
        except MerError as exc:
            from ray import tune

            from components.tuning.search import trial_identity

            key, _ = trial_identity(config, context.slots, tune.get_context().get_trial_id())
            message = user_message(exc)  # a MerError always has its line (redacted)
            SearchStore(context.storage, context.search).save_fatal(key, message)
            print(f"trial {key}: {message} (not retried: a retry cannot cure it)")

    return trial


@ending_on_user_errors
def train_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train one trial of the search (a pure function of its point, the seed and the data);
    report every epoch, and store its state, so it resumes exactly wherever it stopped."""
    entered = time.perf_counter()
    from ray import tune

    from components.tuning.search import trial_identity

    trial_id = tune.get_context().get_trial_id()
    key, index = trial_identity(config, context.slots, trial_id)
    point = context.points[index]
    train_cfg = trial_training(point, context)
    store = SearchStore(context.storage, context.search)
    saved = saved_state(store, key)
    if saved is not None and saved.next_epoch >= train_cfg.epochs:
        return  # finished in an earlier run of the search: its results are in the store
    job, runs = trial_runs(point, train_cfg, context)
    start_epoch, history = restored(runs, saved, key)
    run_id = trial_mlflow_run(context, key, point, trial_id)
    runs[-1].on_epoch = EpochReport(  # when the last run ends an epoch, every run trained it
        context, store, key, runs, job.strategy, history, run_id,
        restored_from=start_epoch - 1 if saved is not None else -1, entered=entered,
    )  # fmt: skip
    if len(runs) == 1:  # one run (stacked folds, or one fold): one fit call, not one an epoch
        runs[0].fit(start_epoch, train_cfg.epochs)
    else:  # a model per fold: epoch by epoch, so every report pools all folds
        for epoch in range(start_epoch, train_cfg.epochs):
            for run in runs:
                run.fit(epoch, epoch + 1)


def trial_training(point: dict[str, Any], context: TrialContext) -> TrainConfig:
    """The training values of ``point`` on the trial's devices and CPUs."""
    return replace(
        context.train,
        learning_rate=point["learning_rate"],
        batch_size=point["batch_size"],
        epochs=point["epochs"],
        devices=context.devices,
        threads=max(1, int(context.cpus)),
    )


def trial_runs(point: dict[str, Any], train_cfg: TrainConfig, context: TrialContext):
    """The training job of ``point`` and its runs over the objective's folds (no early
    stopping: the scheduler stops trials)."""
    from components.datasets.labels import NUM_CLASSES
    from components.training.job import TrainingJob

    job = TrainingJob.open(
        context.preprocess.records_dir,
        context.data_version,
        model_from_dict(point["model"], "tune point"),
        train_cfg,
        context.seed,
        context.preprocess.input_sizes(),
        NUM_CLASSES,
    )
    folds = [job.fold_data(f.name, f.train, f.validation) for f in context.folds]
    return job, job.runs(folds, early_stopping=False)


def restored(runs, saved: TrialState | None, key: str) -> tuple[int, list[dict]]:
    """The epoch to start at and the history so far: the stored state loaded into ``runs``."""
    if saved is None:
        return 0, []
    if len(saved.runs) != len(runs):
        raise ArtifactError(f"the stored state of trial {key} is another trial's")
    start_epoch = 0
    for run, state in zip(runs, saved.runs, strict=True):
        start_epoch = run.load(state)
    return start_epoch, list(saved.history)


def trial_mlflow_run(context: TrialContext, key: str, point: dict, trial_id: str) -> str | None:
    """The trial's MLflow child run (None without a parent run, or when MLflow is down: the
    trial trains all the same), tagged with the node it runs on now (a restart may move it)."""
    if context.parent_run_id is None:
        return None
    import ray

    from components.tuning.space import describe

    try:
        run_id = trial_run(
            context.tracking.uri,
            context.parent_run_id,
            key,
            {**context.tags, "label": describe(point), "stage": "tune", "trial_id": trial_id},
            flatten({"point": point}),
        )
        # where it runs goes to MLflow, not to the tracked table
        tag_run(context.tracking.uri, run_id, {"node_id": ray.get_runtime_context().get_node_id()})
        return run_id
    except Exception as exc:
        print(f"trial {key}: MLflow unavailable ({redact(str(exc))}); training goes on")
        return None


@dataclass
class EpochReport:
    """The runs' epoch-end hook: the objective over every fold at an epoch, stored in the
    search store and reported to Ray Tune with a checkpoint (and to MLflow)."""

    context: TrialContext
    store: SearchStore
    key: str
    runs: list
    strategy: Any
    history: list[dict]
    run_id: str | None
    restored_from: int  # the epoch the stored state ended (-1: a fresh start)
    entered: float  # when the trial started (perf_counter)

    def __post_init__(self) -> None:
        import ray

        self.setup_s = time.perf_counter() - self.entered  # imports, data, model: start-up
        self.node = ray.get_runtime_context().get_node_id()
        self.earlier_s = self.history[-1]["time_total_s"] if self.history else 0.0

    def __call__(self, epoch: int, *_) -> None:
        from ray import tune

        from components.tuning.halving import EPOCHS_DONE

        metrics = {
            "epoch": epoch,
            EPOCHS_DONE: epoch + 1,
            **pooled_validation(self.runs),
            "replicas": self.strategy.num_replicas_in_sync,
            "stacked_folds": len(self.runs[0].folds),
            "node_id": self.node,
            "restored_from_epoch": self.restored_from,
            "setup_s": self.setup_s,
            "time_total_s": self.earlier_s + time.perf_counter() - self.entered,
        }
        if self.context.crash_once_at_epoch == epoch and self.restored_from < 0:
            raise RuntimeError(f"injected crash in trial {self.key} at epoch {epoch}")
        self.history.append(metrics)
        if self.run_id:
            log_epoch(self.context.tracking.uri, self.run_id, metrics, epoch)
        state = {
            "next_epoch": epoch + 1,
            "runs": [run.state(epoch + 1) for run in self.runs],
            "history": self.history,
        }
        self.store.save_trial(self.key, state)
        with tempfile.TemporaryDirectory() as folder:
            datafiles.save(Path(folder) / STATE, state)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
