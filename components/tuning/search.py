"""The search: which subjects it may use, the objective's folds, its trials, the Ray Tune set-up,
and whether a finished ``Tuner.fit`` really completed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np

from components.config import Params
from components.errors import ConfigError
from components.evaluation.splits import Fold, grouped_kfold, validation_split
from components.tuning.halving import EPOCHS_DONE
from components.tuning.store import TrialSlot


def subject_split(subjects: list[str], params: Params) -> tuple[list[str], list[str]]:
    """(held out from the search, the search's subjects), by subject, seeded."""
    rest, holdout = validation_split(
        subjects, params.tune.holdout_fraction, params.seed, "tune-holdout"
    )
    return list(holdout), list(rest)


def objective_folds(search_subjects: list[str], params: Params) -> list[Fold]:
    """The folds a trial is scored on (``test`` is empty: a trial predicts no test subject).

    ``holdout``: one split, trained on the search subjects minus ``validation_fraction`` of
    them, scored on those. ``kfold``: ``tune.kfold`` grouped folds of the search subjects,
    each trained on the others and scored on its own; the objective pools the folds'
    predictions (as the evaluation protocol pools its folds)."""
    cfg = params.tune
    if cfg.objective == "holdout":
        train, validation = validation_split(
            search_subjects, cfg.validation_fraction, params.seed, "tune-validation"
        )
        if not validation or not train:
            raise ConfigError(
                f"tune needs at least 2 subjects outside its holdout; it has {len(search_subjects)}"
            )
        return [Fold("holdout", (), tuple(train), tuple(validation))]
    if len(search_subjects) < cfg.kfold:
        raise ConfigError(
            f"tune.kfold {cfg.kfold} needs at least {cfg.kfold} subjects outside the holdout; "
            f"it has {len(search_subjects)}"
        )
    folds = grouped_kfold(search_subjects, cfg.kfold, 0.0, params.seed)
    return [Fold(f.name, (), (*f.train, *f.validation), f.test) for f in folds]


def experiment_name(points: list, params: Params, data_version: str) -> str:
    """Stable per search definition (points, training, search settings, seed, data, code), so
    an interrupted run of the same search is resumed, and any change starts a new one (a code
    change too: a search is never finished with, or read back from, trials of other code)."""
    from components.provenance import code_version

    key = json.dumps(
        [
            points,
            asdict(params.train),
            asdict(params.tune),
            data_version,
            params.seed,
            code_version(),
        ],
        sort_keys=True,
        default=str,
    )
    return "tune-" + hashlib.sha1(key.encode()).hexdigest()[:10]


def trial_slots(params: Params, n_points: int) -> list[TrialSlot] | None:
    """The trials a search runs, each with a key that names its state file: the grid
    (``num_samples`` times), or ``num_samples`` points drawn from the seed (``random``); None
    for ``optuna``, which chooses each trial from the results so far."""
    cfg = params.tune
    if cfg.search == "grid":
        indices = [i for _ in range(cfg.num_samples) for i in range(n_points)]
    elif cfg.search == "random":
        rng = np.random.default_rng([params.seed, n_points])
        replace = cfg.num_samples > n_points
        indices = rng.choice(n_points, size=cfg.num_samples, replace=replace).tolist()
    else:
        return None
    return [TrialSlot(f"t{slot:03d}-p{index:03d}", index) for slot, index in enumerate(indices)]


def search_setup(params: Params, slots: list[TrialSlot] | None, n_points: int):
    """(param_space, search_alg, scheduler) from ``tune``.

    ``grid`` and ``random`` run a fixed list of trials (``slots``: a grid over slot numbers);
    ``optuna`` picks a point index per trial. ASHA's and synchronous halving's rungs are in
    epochs (``time_attr`` ``epochs_done``, which a trial resumed in a new run reports as
    well): a trial gets ``grace_period`` epochs, then at each rung only the top
    1/``reduction_factor`` go on (ASHA decides as each trial arrives; halving once all have).
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    cfg = params.tune
    if slots is not None:
        space, algorithm = {"slot": tune.grid_search(list(range(len(slots))))}, None
    else:
        from ray.tune.search.optuna import OptunaSearch

        space = {"index": tune.choice(list(range(n_points)))}
        algorithm = OptunaSearch(seed=params.seed)
    max_epochs = max(params.tune.space.epochs)
    if cfg.scheduler != "fifo" and cfg.grace_period > max_epochs:
        raise ConfigError(
            f"tune.grace_period {cfg.grace_period} is above the largest tune.space.epochs "
            f"({max_epochs}): {cfg.scheduler} needs grace_period ≤ the epochs a trial runs"
        )
    if cfg.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr=EPOCHS_DONE,
            max_t=max_epochs,
            grace_period=cfg.grace_period,
            reduction_factor=cfg.reduction_factor,
            brackets=cfg.brackets,
        )
    elif cfg.scheduler == "halving":
        from components.tuning.halving import SynchronousHalving

        scheduler = SynchronousHalving(
            max_t=max_epochs,
            grace_period=cfg.grace_period,
            reduction_factor=cfg.reduction_factor,
            trials=expected_trials(params, n_points),
        )
    else:
        scheduler = FIFOScheduler()
    return space, algorithm, scheduler


def trial_statuses(results, slots: list[TrialSlot] | None) -> dict[str, tuple[int, str]]:
    """Every trial Ray ran, by key: (point index, Ray status)."""
    out = {}
    for trial in results._experiment_analysis.trials:
        key, index = trial_identity(trial.config, slots, trial.trial_id)
        out[key] = (index, trial.status)
    return out


def trial_identity(config: dict, slots, trial_id: str) -> tuple[str, int]:
    """A trial's key and point index from its Ray config."""
    if slots is not None:
        slot = slots[config["slot"]]
        return slot.key, slot.index
    return f"optuna-{trial_id}", int(config["index"])


def expected_trials(params: Params, n_points: int) -> int:
    """How many trials the search runs: the grid × repeats, or ``num_samples``."""
    cfg = params.tune
    return n_points * cfg.num_samples if cfg.search == "grid" else cfg.num_samples


class Interruption:
    """Which signal stopped the search, if one did."""

    signal: str | None = None


@contextmanager
def interruptible() -> Iterator[Interruption]:
    """While Ray Tune runs, Ctrl-C and SIGTERM stop it gracefully (Tune's SIGUSR1 handler saves
    the experiment state and stops the trials, so the search can be resumed) and are recorded:
    Tune marks the trials it stopped TERMINATED, like finished ones. A second signal aborts."""
    seen = Interruption()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum, frame) -> None:
        if seen.signal is not None:
            raise KeyboardInterrupt
        seen.signal = signal.Signals(signum).name
        os.kill(os.getpid(), signal.SIGUSR1)

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards it as SIGUSR1
    for s in previous:
        signal.signal(s, stop)
    try:
        yield seen
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def build_tuner(trainable, params: Params, store, slots, labels: list[str], callbacks=()):
    """A new ``Tuner`` for the search, its Ray experiment inside the search's folder. An
    interrupted search is never restored from Ray's experiment state (pickles): its trials
    resume from their own states in the search store (:mod:`components.tuning.store`)."""
    from ray import tune

    cfg = params.tune
    space, algorithm, scheduler = search_setup(params, slots, len(labels))

    def trial_name(trial) -> str:
        key, index = trial_identity(trial.config, slots, trial.trial_id)
        return f"{key} {labels[index]}"

    def trial_folder(trial) -> str:
        return trial_identity(trial.config, slots, trial.trial_id)[0]

    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=cfg.metric,
            mode=cfg.mode,
            search_alg=algorithm,
            scheduler=scheduler,
            num_samples=1 if slots is not None else cfg.num_samples,
            # synchronous halving pauses trials at a rung until every trial is there; a paused
            # trial still counts against max_concurrent_trials, so the later trials would never
            # start: there, resources (tune.cpus_per_trial) alone bound the concurrency
            max_concurrent_trials=None if cfg.scheduler == "halving" else cfg.max_concurrent_trials,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_folder,
            # a finished or paused trial's actor takes the next trial: no new process importing
            # TensorFlow per trial (a trial sets itself up as a reused unit worker does)
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="ray",
            storage_path=store.path,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=list(callbacks),
            verbose=0,  # the search's own bar and lines (components.tuning.progress) instead
        ),
    )


