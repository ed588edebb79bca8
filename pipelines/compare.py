"""DVC stage ``compare``: every model of ``compare.space`` against its backbone's baseline
(``compare.baseline``), each over ``compare.seeds`` seeds, on the same folds.

Every (model, seed, folds) unit is submitted to Ray at once. Writes ``reports/compare/``: per
model UF1/UAR with subject-bootstrap CIs, each seed's and each dataset's UF1, ΔUF1 vs the baseline
with a paired CI, p-value and verdict (unadjusted and adjusted across the sweep), the main effects
of each axis, tables (Markdown, CSV, LaTeX), the forest plot and the type × placement heatmap;
an MLflow run. The epoch is chosen on validation subjects in every fold, as in ``evaluate``.
"""

from __future__ import annotations

import argparse

from components.config import load_params
from components.progress import say
from pipelines.arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds", type=positive_int, help="seeds per model (compare.seeds; not auto)"
    )
    parser.add_argument("--local", action="store_true", help="train the units in this process")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    from dataclasses import replace

    from components.artifacts import Comparison
    from components.evaluation.session import Session
    from components.outputs import Protected, check_files_folder, output_lock

    if args.seeds:
        params = replace(params, compare=replace(params.compare, seeds=args.seeds))
    session = Session.open(params, "compare", distributed=not args.local)
    folder = Comparison.folder(params)
    check_files_folder(folder, "compare.reports_dir", Protected.of(params), Comparison.FILES)
    with output_lock(folder, "compare.reports_dir"):
        return _compare(params, session)


def _compare(params, session) -> int:
    import mlflow

    from components.artifacts import Comparison
    from components.evaluation import comparison as sweep
    from components.evaluation.report import resampling
    from components.evaluation.session import seed_list
    from components.tracking import configure_tracking, flatten, provenance_tags, tracked_run
    from components.tracking.mlflow_runs import log_records_input

    cfg, ev = params.compare, params.evaluate
    configure_tracking(params.tracking)
    seeds = seed_list(params.seed, cfg.most_seeds)
    plan = sweep.Sweep.of(params)
    say(
        f"compare: {len(plan.variants)} models against {len(set(plan.baseline_of.values()))} "
        f"baseline(s) × {_seeds_said(cfg)} on {len(session.folds)} {ev.protocol} folds "
        f"({len(session.records.subjects)} subjects)",
    )
    draw = resampling(ev.bootstrap, params.seed, ev.confidence)
    tags = provenance_tags(params.preprocess.records_dir, "compare")
    with tracked_run(run_name="compare", tags=tags):
        mlflow.log_params(flatten({"compare": cfg, "train": params.train, "seed": params.seed}))
        log_records_input(params.preprocess.records_dir, tags["data_version"], "compare")
        predictions, seeds, chosen = _predictions(params, session, plan, seeds, draw)
        answers = sweep.compare(plan, predictions, draw, cfg.correction, cfg.margin)
        header = sweep.header(params, session, seeds, answers.noise)
        if chosen is not None:
            header += f" Seeds by need (compare.seeds: auto): {chosen.describe()}."
        found = Comparison(header, cfg.correction, seeds, answers.rows, answers.effects)
        folder = sweep.publish(params, found)
        mlflow.log_metrics(found.metrics())
        for name in ("comparison.md", "forest.png", "heatmap.png"):
            mlflow.log_artifact(str(folder / name))
    print((folder / "comparison.md").read_text(), end="")
    print(f"compare: written to {folder}/ (comparison.md/csv/tex/json, forest.png, heatmap.png)")
    return 0


def _seeds_said(cfg) -> str:
    from components.evaluation.seed_plan import FIRST_SEEDS

    if cfg.seeds != "auto":
        return f"{cfg.seeds} seeds"
    first = min(FIRST_SEEDS, cfg.max_seeds)
    return f"seeds by need ({first}, up to {cfg.max_seeds}, for an MDE ≤ {cfg.resolution})"


def _predictions(params, session, plan, seeds: list[int], draw):
    """(predictions by model, the seeds trained, the seed plan or None): every seed of
    ``seeds``, or with ``compare.seeds: auto`` as many as the plan asks for."""
    from components.evaluation import comparison as sweep
    from components.evaluation import seed_plan

    def train(these: list[int]):
        return sweep.run_sweep(params, session, these)[1]

    cfg = params.compare
    if cfg.seeds != "auto":
        return train(seeds), seeds, None

    def measure(predictions):
        chosen = seed_plan.plan_for_sweep(plan, predictions, draw, cfg.resolution, cfg.max_seeds)
        say(f"compare: {chosen.describe()}")
        return chosen

    return seed_plan.predictions_by_need(train, seeds, measure)
