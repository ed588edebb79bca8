"""DVC stage ``tune``: Ray Tune search over attention type × heads × placement (× training
values), full grid or successive halving; writes ``reports/tune/best_config.json`` (model and training values) for
``evaluate`` and ``register`` — only when every trial finished or was stopped by the scheduler.

The objective is validation UF1 (``tune.objective``: one subject split, or pooled over k
grouped folds of the search subjects); a ``holdout_fraction`` of subjects is never seen by the
search (``evaluate`` reports them apart). Scale-out is across trials: attach to a Ray cluster
with ``RAY_ADDRESS`` (or ``tune.address``). An interrupted search exits non-zero and resumes
on the next ``mer tune``.
"""

from __future__ import annotations

import argparse
import contextlib

from components.config import load_params
from components.progress import say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh", action="store_true", help="start over instead of resuming an interrupted search"
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    from components.outputs import output_lock
    from components.tuning.plan import SearchPlan

    plan = SearchPlan.of(params)
    with output_lock(plan.folder, "tune.reports_dir"):
        return _tune(args, params, plan)


def _tune(args, params, plan) -> int:
    import mlflow

    from components.cluster import describe_cluster, ray_session
    from components.tracking import configure_tracking, flatten, provenance_tags, tracked_run
    from components.tracking.mlflow_runs import log_records_input
    from components.tuning.report import search_budget_warning

    say(f"tune: {plan.describe()}")
    configure_tracking(params.tracking)
    tags = provenance_tags(plan.records.folder, "tune")
    # a finished search is read back without starting (or attaching to) a Ray cluster
    finished = None if args.fresh else plan.finished()
    session = contextlib.nullcontext() if finished else ray_session(params.tune.address)
    with session as ray, tracked_run(run_name="tune", tags=tags) as parent:
        if ray is not None:
            say(f"tune: {describe_cluster(ray)}")
        mlflow.log_params(
            flatten({"tune": params.tune, "train": params.train, "seed": params.seed})
        )
        log_records_input(plan.records.folder, tags["data_version"], "tune")
        crash = getattr(args, "crash_once_at_epoch", None)  # fault injection (tests)
        if finished:
            record, store = finished, plan.store()
        else:
            record, store = plan.run(parent.info.run_id, args.fresh, tags, crash)
        result, table = plan.publish(record, store)
        mlflow.log_metrics({f"best_{result.metric}": result.score, "trials": len(table)})
        mlflow.log_artifact(str(plan.folder / "best_config.json"))
        mlflow.log_artifact(str(plan.folder / "search.png"))
    best = f"best_{result.metric}"
    columns = ["label", "status", "epochs_run", "best_score"]
    columns += [c for c in ("best_val_uf1", "best_val_loss") if c != best]
    print(table[columns].rename(columns={"best_score": best}).to_string(index=False))
    print(
        f"tune: best {result.label} with validation {result.metric} {result.score:.4f}; "
        f"written to {plan.folder / 'best_config.json'}"
    )
    if warning := search_budget_warning(table, params.train.patience):
        print(f"tune: WARNING: {warning}")
    return 0
