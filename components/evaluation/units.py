"""Units of work: (variant, seeds, folds), trained anywhere, stored as soon as they finish.

A unit trains one model configuration for a block of folds with one or several seeds (every
seed × fold stacked in one model when the backbone allows it, see
:mod:`components.training.run`). Its result — every fold's
chosen epoch, validation history, test predictions, timings and the attention-map examples of
its test subjects — is written to ``evaluate.units_dir`` (JSON and arrays, never a pickle) under a key that hashes everything it
depends on (variant, training values, seeds, folds, data version, code version). A re-run finds
the finished units and trains only the rest, so an interrupted evaluation resumes where it
stopped. Units run on Ray (a local Ray over every core by default; ``RAY_ADDRESS`` or
``tune.address`` attaches to a cluster), each retried up to ``max_failures`` times if its
worker dies, or in this process one after another (also a single unit left with no cluster to
attach to); both give the same results, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from components import datafiles
from components.config import ModelConfig, TrainConfig
from components.datasets.labels import NUM_CLASSES
from components.errors import ArtifactError, ConfigError, MerError, raise_if_signalled
from components.evaluation.splits import Fold
from components.parsing import Range, parse


@dataclass(frozen=True)
class UnitSpec:
    """One unit: ``variant`` trained with ``train`` on ``folds``, once per seed of ``seeds``;
    ``examples`` are uids (among its test subjects) whose attention maps its first seed
    draws."""

    variant: ModelConfig
    train: TrainConfig
    seeds: tuple[int, ...]
    folds: tuple[Fold, ...]
    examples: tuple[str, ...] = ()
    phase: Literal["outer", "inner"] = "outer"  # the protocol, or nested selection

    def key(self, data_version: str, code: str) -> str:
        payload = json.dumps(
            [
                self.variant.as_dict(),
                asdict(self.train),
                list(self.seeds),
                [asdict(f) for f in self.folds],
                list(self.examples),
                self.phase,
                data_version,
                code,
            ],
            sort_keys=True,
            default=list,
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        names = [f.name for f in self.folds]
        span = names[0] if len(names) == 1 else f"{len(names)} folds ({', '.join(names[:2])}, …)"
        seeds = ", ".join(map(str, self.seeds))
        return f"{self.variant.label} seed{'s' if len(self.seeds) > 1 else ''} {seeds} {span}"


@dataclass
class FoldResult:
    """One fold of a finished unit, trained with one seed."""

    fold: Fold
    seed: int
    best_epoch: Annotated[int, Range(ge=-1)]
    epochs_run: Annotated[int, Range(ge=0)]
    history: list[dict[str, Any]]  # per epoch: epoch, val_uf1, val_uar, val_loss
    predictions: list[dict[str, Any]]  # uid, true, predicted, p_0..p_{K-1}
    train_samples: Annotated[int, Range(ge=0)]
    validation_samples: Annotated[int, Range(ge=0)]


@dataclass
class UnitResult:
    """A finished unit, as stored."""

    key: str
    spec: UnitSpec
    folds: list[FoldResult]
    seconds: Annotated[float, Range(ge=0)]
    node_id: str
    pid: int
    stacked: bool
    overlays: list[dict[str, Any]] = field(default_factory=list)
    not_stacked_because: str = ""  # why the folds trained one by one ("" when stacked)
    started_at: float = 0.0  # wall-clock start and end (seconds since the epoch)
    ended_at: float = 0.0


@dataclass(frozen=True)
class UnitContext:
    """What every unit shares (absolute paths: units may run in other folders or nodes)."""

    records_dir: str
    input_sizes: dict[str, int]
    data_version: str
    code: str
    units_dir: str
    threads: int = 1
    num_classes: int = NUM_CLASSES


class UnitStore:
    """Finished units under ``folder``: one data file (:mod:`components.datafiles`: JSON and
    arrays, never a pickle) per key, written atomically. What is read back is parsed through
    the typed schema and checked against the unit it should be; anything else is reported and
    the unit trained again (a shared ``units_dir`` cannot make ``mer evaluate`` run code)."""

    SUFFIX = ".npz"

    def __init__(self, folder: str | Path, num_classes: int = NUM_CLASSES):
        self.folder = Path(folder)
        self.num_classes = num_classes

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{self.SUFFIX}"

    def load(self, spec: UnitSpec, key: str) -> UnitResult | None:
        """The stored result of ``spec`` (whose key is ``key``), or None when there is none or
        the stored one is not valid (said on stdout: the unit is then trained again)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return self.read(path, spec, key)
        except MerError as exc:
            print(f"units: {exc}; training the unit again", flush=True)
            return None

    def read(self, path: Path, spec: UnitSpec, key: str) -> UnitResult:
        """Parse and check a stored unit; :class:`~components.errors.ArtifactError` if it is
        damaged, crafted, or another unit's."""
        try:
            result = parse(UnitResult, datafiles.load(path), str(path))
        except ConfigError as exc:
            raise ArtifactError(str(exc)) from None
        if result.key != key or result.spec != spec:
            raise ArtifactError(f"{path} holds another unit than {spec.label}")
        members = [(seed, fold) for seed in spec.seeds for fold in spec.folds]
        if [(f.seed, f.fold) for f in result.folds] != members:
            raise ArtifactError(f"{path}: its folds are not the seeds × folds of {spec.label}")
        expected = {"uid", "true", "predicted", *(f"p_{k}" for k in range(self.num_classes))}
        for fold in result.folds:
            for row in fold.predictions:
                if set(row) != expected or not _valid_prediction(row, self.num_classes):
                    raise ArtifactError(f"{path}: fold {fold.fold.name}: bad prediction {row}")
        return result

    def save(self, result: UnitResult) -> None:
        datafiles.save(self.path(result.key), result)

    def stored(self) -> list[UnitResult]:
        """Every stored unit, parsed (in file-name order), e.g. for benchmarks and audits."""
        return [
            parse(UnitResult, datafiles.load(p), str(p))
            for p in sorted(self.folder.glob(f"*{self.SUFFIX}"))
        ]


