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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--types", help="comma-separated attention types (default: compare.types)")
    parser.add_argument("--seeds", type=int, help="seeds per type (default: compare.seeds)")
    parser.add_argument("--local", action="store_true", help="train the units in this process")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from dataclasses import asdict, replace

    import mlflow

    from components.artifacts import Comparison
    from components.config import CompareConfig, parse
    from components.evaluation import comparison
    from components.evaluation.protocol import run_variants
    from components.evaluation.session import Session, seed_list
    from components.outputs import Protected, staged_files
    from components.tracking import configure_tracking, flatten, provenance_tags, tracked_run

    overrides = {"types": args.types.split(",")} if args.types else {}
    overrides.update({"seeds": args.seeds} if args.seeds else {})
    cfg = parse(CompareConfig, {**asdict(params.compare), **overrides}, "mer compare")
    params = replace(params, compare=cfg)
    session = Session.open(params, "compare", distributed=not args.local)
    variants = comparison.compare_variants(params)
    seeds = seed_list(params.seed, cfg.seeds)
    print(
        f"compare: {len(variants)} types × {len(seeds)} seeds on {len(session.folds)} {params.evaluate.protocol} folds ({len(session.records.subjects)} subjects), baseline {cfg.baseline}",
        flush=True,
    )
    configure_tracking(params.tracking)
    tags = provenance_tags(params.preprocess.records_dir, "compare")
    runs = run_variants(
        [m for _, m in variants],
        params.train,
        seeds,
        session.folds,
        session.records.manifest,
        session.execution,
    )
    labels = [k for k, _ in variants]
    ev = params.evaluate
    rows = comparison.comparison_rows(
        labels,
        [m for _, m in variants],
        [r.predictions for r in runs],
        labels.index(cfg.baseline),
        resamples=ev.bootstrap,
        seed=params.seed,
        confidence=ev.confidence,
    )
    for row, run in zip(rows, runs, strict=True):
        row["unit_seconds"] = round(sum(u.seconds for u in run.units), 1)
    header = f"{ev.protocol.upper()} over {len(session.records.subjects)} subjects, {len(session.records.manifest)} samples; `{params.model.backbone}` with the attention at `{', '.join(params.model.placement)}`; seeds {seeds}; epoch chosen on validation subjects per fold; CIs: subject bootstrap ({ev.bootstrap} resamples), Δ paired on the same subjects and seeds."
    result = Comparison(rows, header)
    with staged_files(
        Comparison.folder(params), "compare.reports_dir", Protected.of(params), Comparison.FILES
    ) as staging:
        result.write(
            staging, header + "\n\n" + comparison.markdown_table(rows, cfg.baseline, ev.confidence)
        )
        comparison.comparison_png(
            rows,
            staging / "attention.png",
            f"{params.model.backbone}: attention at {', '.join(params.model.placement)} ({ev.protocol}, {len(seeds)} seeds)",
        )
    for row, (_, model) in zip(rows, variants, strict=True):
        with tracked_run(run_name=f"compare-{row['attention']}", tags=tags):
            mlflow.log_params(
                flatten(
                    {"model": model.as_dict(), "evaluate.protocol": ev.protocol, "seeds": seeds}
                )
            )
            mlflow.log_metrics(
                {
                    k: v
                    for k, v in row.items()
                    if isinstance(v, float | int) and not isinstance(v, bool)
                }
            )
    print(comparison.markdown_table(rows, cfg.baseline, ev.confidence), end="")
    print(f"compare: written to {Comparison.folder(params)}/attention.{{md,json,png}}")
    return 0
