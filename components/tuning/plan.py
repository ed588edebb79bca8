"""One search from ``params.yaml``: its subjects and folds, its trials on Ray, its result."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from components.artifacts import Records, TuneResult
from components.config import Params
from components.evaluation.splits import Fold
from components.outputs import Protected, check_output_folder, staged_files, write_json
from components.tuning import search
from components.tuning.space import trials


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
        check_output_folder(TuneResult.folder(params), "tune.reports_dir", Protected.of(params))
        return cls(
            params,
            records,
            trials(params.tune.space, params.model.dropout),
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

    def run(self, parent_run_id: str, fresh: bool, crash_once_at_epoch: int | None = None):
        """The trials on the connected Ray cluster; raises unless the search completed.
        Returns (results, experiment name, experiment path)."""
        from ray import tune

        from components.tracking import resolved_uri
        from components.tuning.trainable import TrialContext, train_trial

        params, cfg = self.params, self.params.tune
        context = TrialContext(
            points=self.points,
            preprocess=replace(params.preprocess, records_dir=str(self.records.folder.resolve())),
            data_version=self.records.data_version(),
            train=params.train,
            tracking=replace(params.tracking, uri=resolved_uri(params.tracking)),
            folds=tuple(self.folds),
            seed=params.seed,
            cpus=cfg.cpus_per_trial,
            devices=cfg.devices_per_trial,
            parent_run_id=parent_run_id,
            crash_once_at_epoch=crash_once_at_epoch,
        )
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, context=context),
            {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial},
        )
        name = search.experiment_name(self.points, params, context.data_version)
        tuner, path = search.build_tuner(trainable, params, name, len(self.points), fresh)
        with search.interruptible() as interruption:
            results = tuner.fit()
        search.check_complete(
            results, interruption, search.expected_trials(params, len(self.points))
        )
        search.mark_finished(path)
        return results, name, path

    def publish(self, results, name: str, path: str) -> tuple[TuneResult, object]:
        """The best point as :class:`TuneResult`, the trial table and the figure, written
        together into ``tune.reports_dir``; returns (result, table)."""
        from components.tuning.report import plot_search, trial_table

        cfg = self.params.tune
        table = trial_table(results, self.points, cfg.metric)
        best = table.iloc[0]
        point = self.points[int(best["index"])]
        result = TuneResult(
            model=search.point_model(point),
            learning_rate=point["learning_rate"],
            batch_size=point["batch_size"],
            epochs=point["epochs"],
            best_epoch=int(best["best_epoch"]),
            score=float(best["best_val_uf1"]),
            objective=cfg.objective,
            label=str(best["label"]),
            search={"name": name, "path": path, "trials": len(table)},
            holdout_subjects=self.holdout,
            search_subjects=self.search_subjects,
        )
        files = (*TuneResult.FILES, "metrics.json")
        folder = TuneResult.folder(self.params)
        with staged_files(folder, "tune.reports_dir", Protected.of(self.params), files) as staging:
            result.write(staging)
            table.to_parquet(staging / "trials.parquet", index=False)
            plot_search(table, results, self.points, staging / "search.png", cfg.metric)
            write_json(
                staging / "metrics.json", {"best_val_uf1": result.score, "trials": len(table)}
            )
        return result, table

    @property
    def folder(self) -> Path:
        return TuneResult.folder(self.params)