def _valid_prediction(row: dict[str, Any], num_classes: int) -> bool:
    numbers = [row["true"], row["predicted"], *(row[f"p_{k}"] for k in range(num_classes))]
    if not isinstance(row["uid"], str) or any(
        isinstance(n, bool) or not isinstance(n, int | float) for n in numbers
    ):
        return False
    classes_ok = all(isinstance(c, int) and 0 <= c < num_classes for c in numbers[:2])
    return classes_ok and all(math.isfinite(p) and 0 <= p <= 1 for p in numbers[2:])


def run_unit(
    spec: UnitSpec,
    context: UnitContext,
    node_id: str = "local",
    report: Callable[[int], None] | None = None,
) -> UnitResult:
    """Train ``spec`` (in this process), store its result and return it; ``report`` gets the
    folds trained in each epoch (progress)."""
    from components.training.job import TrainingJob

    started, started_at = time.perf_counter(), time.time()
    job = TrainingJob.open(
        context.records_dir,
        context.data_version,
        spec.variant,
        spec.train,
        spec.seeds[0],
        context.input_sizes,
        context.num_classes,
        threads=context.threads,
    )
    records = job.records
    members = [(seed, fold) for seed in spec.seeds for fold in spec.folds]
    data = [job.fold_data(f.name, f.train, f.validation, f.test, seed) for seed, f in members]
    fits = job.fit(data, report)
    results, overlays = [], []
    wanted = set(spec.examples)
    for (seed, fold), member, fit in zip(members, data, fits, strict=True):
        rows = records.manifest.iloc[member.predict]
        results.append(fold_result(fold, seed, member, fit, rows))
        mine = sorted(wanted & set(rows.uid)) if seed == spec.seeds[0] else []
        if mine:
            overlays += _overlays(records, fit.export(), spec.variant, mine, job.kind)
    stacked, reason = job.stacking
    result = UnitResult(
        key=spec.key(context.data_version, context.code),
        spec=spec,
        folds=results,
        seconds=time.perf_counter() - started,
        node_id=node_id,
        pid=os.getpid(),
        stacked=stacked,
        overlays=overlays,
        not_stacked_because=reason,
        started_at=started_at,
        ended_at=time.time(),
    )
    UnitStore(context.units_dir, context.num_classes).save(result)
    return result


