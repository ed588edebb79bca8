"""``mer compare``: attention types side by side, each over ``compare.seeds`` seeds, on the same
folds, against a baseline (``compare.baseline``, default ``none``).

Every (type, seed, folds) unit is submitted to Ray at once. Writes
``reports/compare/attention.{md,json,png}``: UF1/UAR with subject-bootstrap CIs, each seed's UF1,
ΔUF1 vs the baseline with a paired CI and a verdict, McNemar's exact test; one MLflow run per
type. The epoch is chosen on validation subjects in every fold, as in ``evaluate``.
"""

from __future__ import annotations

import argparse

from components.config import load_params
from pipelines.arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--types", help="comma-separated attention types (default: compare.types)")
    parser.add_argument(
        "--seeds", type=positive_int, help="seeds per type (default: compare.seeds)"
    )
    parser.add_argument("--local", action="store_true", help="train the units in this process")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from dataclasses import asdict, replace

    from components.artifacts import Comparison
    from components.config import CompareConfig, parse
    from components.evaluation.session import Session
    from components.outputs import Protected, check_files_folder, output_lock

    overrides = {"types": args.types.split(",")} if args.types else {}
    overrides.update({"seeds": args.seeds} if args.seeds else {})
    cfg = parse(CompareConfig, {**asdict(params.compare), **overrides}, "mer compare")
    params = replace(params, compare=cfg)
    session = Session.open(params, "compare", distributed=not args.local)
    folder = Comparison.folder(params)
    check_files_folder(folder, "compare.reports_dir", Protected.of(params), Comparison.FILES)
    with output_lock(folder, "compare.reports_dir"):
        return _compare(params, session, cfg)


def _compare(params, session, cfg) -> int:
    import mlflow

    from components.evaluation import comparison
    from components.evaluation.session import seed_list
    from components.tracking import configure_tracking, flatten, provenance_tags, tracked_run

    configure_tracking(params.tracking)
    seeds = seed_list(params.seed, cfg.seeds)
    print(
        f"compare: {len(cfg.types)} types × {len(seeds)} seeds on {len(session.folds)} "
        f"{params.evaluate.protocol} folds ({len(session.records.subjects)} subjects), "
        f"baseline {cfg.baseline}",
        flush=True,
    )
    variants, _, rows = comparison.run_comparison(params, session, seeds)
    folder = comparison.publish_comparison(params, session, rows, seeds)
    tags = provenance_tags(params.preprocess.records_dir, "compare")
    for row, (_, model) in zip(rows, variants, strict=True):
        with tracked_run(run_name=f"compare-{row['attention']}", tags=tags):
            mlflow.log_params(
                flatten(
                    {"model": model.as_dict(), "protocol": params.evaluate.protocol, "seeds": seeds}
                )
            )
            mlflow.log_metrics(
                {
                    k: v
                    for k, v in row.items()
                    if isinstance(v, float | int) and not isinstance(v, bool)
                }
            )
    print(comparison.markdown_table(rows, cfg.baseline, params.evaluate.confidence), end="")
    print(f"compare: written to {folder}/attention.{{md,json,png}}")
    return 0
