"""The set-up every training job shares: an ``evaluate`` unit, a ``tune`` trial and
``register``'s final model each configure TensorFlow for their process, read the records once
per process, pick the distribution strategy, turn folds of subjects into row positions, and
train through :mod:`components.training.run`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from components.config import ModelConfig, TrainConfig
from components.training.fold_models import FoldData, stacking
from components.training.run import FoldFit, FoldRun, fold_runs
from components.training.schedule import fold_seed


@dataclass
class TrainingJob:
    """Training of one model configuration on a records folder, seeded by ``seed`` (each
    fold's key too, unless it is given its own: :meth:`fold_data`)."""

    records: object  # components.records.store.RecordSet
    model_cfg: ModelConfig
    train: TrainConfig
    seed: int
    kind: str  # the backbone's input kind: flow | clip
    input_sizes: dict[str, int]
    num_classes: int
    strategy: object  # tf.distribute.Strategy

    @classmethod
    def open(
        cls,
        records_dir: str,
        data_version: str,
        model_cfg: ModelConfig,
        train: TrainConfig,
        seed: int,
        input_sizes: dict[str, int],
        num_classes: int,
        threads: int | None = None,
    ) -> TrainingJob:
        """Configure this process (threads, devices, seeds: before any TensorFlow op), load
        the records (once per process and data version) and pick the strategy."""
        if threads is not None:
            train = replace(train, threads=threads)
        from components.training import runtime

        runtime.configure(train, seed)
        from components.models.registry import BACKBONES
        from components.records.store import cached_records

        records = cached_records(records_dir, data_version)
        kind = BACKBONES[model_cfg.backbone].input_kind
        strategy = runtime.make_strategy(train)
        return cls(records, model_cfg, train, seed, kind, input_sizes, num_classes, strategy)

    def fold_data(
        self,
        name: str,
        train: Sequence[str],
        validation: Sequence[str] = (),
        predict: Sequence[str] = (),
        seed: int | None = None,
    ) -> FoldData:
        """A fold as row positions of the records (subjects → their samples); its key drawn
        from the seed (the job's, or ``seed``: several seeds' copies of a fold can train in
        one stack, each named with its seed) and its name."""
        records = self.records
        return FoldData(
            name if seed is None else f"{name} (seed {seed})",
            records.positions(train),
            records.positions(validation),
            records.positions(predict),
            fold_seed(self.seed if seed is None else seed, name),
        )

    def everyone(self, name: str = "all") -> FoldData:
        """Every sample as one fold's training rows (the final model: no validation)."""
        rows = np.arange(len(self.records.manifest))
        return FoldData(name, rows, rows[:0], rows[:0], fold_seed(self.seed, name))

    @property
    def stacking(self) -> tuple[bool, str]:
        """Whether this job's folds train stacked, and if not, why."""
        return stacking(self.model_cfg, self.train, self.strategy)

    def fit(
        self, folds: Sequence[FoldData], report: Callable[[int], None] | None = None
    ) -> list[FoldFit]:
        """Train ``folds`` to the end; each fold's outcome (best weights restored). After
        every epoch, ``report`` gets the number of folds that trained in it (progress)."""
        fits = []
        for run in self.runs(folds):
            if report is not None:
                run.on_epoch = _fold_epochs(run, report)
            run.fit()
            fits += run.finish()
        return fits

    def runs(
        self,
        folds: Sequence[FoldData],
        *,
        early_stopping: bool = True,
        on_epoch: Callable | None = None,
    ) -> list[FoldRun]:
        """The runs that train ``folds`` (one stack, or one per fold)."""
        return fold_runs(
            self.records.inputs(self.kind),
            self.records.labels,
            folds,
            self.model_cfg,
            self.train,
            strategy=self.strategy,
            early_stopping=early_stopping,
            on_epoch=on_epoch,
            kind=self.kind,
            input_sizes=self.input_sizes,
            num_classes=self.num_classes,
            seed=self.seed,
            datasets=self.records.manifest["dataset"].to_numpy(),
        )


def _fold_epochs(run: FoldRun, report: Callable[[int], None]) -> Callable:
    def on_epoch(epoch: int, *_) -> None:
        report(int((run.selection.epochs_run == epoch + 1).sum()))

    return on_epoch
