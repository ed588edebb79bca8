"""DVC stage ``tune``: Ray Tune search over attention type × heads × placement (× training
values) with ASHA; writes ``reports/tune/best_config.json`` for ``evaluate`` and ``register``.

The objective is validation UF1 on a subject-level validation split; a ``holdout_fraction`` of
subjects is never seen by the search (``evaluate`` reports them apart). Scale-out is across
trials: attach to a Ray cluster with ``RAY_ADDRESS`` (or ``tune.address``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from components.config import Params, load_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh", action="store_true", help="start over instead of resuming an interrupted search"
    )


def subject_split(subjects: list[str], params: Params) -> tuple[list[str], list[str], list[str]]:
    """(held out from the search, search training, search validation), by subject, seeded."""
    from components.evaluation.splits import validation_split

    cfg = params.tune
    rest, holdout = validation_split(subjects, cfg.holdout_fraction, params.seed, "tune-holdout")
    train, validation = validation_split(
        list(rest), cfg.validation_fraction, params.seed, "tune-validation"
    )
    if not validation:
        raise ValueError(f"tune needs at least 2 subjects outside the holdout; have {len(rest)}")
    return list(holdout), list(train), list(validation)


def experiment_name(points: list, params: Params, subjects: tuple) -> str:
    """Stable per search definition, so an interrupted run of the same search is resumed."""
    key = json.dumps(
        [points, asdict(params.train), asdict(params.tune), subjects, params.seed],
        sort_keys=True,
        default=str,
    )
    return "tune-" + hashlib.sha1(key.encode()).hexdigest()[:10]


def search_setup(params: Params, n_points: int):
    """(param_space, search_alg, scheduler) from ``tune``."""
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
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_epochs,
            grace_period=cfg.grace_period,
            reduction_factor=cfg.reduction_factor,
        )
        if cfg.scheduler == "asha"
        else FIFOScheduler()
    )
    return space, algorithm, scheduler


def trial_table(results, points: list, metric: str) -> pd.DataFrame:  # noqa: F821
    """One row per trial: its point, status, best epoch (validation UF1, then loss), timing."""
    import pandas as pd

    from components.tuning.space import describe

    rows = []
    for result in results:
        index = result.config["index"]
        point = points[index]
        history = (
            result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        )
        best = None
        if len(history) and metric in history:
            ranked = history.assign(_neg_loss=-history.get("val_loss", 0)).sort_values(
                [metric, "_neg_loss"], ascending=False
            )
            best = ranked.iloc[0]
        attention = point["model"]["attention"]
        rows.append(
            {
                "trial_id": result.metrics.get("trial_id", Path(result.path).name)
                if result.metrics
                else Path(result.path).name,
                "index": index,
                "label": describe(point),
                "backbone": point["model"]["backbone"],
                "attention": attention["type"],
                "heads": attention["heads"]
                if attention["type"] in ("mhsa", "temporal_mhsa")
                else None,
                "placement": "+".join(point["model"]["placement"]) or "-",
                "learning_rate": point["learning_rate"],
                "batch_size": point["batch_size"],
                "status": "ERROR" if result.error else "TERMINATED",
                "epochs_run": len(history),
                "best_epoch": int(best["epoch"]) if best is not None else -1,
                "best_val_uf1": float(best[metric]) if best is not None else float("nan"),
                "best_val_loss": float(best["val_loss"]) if best is not None else float("nan"),
                "seconds": float(history["time_total_s"].max())
                if "time_total_s" in history
                else float("nan"),
                "node_id": str(history["node_id"].iloc[-1])
                if "node_id" in history and len(history)
                else "",
                "replicas": int(history["replicas"].iloc[-1])
                if "replicas" in history and len(history)
                else 0,
                "restored_from_epoch": int(history["restored_from_epoch"].max())
                if "restored_from_epoch" in history and len(history)
                else -1,
            }
        )
    return (
        pd.DataFrame(rows)
        .sort_values(["best_val_uf1", "best_val_loss"], ascending=[False, True])
        .reset_index(drop=True)
    )


def plot_search(table, results, points: list, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from components.tuning.space import describe

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(3.0, 0.32 * len(table) + 1.2)), dpi=110
    )
    ordered = table.sort_values("best_val_uf1")
    colours = {kind: f"C{k}" for k, kind in enumerate(sorted(table.attention.unique()))}
    left.barh(ordered.label, ordered.best_val_uf1, color=[colours[a] for a in ordered.attention])
    left.set_xlim(0, 1)
    left.set_xlabel(f"best {metric} (validation subjects)")
    left.tick_params(axis="y", labelsize=7)
    for result in results:
        history = result.metrics_dataframe
        if history is not None and metric in history:
            point = points[result.config["index"]]
            right.plot(
                history["epoch"] + 1,
                history[metric],
                color=colours[point["model"]["attention"]["type"]],
                alpha=0.8,
                label=describe(point),
            )
    right.set_xlabel("epoch")
    right.set_ylabel(metric)
    right.set_ylim(0, 1.02)
    right.set_title("tuning curves (ASHA stops the weak early)", fontsize=9)
    handles = [plt.Line2D([], [], color=c, label=k) for k, c in colours.items()]
    right.legend(handles=handles, fontsize=7, title="attention")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    cfg = params.tune
    import mlflow
    import ray
    from ray import tune

    from components.evaluation.protocol import ExperimentData
    from components.tracking import configure_tracking, flatten, provenance_tags, resolved_uri
    from components.tuning.space import describe, trials
    from components.tuning.trainable import TrialContext, train_trial

    # keep the DVC stage log readable: Ray repeats this hint at every slow experiment sync
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = time.perf_counter()
    data = ExperimentData.load(params.preprocess)
    holdout, train_subjects, validation_subjects = subject_split(data.subjects, params)
    points = trials(cfg.space, params.model.dropout)
    reports = Path(cfg.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    print(
        f"tune: {len(points)} distinct points; search {cfg.search} × {cfg.num_samples}, scheduler {cfg.scheduler}; "
        f"subjects: {len(train_subjects)} train, {len(validation_subjects)} validation, {len(holdout)} held out",
        flush=True,
    )

    address = os.environ.get("RAY_ADDRESS") or cfg.address
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(
        f"tune: Ray cluster with {ray.cluster_resources().get('CPU', 0):g} CPUs, "
        f"{ray.cluster_resources().get('GPU', 0):g} GPUs on {len(ray.nodes())} node(s)",
        flush=True,
    )

    configure_tracking(params.tracking)
    tags = provenance_tags(params.preprocess.records_dir, "tune")
    parent = mlflow.start_run(run_name="tune", tags=tags)
    mlflow.log_params(flatten({"tune": cfg, "train": params.train, "seed": params.seed}))
    context = TrialContext(
        points=points,
        # trials run in their own folders (and on other nodes): absolute, shared paths only
        preprocess=replace(
            params.preprocess, records_dir=str(Path(params.preprocess.records_dir).resolve())
        ),
        train=params.train,
        tracking=replace(params.tracking, uri=resolved_uri(params.tracking)),
        train_subjects=tuple(train_subjects),
        validation_subjects=tuple(validation_subjects),
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
    space, algorithm, scheduler = search_setup(params, len(points))
    storage = (
        str(Path(cfg.storage_path).resolve()) if "://" not in cfg.storage_path else cfg.storage_path
    )
    name = experiment_name(points, params, tuple(data.subjects))
    path = f"{storage}/{name}"
    if tune.Tuner.can_restore(path) and not args.fresh:
        print(f"tune: resuming the interrupted search at {path}", flush=True)
        tuner = tune.Tuner.restore(
            path, trainable, resume_unfinished=True, restart_errored=True, param_space=space
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=cfg.metric,
                mode=cfg.mode,
                search_alg=algorithm,
                scheduler=scheduler,
                num_samples=cfg.num_samples,
                max_concurrent_trials=cfg.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=1,
            ),
        )
    results = tuner.fit()
    table = trial_table(results, points, cfg.metric)
    table.to_parquet(reports / "trials.parquet", index=False)
    plot_search(table, results, points, reports / "search.png", cfg.metric)
    finished = table[table.status == "TERMINATED"]
    if finished.empty:
        print("tune: FAILED: no trial finished; see the errors above", flush=True)
        mlflow.end_run(status="FAILED")
        return 1
    best = finished.iloc[0]
    point = points[int(best["index"])]
    payload = {
        "model": point["model"],
        "train": {k: point[k] for k in ("learning_rate", "batch_size", "epochs")},
        "best_epoch": int(best["best_epoch"]),
        "val_uf1": float(best["best_val_uf1"]),
        "label": best["label"],
        "search": {
            "name": name,
            "path": path,
            "trials": len(table),
            "errored": int((table.status == "ERROR").sum()),
        },
        "holdout_subjects": holdout,
        "search_train_subjects": train_subjects,
        "search_validation_subjects": validation_subjects,
    }
    (reports / "best_config.json").write_text(json.dumps(payload, indent=2) + "\n")
    (reports / "metrics.json").write_text(
        json.dumps(
            {
                "best_val_uf1": payload["val_uf1"],
                "trials": len(table),
                "errored_trials": payload["search"]["errored"],
            },
            indent=2,
        )
        + "\n"
    )
    mlflow.log_metrics({"best_val_uf1": payload["val_uf1"], "trials": len(table)})
    mlflow.log_artifact(str(reports / "best_config.json"))
    mlflow.log_artifact(str(reports / "search.png"))
    mlflow.end_run()
    ray.shutdown()
    print(
        table[["label", "status", "epochs_run", "best_val_uf1", "best_val_loss"]].to_string(
            index=False
        )
    )
    print(
        f"tune: best {describe(point)} with validation UF1 {payload['val_uf1']:.4f} "
        f"({time.perf_counter() - started:.0f} s); written to {reports / 'best_config.json'}"
    )
    return 0