def fold_result(fold: Fold, seed: int, member, fit, rows) -> FoldResult:
    """What a unit stores of one (seed, fold): its training's chosen epoch and history, and
    its test predictions (``rows``: the test samples' manifest rows)."""
    predictions = [
        {
            "uid": uid,
            "true": int(label),
            "predicted": int(p.argmax()),
            **{f"p_{k}": float(v) for k, v in enumerate(p)},
        }
        for uid, label, p in zip(rows.uid, rows.label, fit.probabilities, strict=True)
    ]
    return FoldResult(
        fold, seed, fit.best_epoch, fit.epochs_run, fit.history, predictions,
        len(member.train), len(member.validation),
    )  # fmt: skip


def _overlays(records, model, variant: ModelConfig, uids: list[str], kind: str) -> list[dict]:
    """Attention maps of ``uids`` drawn by the fold model that had them as test subjects."""
    from components.evaluation.examples import overlays_for

    return overlays_for(records, uids, model, kind)


def _ray_unit(spec: UnitSpec, context: UnitContext, tally, index: int) -> UnitResult | MerError:
    """A unit on a Ray worker; a :class:`MerError` (a setting or a platform limit) is returned,
    not raised, so Ray does not retry what would fail the same way: the driver raises it."""
    import ray

    reports: list = [tally.begin.remote(index)]  # a retry counts its own epochs only
    try:
        result = run_unit(
            spec,
            context,
            ray.get_runtime_context().get_node_id(),
            lambda folds: reports.append(tally.add.remote(index, folds)),
        )
    except MerError as exc:
        return exc
    ray.get(reports)  # counted before the result is: the driver's count is exact at the end
    return result


class UnitProgress:
    """What :func:`run_units` tells about its work (the default tells nothing): the units it
    will train, fold-epochs as they train, each unit as it finishes."""

    def start(self, specs: Sequence[UnitSpec]) -> None:
        """``specs`` are about to train (the stored units are not among them)."""

    def epochs(self, done: int) -> None:
        """``done`` fold-epochs trained so far by this run."""

    def finished(self, done: int, total: int, result: UnitResult, elapsed: float) -> None:
        """Unit ``done`` of ``total`` finished (trained or read back) ``elapsed`` s in."""

    def close(self) -> None:
        """The run ended (finished, failed or interrupted)."""


