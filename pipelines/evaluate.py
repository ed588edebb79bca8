"""DVC stage ``evaluate``: the MEGC protocol (LOSO, grouped k-fold or leave-one-dataset-out)
for the chosen configuration, as (variant, seed, folds) units on Ray; pooled UF1/UAR with
subject-bootstrap CIs (composite, per dataset), predictions, figures, MLflow runs."""

from __future__ import annotations

import argparse

from components.config import load_params
from components.progress import say
from pipelines.arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--folds",
        type=positive_int,
        help="run only the first N folds (quick look; not a full report)",
    )
    parser.add_argument(
        "--local", action="store_true", help="train the units in this process, not on Ray"
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    from components.artifacts import Chosen
    from components.evaluation.session import Session
    from components.outputs import output_lock

    chosen = Chosen.of(params)
    session = Session.open(params, "evaluate", distributed=not args.local, limit=args.folds)
    with output_lock(session.check_reports(), "evaluate.reports_dir"):
        return _evaluate(params, session, chosen)


def _evaluate(params, session, chosen) -> int:
    import mlflow

    from components.artifacts import Evaluation
    from components.evaluation.report import print_summary, selection_statement
    from components.tracking import configure_tracking, flatten, provenance_tags, tracked_run
    from components.tracking.evaluation_runs import log_folds, log_summary
    from components.tracking.mlflow_runs import log_records_input, ui_link
    from components.training.budget import folds_budget_warning

    cfg = params.evaluate
    candidates = [chosen.model]
    if cfg.selection == "nested":
        candidates += [c for c in cfg.candidates if c != chosen.model]
    statement = selection_statement(
        cfg.selection, len(candidates), cfg.inner_folds, bool(chosen.tune)
    )
    label = chosen.model.label
    say(
        f"evaluate: {cfg.protocol} over {len(session.records.subjects)} subjects, "
        f"{len(session.folds)} folds × {cfg.seeds} seed(s); {label} from {chosen.describe(params)}; "
        f"lr {chosen.train.learning_rate:g}, batch {chosen.train.batch_size}, "
        f"≤{chosen.train.epochs} epochs\nevaluate: selection: {statement}",
    )
    configure_tracking(params.tracking)
    tags = provenance_tags(params.preprocess.records_dir, "evaluate")
    with tracked_run(run_name=f"evaluate-{cfg.protocol}", tags=tags) as parent:
        logged = {"model": chosen.model.as_dict(), "train": chosen.train, "evaluate": cfg}
        mlflow.log_params(flatten({**logged, "seed": params.seed}))
        mlflow.set_tag("selection", statement)
        log_records_input(params.preprocess.records_dir, tags["data_version"], "evaluate")
        result = session.run(candidates, chosen.train)
        evaluation = session.evaluation(chosen, statement, result)
        overlays = [o for unit in result.units for o in unit.overlays]
        folder = session.publish(evaluation, result.predictions, overlays, label)
        log_folds(parent.info.run_id, result.units, tags)
        log_summary(evaluation.summary, folder, Evaluation.OUTPUTS)
    print_summary("evaluate", evaluation.summary, session.complete, len(session.folds))
    if not evaluation.units["stacked"]:
        print(
            "evaluate: WARNING: the folds trained one by one, not stacked "
            f"({evaluation.units['not_stacked_because']}): correct, but many times slower"
        )
    if warning := folds_budget_warning(
        evaluation.folds, chosen.train.epochs, chosen.train.patience
    ):
        print(f"evaluate: WARNING: {warning}")
    print(f"evaluate: MLflow run {parent.info.run_id}; reports in {folder}/")
    print(f"evaluate: see it in MLflow: {ui_link(parent.info.experiment_id, parent.info.run_id)}")
    return 0
