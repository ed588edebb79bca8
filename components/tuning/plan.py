"""One search from ``params.yaml``: its subjects and folds, its trials on Ray, its result."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from components.artifacts import Records, TuneResult
from components.config import Params
from components.errors import MerError
from components.evaluation.splits import Fold
from components.outputs import (
    Protected,
    check_files_folder,
    check_output_folder,
    check_writable,
    staged_files,
    write_json,
)
from components.progress import say
from components.tuning import search
from components.tuning.space import describe, trials
from components.tuning.store import RECORD, SearchRecord, SearchStore, TrialRecord, check_record


@dataclass
class SearchPlan:
    """What the tune stage searches: the points, the subjects it may use, the objective's folds."""

    params: Params
    records: Records
    points: list[dict]
    holdout: list[str]
    search_subjects: list[str]
    folds: list[Fold]

    @classmethod
    def of(cls, params: Params) -> SearchPlan:
        records = Records.of(params)
        subjects = records.read().subjects  # validated before any trial starts
        holdout, search_subjects = search.subject_split(subjects, params)
        folds = search.objective_folds(search_subjects, params)
        protected = Protected.of(params)
        files = (*TuneResult.FILES, "metrics.json")
        check_files_folder(TuneResult.folder(params), "tune.reports_dir", protected, files)
        if "://" not in params.tune.storage_path:
            storage = check_output_folder(params.tune.storage_path, "tune.storage_path", protected)
            check_writable(storage, "tune.storage_path")
        return cls(
            params,
            records,
            trials(params.tune.space, params.model.dropout, params.preprocess.input_sizes()),
            holdout,
            search_subjects,
            folds,
        )

    def describe(self) -> str:
        cfg = self.params.tune
        return (
            f"{len(self.points)} distinct points; search {cfg.search} × {cfg.num_samples}, "
            f"scheduler {cfg.scheduler}; objective {cfg.objective} over {len(self.folds)} fold(s) "
            f"of {len(self.search_subjects)} subjects; {len(self.holdout)} held out"
        )

    def storage(self) -> str:
        """Where searches live: ``tune.storage_path`` as an absolute path or a URI."""
        path = self.params.tune.storage_path
        return path if "://" in path else str(Path(path).resolve())

    def store(self, data_version: str | None = None) -> SearchStore:
        """This search's store: its folder is named by its points, training values, data and
        code."""
        version = data_version or self.records.data_version()
        return SearchStore(
            self.storage(), search.experiment_name(self.points, self.params, version)
        )

    def finished(self, store: SearchStore | None = None) -> SearchRecord | None:
        """The record of this search if it already ran to its end (checked by content), else
        None; read without a Ray cluster."""
        store = store or self.store()
        slots = search.trial_slots(self.params, len(self.points))
        record = store.read_record(slots, self.points)
        if record is not None:
            say(f"tune: reading the finished search at {store.path}")
        return record

    def run(
        self, parent_run_id: str, fresh: bool, tags: dict[str, str], crash_once_at_epoch=None
    ) -> tuple[SearchRecord, SearchStore]:
        """The finished search: read back if this search (same points, training values, data
        and code) already ran to its end, else its trials on the connected Ray cluster (an
        interrupted search's trials go on from their stored states). Raises unless the search
        completed."""
        from ray import tune

        from components.tracking import resolved_uri
        from components.tracking.trial_runs import close_trial_runs
        from components.tuning.progress import SearchProgress
        from components.tuning.trainable import train_trial

        params, cfg = self.params, self.params.tune
        data_version = self.records.data_version()
        store = self.store(data_version)
        slots = search.trial_slots(params, len(self.points))
        if not fresh and (record := self.finished(store)) is not None:
            return record, store
        self._prepare(store, fresh, slots)
        uri = resolved_uri(params.tracking)
        context = self._trial_context(
            store, slots, data_version, uri, parent_run_id, tags, crash_once_at_epoch
        )
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, context=context),
            {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial},
        )
        labels = [describe(p) for p in self.points]
        expected = search.expected_trials(params, len(self.points))
        progress = SearchProgress(self.points, slots, labels, expected)
        tuner = search.build_tuner(trainable, params, store, slots, labels, [progress])
        statuses: dict[str, tuple[int, str]] = {}
        errors: list[BaseException] = []
        try:
            with search.interruptible() as interruption:
                results = tuner.fit()
            # a trial that ended on an error a retry cannot cure is failed, with that error
            fatal = store.fatal_messages()
            statuses = {
                key: (index, "ERROR" if key in fatal else status)
                for key, (index, status) in search.trial_statuses(results, slots).items()
            }
            errors = [*(MerError(f"trial {k}: {m}") for k, m in fatal.items()), *results.errors]
        finally:
            progress.close()
            close_trial_runs(uri, parent_run_id, self._outcomes(store, statuses, interruption))
        search.check_complete(statuses, interruption, expected, errors)
        record = self._record(store, statuses)
        check_record(record, slots, self.points, store.where(RECORD))
        store.write_record(record)
        return record, store

    def _trial_context(
        self, store, slots, data_version: str, uri: str, parent_run_id, tags, crash_once_at_epoch
    ):
        """What every trial of this search shares (its points, data, training values, store,
        MLflow parent run and provenance tags)."""
        from components.tuning.trainable import TrialContext

        params, cfg = self.params, self.params.tune
        return TrialContext(
            points=self.points,
            preprocess=replace(params.preprocess, records_dir=str(self.records.folder.resolve())),
            data_version=data_version,
            train=params.train,
            tracking=replace(params.tracking, uri=uri),
            folds=tuple(self.folds),
            seed=params.seed,
            cpus=cfg.cpus_per_trial,
            devices=cfg.devices_per_trial,
            parent_run_id=parent_run_id,
            storage=store.storage,
            search=store.name,
            slots=tuple(slots) if slots is not None else None,
            tags={k: v for k, v in tags.items() if k != "stage"},
            crash_once_at_epoch=crash_once_at_epoch,
        )

    def _outcomes(self, store: SearchStore, statuses, interruption) -> dict[str, str]:
        """How each trial ended, for its MLflow run: Ray's status, except that a search
        interrupted by a signal ended only the trials whose stored state is complete (Ray marks
        the trials it stopped TERMINATED, like finished ones)."""
        if not interruption.signal:
            return {key: status for key, (_, status) in statuses.items()}
        outcomes = {}
        for key, (index, status) in statuses.items():
            state = store.load_trial(key) if status == "TERMINATED" else None
            done = state is not None and state.get("next_epoch", 0) >= self.points[index]["epochs"]
            outcomes[key] = "TERMINATED" if done else ("ERROR" if status == "ERROR" else "KILLED")
        return outcomes

    def _prepare(self, store: SearchStore, fresh: bool, slots) -> None:
        """Resume an interrupted search from its trials' states, or start it over: with
        ``--fresh``, and for searches whose decisions cannot be resumed (synchronous halving's
        rungs, Optuna's sampler)."""
        store.clear_fatal()
        if not store.has_trials():
            return
        reason = (
            "--fresh"
            if fresh
            else "it used synchronous halving, whose rungs cannot be restored"
            if self.params.tune.scheduler == "halving"
            else "its trials were chosen by Optuna, whose sampler cannot be restored"
            if slots is None
            else None
        )
        if reason is None:
            store.check_trials()
            say(
                f"tune: resuming the interrupted search at {store.path}: each trial goes on "
                "from its last epoch"
            )
            return
        say(f"tune: the interrupted search at {store.path}: {reason}; starting it over")
        store.clear_trials()

    def _record(self, store: SearchStore, statuses: dict[str, tuple[int, str]]) -> SearchRecord:
        """The finished search from its trials' stored metrics."""
        trials = []
        for key, (index, status) in sorted(statuses.items()):
            state = store.trial_state(key)
            trials.append(TrialRecord(key, index, status, list(state.history) if state else []))
        cfg = self.params.tune
        return SearchRecord(store.name, cfg.metric, cfg.mode, trials)

    def publish(self, record: SearchRecord, store: SearchStore) -> tuple[TuneResult, object]:
        """The best point as :class:`TuneResult`, the trial table and the figure, written
        together into ``tune.reports_dir``; returns (result, table)."""
        from components.tuning.report import plot_search, trial_table

        cfg = self.params.tune
        table = trial_table(record, self.points, cfg.metric, cfg.mode)
        best = table.iloc[0]
        point = self.points[int(best["index"])]
        result = TuneResult(
            model=search.point_model(point),
            learning_rate=point["learning_rate"],
            batch_size=point["batch_size"],
            epochs=point["epochs"],
            best_epoch=int(best["best_epoch"]),
            metric=cfg.metric,
            score=float(best["best_score"]),
            objective=cfg.objective,
            label=str(best["label"]),
            search={"name": store.name, "storage": cfg.storage_path, "trials": len(table)},
            holdout_subjects=self.holdout,
            search_subjects=self.search_subjects,
        )
        files = (*TuneResult.FILES, "metrics.json")
        folder = TuneResult.folder(self.params)
        with staged_files(folder, "tune.reports_dir", Protected.of(self.params), files) as staging:
            result.write(staging)
            table.to_parquet(staging / "trials.parquet", index=False)
            plot_search(table, record, self.points, staging / "search.png", cfg.metric)
            write_json(
                staging / "metrics.json", {f"best_{cfg.metric}": result.score, "trials": len(table)}
            )
        return result, table

    @property
    def folder(self) -> Path:
        return TuneResult.folder(self.params)
