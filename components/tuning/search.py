"""The search: which subjects it may use, the objective's folds, the Ray Tune set-up, and
whether a finished ``Tuner.fit`` really completed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from components.config import Params
from components.errors import ConfigError
from components.evaluation.splits import Fold, grouped_kfold, validation_split


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


def search_setup(params: Params, n_points: int):
    """(param_space, search_alg, scheduler) from ``tune``.

    ASHA's and synchronous halving's rungs are in epochs (``time_attr``: the trial's epoch
    count): a trial gets ``grace_period`` epochs, then at each rung only the top
    1/``reduction_factor`` go on (ASHA decides as each trial arrives; halving once all have).
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    cfg = params.tune
    if cfg.search == "grid":
        space, algorithm = {"index": tune.grid_search(list(range(n_points)))}, None
    elif cfg.search == "random":
        space, algorithm = {"index": tune.randint(0, n_points)}, None
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
            time_attr="training_iteration",
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


def incomplete_trials(results) -> list[str]:
    """Trials of a ``ResultGrid`` that did not end TERMINATED (finished or stopped by the
    scheduler): pending, running, paused or failed (ERROR)."""
    trials = results._experiment_analysis.trials
    return [f"{t.trial_id} ({t.status})" for t in trials if t.status != "TERMINATED"]


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


def build_tuner(trainable, params: Params, name: str, n_points: int, fresh: bool):
    """A new ``Tuner`` for the search, or the interrupted one restored (unless ``fresh``)."""
    from ray import tune

    cfg = params.tune
    space, algorithm, scheduler = search_setup(params, n_points)
    storage = (
        cfg.storage_path if "://" in cfg.storage_path else str(Path(cfg.storage_path).resolve())
    )
    path = f"{storage}/{name}"
    if tune.Tuner.can_restore(path) and not fresh:
        if finished(path):  # read back as it ended: no trial of it runs again
            print(f"tune: reading the finished search at {path}", flush=True)
            return tune.Tuner.restore(
                path, trainable, resume_unfinished=False, resume_errored=False, param_space=space
            ), path
        if cfg.scheduler != "halving":
            print(f"tune: resuming the interrupted search at {path}", flush=True)
            return tune.Tuner.restore(
                path, trainable, resume_unfinished=True, restart_errored=True, param_space=space
            ), path
        # a restored halving search gets a new scheduler that knows neither its rungs nor its
        # paused trials, which would then wait forever
        print(
            f"tune: the interrupted search at {path} used synchronous halving, whose rungs "
            "cannot be restored; starting it over",
            flush=True,
        )
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=cfg.metric,
            mode=cfg.mode,
            search_alg=algorithm,
            scheduler=scheduler,
            num_samples=cfg.num_samples,
            # synchronous halving pauses trials at a rung until every trial is there; a paused
            # trial still counts against max_concurrent_trials, so the later trials would never
            # start: there, resources (tune.cpus_per_trial) alone bound the concurrency
            max_concurrent_trials=None if cfg.scheduler == "halving" else cfg.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1,
        ),
    ), path


FINISHED = "mer-search-finished"  # written into a search's folder once it has ended


def _filesystem(path: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(path if "://" in path else Path(path).resolve().as_uri())


def finished(path: str) -> bool:
    """Whether the search at ``path`` ran to its end (:func:`mark_finished`)."""
    from pyarrow import fs

    filesystem, folder = _filesystem(path)
    return filesystem.get_file_info(f"{folder}/{FINISHED}").type == fs.FileType.File


def mark_finished(path: str) -> None:
    """Record that the search at ``path`` ended: a later `mer tune` reads it back as it is."""
    filesystem, folder = _filesystem(path)
    with filesystem.open_output_stream(f"{folder}/{FINISHED}") as out:
        out.write(b"finished\n")


def check_complete(results, interruption: Interruption, expected: int) -> None:
    """Raise unless the search ran to its end: not interrupted, every expected trial present
    and finished or stopped by the scheduler."""
    from components.errors import Interrupted, MerError

    missing = incomplete_trials(results)
    failed = [m for m in missing if m.endswith("(ERROR)")]
    if interruption.signal or len(missing) > len(failed) or len(results) < expected:
        raise Interrupted(
            f"the search was interrupted ({interruption.signal or 'trials unfinished'}) with "
            f"{len(results)} of {expected} trials started; no best configuration was written. "
            "Run `mer tune` again to resume it (`mer tune --fresh` starts over)"
        )
    if not failed:
        return
    raise MerError(
        f"{len(failed)} trial(s) failed after their retries ({', '.join(failed[:4])}); see the "
        "trial errors above. `mer tune` resumes and retries them"
    )


def point_model(point: dict):
    from components.config import model_from_dict

    return model_from_dict(point["model"], "tune point")