class _EpochTally:
    """A Ray actor adding up the fold-epochs the workers report, per unit: an attempt that
    begins again (Ray retrying a unit whose worker died) starts its unit's count over."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def begin(self, index: int) -> None:
        self.counts[index] = 0

    def add(self, index: int, folds: int) -> None:
        self.counts[index] = self.counts.get(index, 0) + folds

    def total(self) -> int:
        return sum(self.counts.values())


def run_units(
    specs: Sequence[UnitSpec],
    context: UnitContext,
    *,
    distributed: bool,
    address: str | None,
    max_failures: int,
    progress: UnitProgress | None = None,
    costs: Sequence[float] | None = None,
) -> list[UnitResult]:
    """Every unit's result, in ``specs`` order: stored ones are read back, the rest trained
    (on Ray when :func:`runs_on_ray`, else here), each stored as soon as it finishes. Units
    start longest expected first (:class:`~components.evaluation.queue.UnitQueue`: ``costs``, each
    unit's expected cost, scaled by its model's measured time), so no long unit is left for
    the end while the other workers idle."""
    from components.evaluation.queue import UnitQueue

    store = UnitStore(context.units_dir, context.num_classes)
    keys = [s.key(context.data_version, context.code) for s in specs]
    results: dict[int, UnitResult] = {}
    for index, key in enumerate(keys):
        if (found := store.load(specs[index], key)) is not None:
            results[index] = found
    pending = [i for i in range(len(specs)) if i not in results]
    costs = [1.0] * len(specs) if costs is None else costs
    pending.sort(key=lambda i: -costs[i])  # the queue's tie order: costliest first, stable
    queue = UnitQueue(pending, costs, [(s.variant, s.train, s.phase) for s in specs])
    progress = progress or UnitProgress()
    started = time.perf_counter()
    done = len(results)

    def finished(index: int, result: UnitResult) -> None:
        nonlocal done
        results[index] = result
        queue.finished(index, result.seconds)
        done += 1
        progress.finished(done, len(specs), result, time.perf_counter() - started)

    progress.start([specs[i] for i in pending])
    try:
        if runs_on_ray(len(pending), distributed, address):
            _run_on_ray(specs, queue, context, address, max_failures, finished, progress)
        else:
            _run_here(specs, queue, context, max_failures, finished, progress)
    finally:
        progress.close()
    return [results[i] for i in range(len(specs))]


def runs_on_ray(pending: int, distributed: bool, address: str | None) -> bool:
    """Whether ``pending`` units go to Ray: with a cluster to attach to, always; on a local
    Ray only when there are several to spread (a single unit there would only add Ray's start
    and a worker's TensorFlow import to what it trains here, with the same result)."""
    return distributed and pending > 0 and (pending > 1 or address is not None)


def _run_here(specs, queue, context, max_failures, finished, progress: UnitProgress) -> None:
    trained, attempt_epochs = 0, 0  # finished units' fold-epochs, the current attempt's

    def report(folds: int) -> None:
        nonlocal attempt_epochs
        attempt_epochs += folds
        progress.epochs(trained + attempt_epochs)
        raise_if_signalled()

    while queue:
        index = queue.pop()
        for attempt in range(max_failures + 1):
            attempt_epochs = 0  # a failed attempt's epochs are trained again, not added
            try:
                result = run_unit(specs[index], context, report=report)
                break
            except MerError:
                raise  # a setting or a platform limit: a retry would fail the same way
            except Exception as exc:
                raise_if_signalled()  # SIGTERM raised inside TensorFlow arrives wrapped
                if attempt == max_failures:
                    raise
                print(f"units: #{index} failed ({type(exc).__name__}: {exc}); training it again")
        trained += attempt_epochs
        finished(index, result)
        raise_if_signalled()  # a signal whose exception a library swallowed still stops the run


def _run_on_ray(specs, queue, context, address, max_failures, finished, progress) -> None:
    """As many units in flight as the cluster has CPUs (one each), the next taken from
    ``queue`` as one finishes: the order follows what the finished units measured."""
    from components.cluster import ray_session

    with ray_session(address) as ray:
        tally = ray.remote(num_cpus=0)(_EpochTally).remote()
        remote = ray.remote(num_cpus=1, max_retries=max_failures, retry_exceptions=True)(_ray_unit)
        futures: dict = {}
        while futures or queue:
            slots = max(1, int(ray.cluster_resources().get("CPU", 1)))  # nodes may join
            while queue and len(futures) < slots:
                index = queue.pop()
                futures[remote.remote(specs[index], context, tally, index)] = index
            ready, _ = ray.wait(list(futures), num_returns=1, timeout=1.0)
            progress.epochs(ray.get(tally.total.remote()))
            raise_if_signalled()
            for future in ready:
                result = ray.get(future)
                if isinstance(result, MerError):
                    raise result
                finished(futures.pop(future), result)
