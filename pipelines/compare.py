"""``mer compare``: the same protocol for several attention types, side by side.

Runs the evaluate protocol (LOSO by default) for each attention type at the configured
backbone and placement and writes ``reports/compare/attention.{md,json,png}``: a table of
pooled UF1/UAR per type (composite and per dataset) and a bar chart. Each type is one MLflow
run. The epoch is chosen on validation subjects in every fold, as in ``evaluate``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from components.config import AttentionConfig, load_params

DEFAULT_TYPES = "none,se,eca,channel,spatial,cbam,mhsa"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--types", default=DEFAULT_TYPES, help=f"comma-separated (default {DEFAULT_TYPES})"
    )
    parser.add_argument("--out", default="reports/compare", help="output folder")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from components.training import runtime

    runtime.configure(params.train, params.seed)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import pandas as pd

    from components.datasets.labels import COMPOSITE_CLASSES
    from components.evaluation.metrics import summarise
    from components.evaluation.protocol import ExperimentData, run_folds
    from components.evaluation.splits import protocol_folds
    from components.tracking import configure_tracking, flatten, provenance_tags

    cfg = params.evaluate
    data = ExperimentData.load(params.preprocess)
    folds = protocol_folds(
        data.subjects, cfg.protocol, cfg.folds, params.train.validation_fraction, params.seed
    )
    strategy = runtime.make_strategy(params.train)
    configure_tracking(params.tracking)
    tags = provenance_tags(params.preprocess.records_dir, "compare")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in args.types.split(","):
        model = replace(params.model, attention=replace(params.model.attention, type=kind))
        if kind == "none":
            model = replace(model, attention=AttentionConfig(type="none"))
        started = time.perf_counter()
        outcomes = run_folds(
            data,
            folds,
            [model],
            params.train,
            selection="given",
            inner_folds=cfg.inner_folds,
            strategy=strategy,
            seed=params.seed,
        )
        predictions = pd.concat([o.predictions for o in outcomes])
        summary = summarise(
            predictions.true, predictions.predicted, predictions.dataset, COMPOSITE_CLASSES
        )
        seconds = time.perf_counter() - started
        row = {
            "attention": kind,
            "placement": ",".join(model.placement) if kind != "none" else "-",
            "seconds": round(seconds),
        }
        for subset, block in summary.items():
            row[f"{subset}_uf1"], row[f"{subset}_uar"] = (
                round(block["uf1"], 4),
                round(block["uar"], 4),
            )
        rows.append(row)
        with mlflow.start_run(run_name=f"compare-{kind}", tags=tags):
            mlflow.log_params(flatten({"model": model, "evaluate.protocol": cfg.protocol}))
            mlflow.log_metrics({k: v for k, v in row.items() if k.endswith(("_uf1", "_uar"))})
        print(
            f"compare: {kind:8} UF1 {row['composite_uf1']:.4f}  UAR {row['composite_uar']:.4f}  ({seconds:.0f} s)",
            flush=True,
        )
    table = pd.DataFrame(rows)
    (out / "attention.json").write_text(json.dumps(rows, indent=2) + "\n")
    header = (
        f"{cfg.protocol.upper()} over {len(data.subjects)} subjects, {len(data.manifest)} samples; backbone "
        f"`{params.model.backbone}`, seed {params.seed}, epoch chosen on validation subjects per fold.\n\n"
    )
    (out / "attention.md").write_text(header + table.to_markdown(index=False) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    ax.bar(table.attention, table.composite_uf1, label="UF1")
    ax.plot(table.attention, table.composite_uar, "ko", label="UAR")
    ax.set_ylim(0, 1)
    ax.axhline(1 / 3, color="grey", ls=":", label="chance")
    ax.set_title(
        f"{params.model.backbone}: attention at {', '.join(params.model.placement)} ({cfg.protocol})",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "attention.png")
    print(f"compare: table in {out / 'attention.md'}")
    return 0