def check_complete(
    statuses: dict[str, tuple[int, str]],
    interruption: Interruption,
    expected: int,
    errors: Sequence[BaseException] = (),
) -> None:
    """Raise unless the search ran to its end: not interrupted, every expected trial present
    and finished or stopped by the scheduler (TERMINATED). A trial error the user must fix (a
    setting, a platform limit: ``errors``' first such) is raised as its one line, not as
    resumable."""
    from components.errors import Interrupted, MerError, user_message

    failed = [k for k, (_, status) in statuses.items() if status == "ERROR"]
    unfinished = [k for k, (_, status) in statuses.items() if status not in ("TERMINATED", "ERROR")]
    if interruption.signal or unfinished or len(statuses) < expected:
        raise Interrupted(
            f"the search was interrupted ({interruption.signal or 'trials unfinished'}) with "
            f"{len(statuses)} of {expected} trials started; no best configuration was written. "
            "Run `mer tune` again to resume it (`mer tune --fresh` starts over)"
        )
    fixable = next(filter(None, map(user_message, errors)), None) if failed else None
    if fixable:
        raise MerError(
            f"{len(failed)} trial(s) failed: {fixable} — a retry cannot cure this; fix it, then "
            "run `mer tune` again"
        )
    if failed:
        raise MerError(
            f"{len(failed)} trial(s) failed after their retries ({', '.join(failed[:4])}); see "
            "the trial errors above. `mer tune` resumes and retries them"
        )


def point_model(point: dict):
    from components.config import model_from_dict

    return model_from_dict(point["model"], "tune point")
