"""What ``evaluate`` and ``compare`` share: validated records, the protocol's folds, the
attention-map examples, and where units run (with a progress line per finished unit)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.artifacts import Records
from components.cluster import cluster_address
from components.config import Params
from components.errors import ConfigError
from components.evaluation.examples import pick_examples
from components.evaluation.protocol import Execution
from components.evaluation.splits import Fold, protocol_folds
from components.evaluation.units import UnitContext, UnitProgress, UnitResult
from components.outputs import Protected, check_output_folder, check_writable
from components.progress import Bar, say
from components.provenance import code_version

QUICK_LOOK = "quick-look"  # reports of `mer evaluate --folds N`, beside the full report


def seed_list(first: int, count: int) -> list[int]:
    """``count`` training seeds: ``first``, ``first + 1``, ..."""
    return [first + k for k in range(count)]


class UnitsProgress(UnitProgress):
    """A fold-epoch bar with an ETA (on a terminal) and one line per finished unit: done/total,
    what it was, where, and an ETA (each line is in the log too)."""

    def __init__(self, stage: str):
        self.stage = stage
        self.first_done: int | None = None
        self.bar: Bar | None = None

    def start(self, specs) -> None:
        epochs = sum(len(s.seeds) * len(s.folds) * s.train.epochs for s in specs)
        self.bar = Bar(self.stage, epochs, "fold-epoch") if specs else None

    def epochs(self, done: int) -> None:
        if self.bar:
            self.bar.to(done)

    def finished(self, done: int, total: int, result: UnitResult, elapsed: float) -> None:
        if self.first_done is None:
            self.first_done = done - 1
        fresh = done - self.first_done
        left = elapsed / fresh * (total - done) if fresh else 0.0
        if self.bar:  # a fold that stopped early will not train its remaining epochs
            self.bar.drop(sum(result.spec.train.epochs - f.epochs_run for f in result.folds))
        say(
            f"{self.stage}: unit {done}/{total} {result.spec.label}: {len(result.folds)} fold(s) "
            f"in {result.seconds:.0f} s"
            f"{' (stacked)' if result.stacked else f' (one by one: {result.not_stacked_because})'} "
            f"on node {result.node_id[:8]}; {elapsed:.0f} s elapsed, ~{left:.0f} s left"
        )

    def close(self) -> None:
        if self.bar:
            self.bar.close()
            self.bar = None


def units_summary(units: list[UnitResult]) -> dict:
    """How the units trained: their number, whether their folds trained stacked, and if not,
    why (every reason given)."""
    reasons = sorted({u.not_stacked_because for u in units if not u.stacked})
    return {
        "count": len(units),
        "stacked": all(u.stacked for u in units),
        "not_stacked_because": "; ".join(reasons),
    }


@dataclass
class Session:
    params: Params
    records: object  # RecordSet
    folds: list[Fold]
    complete: bool
    examples: dict[str, set[str]]
    execution: Execution

    @classmethod
    def open(
        cls, params: Params, stage: str, *, distributed: bool = True, limit: int | None = None
    ) -> Session:
        """Validate the records (before anything trains), build the folds of
        ``evaluate.protocol`` (the first ``limit`` only, for a quick look)."""
        cfg = params.evaluate
        artifact = Records.of(params)
        records = artifact.read()
        if len(records.subjects) < 3:
            raise ConfigError(
                f"{artifact.folder} holds {len(records.subjects)} subject(s); the protocol needs "
                "at least 3 (test, training and validation subjects)"
            )
        folds = protocol_folds(
            records.subjects, cfg.protocol, cfg.folds, params.train.validation_fraction, params.seed
        )
        complete = limit is None or limit >= len(folds)
        folds = folds if complete else folds[:limit]
        units = check_output_folder(cfg.units_dir, "evaluate.units_dir", Protected.of(params))
        check_writable(units, "evaluate.units_dir")
        uids = pick_examples(records.manifest, cfg.attention_examples, params.seed)
        subject_of = dict(zip(records.manifest.uid, records.manifest.subject_id, strict=True))
        examples: dict[str, set[str]] = {}
        for uid in uids:
            examples.setdefault(subject_of[uid], set()).add(uid)
        p = params.preprocess
        context = UnitContext(
            records_dir=str(Path(p.records_dir).resolve()),
            input_sizes=p.input_sizes(),
            data_version=artifact.data_version(),
            code=code_version(),
            units_dir=str(units),
        )
        execution = Execution(
            context,
            distributed=distributed,
            address=cluster_address(params.tune.address),
            max_failures=cfg.max_failures,
            folds_per_unit=cfg.folds_per_unit,
            seeds_per_unit=cfg.seeds_per_unit,
            progress=UnitsProgress(stage),
            min_units=cfg.min_units,
        )
        return cls(params, records, folds, complete, examples, execution)

    @property
    def seeds(self) -> list[int]:
        return seed_list(self.params.seed, self.params.evaluate.seeds)

    def run(self, candidates: list, train, seeds: list[int] | None = None):
        """The protocol for ``candidates[0]`` (given) or among ``candidates`` (nested)."""
        from components.evaluation.protocol import run_given, run_nested

        cfg, seeds = self.params.evaluate, seeds or self.seeds
        manifest = self.records.manifest
        if cfg.selection == "nested" and len(candidates) > 1:
            return run_nested(
                candidates,
                train,
                seeds,
                self.folds,
                manifest,
                self.execution,
                cfg.inner_folds,
                self.examples,
            )
        return run_given(
            candidates[0], train, seeds, self.folds, manifest, self.execution, self.examples
        )

    def summarise(self, predictions, untuned=()) -> dict:
        from components.evaluation.report import resampling, summarise

        cfg = self.params.evaluate
        draw = resampling(cfg.bootstrap, self.params.seed, cfg.confidence)
        return summarise(predictions, draw, untuned=untuned, dataset_mean=cfg.protocol == "lodo")

    def evaluation(self, chosen, statement: str, result):
        """The evaluation record of a protocol run of ``chosen`` (its model and training
        values), with the subjects the tune stage held out reported apart."""
        from dataclasses import asdict

        from components.artifacts import Evaluation
        from components.training.budget import fold_runs, still_improving

        cfg = self.params.evaluate
        untuned = chosen.tune.holdout_subjects if chosen.tune else []
        return Evaluation(
            protocol=cfg.protocol,
            complete=self.complete,
            selection=cfg.selection,
            selection_statement=statement,
            model=chosen.model.as_dict(),
            train=asdict(chosen.train),
            seeds=self.seeds,
            summary=self.summarise(result.predictions, untuned),
            folds=result.folds,
            units=units_summary(result.units),
            folds_still_improving=still_improving(
                fold_runs(result.folds, chosen.train.epochs), chosen.train.patience
            ),
        )

    @property
    def reports(self) -> Path:
        """Where this run's reports go: ``evaluate.reports_dir``, or its ``quick-look``
        subfolder for a run of only the first folds (``--folds``), so a quick look never
        replaces the full report that ``dvc`` tracks."""
        from components.artifacts import Evaluation

        folder = Evaluation.folder(self.params)
        return folder if self.complete else folder / QUICK_LOOK

    def check_reports(self) -> Path:
        """The checks publishing makes, made before any training; returns the folder."""
        from components.artifacts import Evaluation
        from components.outputs import check_files_folder

        return check_files_folder(
            self.reports,
            "evaluate.reports_dir",
            Protected.of(self.params),
            Evaluation.OUTPUTS,
            owned_in_dirs=("*.png",),
        )

    def publish(self, evaluation, predictions, overlays: list[dict], title: str) -> Path:
        """Write the evaluation's outputs to a staging folder and move them into
        :attr:`reports` together; returns the reports folder."""
        from components.artifacts import Evaluation
        from components.evaluation.report import write_figures, write_tables
        from components.outputs import staged_files

        folder = self.reports
        with staged_files(
            folder,
            "evaluate.reports_dir",
            Protected.of(self.params),
            Evaluation.OUTPUTS,
            owned_in_dirs=("*.png",),
        ) as staging:
            evaluation.write(staging, predictions)
            write_tables(evaluation.summary, staging)
            write_figures(
                evaluation.summary, predictions, overlays, staging, title, evaluation.protocol
            )
        return folder
