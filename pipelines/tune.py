"""DVC stage ``tune``: Ray Tune search over attention type × heads × placement (× training
values) with ASHA; writes ``reports/tune/best_config.json`` (model and training values) for
``evaluate`` and ``register`` — only when every trial finished or was stopped by the scheduler.

The objective is validation UF1 (``tune.objective``: one subject split, or pooled over k
grouped folds of the search subjects); a ``holdout_fraction`` of subjects is never seen by the
search (``evaluate`` reports them apart). Scale-out is across trials: attach to a Ray cluster
with ``RAY_ADDRESS`` (or ``tune.address``). An interrupted search exits non-zero and resumes
on the next ``mer tune``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from components.config import load_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh", action="store_true", help="start over instead of resuming an interrupted search"
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    import mlflow
    from ray import tune

    from components.artifacts import Records, TuneResult
    from components.outputs import Protected, check_output_folder, staged_files, write_json
    from components.tracking import (
        configure_tracking,
        flatten,
        provenance_tags,
        resolved_uri,
        tracked_run,
    )
    from components.tuning import search
    from components.tuning.cluster import describe_cluster, ray_session
    from components.tuning.report import plot_search, trial_table
    from components.tuning.space import trials
    from components.tuning.trainable import TrialContext, train_trial

    cfg, records = params.tune, Records.of(params)
    subjects = records.read().subjects
    holdout, search_subjects = search.subject_split(subjects, params)
    folds = search.objective_folds(search_subjects, params)
    points = trials(cfg.space, params.model.dropout)
    folder = check_output_folder(
        TuneResult.folder(params), "tune.reports_dir", Protected.of(params)
    )
    print(
        f"tune: {len(points)} distinct points; search {cfg.search} × {cfg.num_samples}, scheduler {cfg.scheduler}; objective {cfg.objective} over {len(folds)} fold(s) of {len(search_subjects)} subjects; {len(holdout)} held out",
        flush=True,
    )
    configure_tracking(params.tracking)
    with (
        ray_session(cfg.address) as ray,
        tracked_run(run_name="tune", tags=provenance_tags(records.folder, "tune")) as parent,
    ):
        print(f"tune: {describe_cluster(ray)}", flush=True)
        mlflow.log_params(flatten({"tune": cfg, "train": params.train, "seed": params.seed}))
        context = TrialContext(
            points=points,
            preprocess=replace(params.preprocess, records_dir=str(records.folder.resolve())),
            data_version=records.data_version(),
            train=params.train,
            tracking=replace(params.tracking, uri=resolved_uri(params.tracking)),
            folds=tuple(folds),
            seed=params.seed,
            cpus=cfg.cpus_per_trial,
            devices=cfg.devices_per_trial,
            parent_run_id=parent.info.run_id,
            crash_once_at_epoch=getattr(args, "crash_once_at_epoch", None),
        )
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, context=context),
            {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial},
        )
        name = search.experiment_name(points, params, context.data_version)
        tuner, path = search.build_tuner(trainable, params, name, len(points), args.fresh)
        with search.interruptible() as interruption:
            results = tuner.fit()
        search.check_complete(results, interruption, search.expected_trials(params, len(points)))
        table = trial_table(results, points, cfg.metric)
        best = table.iloc[0]
        point = points[int(best["index"])]
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
            holdout_subjects=holdout,
            search_subjects=search_subjects,
        )
        with staged_files(
            folder, "tune.reports_dir", Protected.of(params), (*TuneResult.FILES, "metrics.json")
        ) as staging:
            result.write(staging)
            table.to_parquet(staging / "trials.parquet", index=False)
            plot_search(table, results, points, staging / "search.png", cfg.metric)
            write_json(
                staging / "metrics.json", {"best_val_uf1": result.score, "trials": len(table)}
            )
        mlflow.log_metrics({"best_val_uf1": result.score, "trials": len(table)})
        mlflow.log_artifact(str(Path(folder) / "best_config.json"))
        mlflow.log_artifact(str(Path(folder) / "search.png"))
    print(
        table[["label", "status", "epochs_run", "best_val_uf1", "best_val_loss"]].to_string(
            index=False
        )
    )
    print(
        f"tune: best {result.label} with validation UF1 {result.score:.4f}; written to {folder / 'best_config.json'}"
    )
    return 0
