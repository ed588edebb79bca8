"""DVC stage ``evaluate``: the MEGC 2019 protocol (LOSO or grouped k-fold) for the chosen
configuration, pooled UF1/UAR (composite and per dataset), predictions, plots, MLflow runs."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from components.config import Params, load_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--folds", type=int, help="run only the first N folds (quick look; not a full report)"
    )


def model_candidates(params: Params) -> list:
    """The configurations to evaluate: the chosen one first (nested mode adds candidates)."""
    from components.tuning.best import chosen_model

    chosen, _ = chosen_model(params)
    if params.evaluate.selection == "nested":
        return [chosen, *[c for c in params.evaluate.candidates if c != chosen]]
    return [chosen]


def selection_statement(params: Params, candidates: list, source: str) -> str:
    if params.evaluate.selection == "nested" and len(candidates) > 1:
        return (
            f"nested: per outer fold, the configuration is chosen among {len(candidates)} candidates "
            f"by {params.evaluate.inner_folds}-fold grouped validation on that fold's training "
            "subjects, and the epoch on its validation subjects; the test subject is never seen"
        )
    return (
        f"given configuration ({source}); per fold, the epoch is chosen on validation subjects "
        "drawn from the training subjects; the test subject is never seen by training or "
        "selection"
        + (
            ""
            if source == "params.yaml model"
            else ". The configuration was chosen by the tune stage on a validation split of the "
            "subjects outside its holdout, so for those subjects the choice is not nested per "
            "outer fold; metrics.json 'untuned_subjects' covers the held-out subjects, which "
            "influenced no choice at all"
        )
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from components.training import runtime

    runtime.configure(params.train, params.seed)  # before any TensorFlow op

    import mlflow
    import numpy as np
    import pandas as pd

    from components.datasets.labels import COMPOSITE_CLASSES
    from components.evaluation import plots
    from components.evaluation.examples import attention_examples, load_records, pick_examples
    from components.evaluation.metrics import summarise
    from components.evaluation.protocol import ExperimentData, run_folds
    from components.evaluation.splits import protocol_folds
    from components.tracking import EpochLogger, configure_tracking, flatten, provenance_tags
    from components.tuning.best import chosen_model, holdout_subjects

    cfg = params.evaluate
    reports = Path(cfg.reports_dir)
    figures, plot_data = reports / "figures", reports / "plots"
    for folder in (figures, plot_data):
        folder.mkdir(parents=True, exist_ok=True)
    data = ExperimentData.load(params.preprocess)
    candidates = model_candidates(params)
    _, source = chosen_model(params)
    folds = protocol_folds(
        data.subjects, cfg.protocol, cfg.folds, params.train.validation_fraction, params.seed
    )
    complete = args.folds is None or args.folds >= len(folds)
    folds = folds if complete else folds[: args.folds]
    strategy = runtime.make_strategy(params.train)
    examples = load_records(
        data.shards, pick_examples(data.manifest, cfg.attention_examples, params.seed)
    )
    statement = selection_statement(params, candidates, source)
    print(
        f"evaluate: {cfg.protocol} over {len(data.subjects)} subjects, {len(folds)} folds, "
        f"{strategy.num_replicas_in_sync} replica(s); model {candidates[0].backbone} / "
        f"{candidates[0].attention.type} at {', '.join(candidates[0].placement) or '-'}",
        flush=True,
    )
    print(f"evaluate: selection: {statement}", flush=True)

    configure_tracking(params.tracking)
    tags = provenance_tags(params.preprocess.records_dir, "evaluate")
    started = time.perf_counter()
    overlays: list[dict] = []
    with mlflow.start_run(run_name=f"evaluate-{cfg.protocol}", tags=tags) as parent:
        mlflow.log_params(
            flatten(
                {
                    "model": candidates[0],
                    "train": params.train,
                    "evaluate": cfg,
                    "seed": params.seed,
                }
            )
        )
        mlflow.set_tag("selection", statement)

        def on_fold_start(index, fold):
            run = mlflow.start_run(
                run_name=f"fold-{fold.name}", nested=True, tags={**tags, "fold": fold.name}
            )
            mlflow.log_params(
                {
                    "test_subjects": ",".join(fold.test),
                    "validation_subjects": ",".join(fold.validation),
                    "train_subjects": len(fold.train),
                }
            )
            return [EpochLogger(run.info.run_id)]

        def on_fold_end(index, outcome):
            result, predictions = outcome.result, outcome.predictions
            accuracy = float((predictions.true == predictions.predicted).mean())
            mlflow.log_params(flatten({"model": outcome.model_cfg}))
            mlflow.log_metrics(
                {
                    "test_accuracy": accuracy,
                    "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run,
                    "test_samples": len(predictions),
                }
            )
            if outcome.selection_scores:
                mlflow.log_dict({"inner_uf1": outcome.selection_scores}, "selection.json")
            mlflow.end_run()
            overlays.extend(
                attention_examples(
                    data, result.model, outcome.model_cfg, examples, outcome.fold.test
                )
            )
            elapsed = time.perf_counter() - started
            remaining = elapsed / (index + 1) * (len(folds) - index - 1)
            print(
                f"evaluate: fold {index + 1}/{len(folds)} {outcome.fold.name}: accuracy {accuracy:.2f} "
                f"on {len(predictions)}, best epoch {result.best_epoch + 1}/{result.epochs_run}, "
                f"{elapsed:.0f} s elapsed, ~{remaining:.0f} s left",
                flush=True,
            )

        outcomes = run_folds(
            data,
            folds,
            candidates,
            params.train,
            selection=cfg.selection,
            inner_folds=cfg.inner_folds,
            strategy=strategy,
            seed=params.seed,
            on_fold_start=on_fold_start,
            on_fold_end=on_fold_end,
        )
        predictions = pd.concat([o.predictions for o in outcomes], ignore_index=True).sort_values(
            "uid"
        )
        summary = summarise(
            predictions.true, predictions.predicted, predictions.dataset, COMPOSITE_CLASSES
        )
        metrics = {
            "protocol": cfg.protocol,
            "complete": complete,
            "selection": cfg.selection,
            **{
                subset: {k: block[k] for k in ("uf1", "uar", "accuracy", "samples")}
                for subset, block in summary.items()
            },
        }
        untouched = holdout_subjects() if source.startswith("tune") else []
        if untouched:  # subjects that influenced neither the configuration nor any epoch choice
            mask = predictions.subject_id.isin(untouched)
            block = summarise(
                predictions.true[mask],
                predictions.predicted[mask],
                ["holdout"] * int(mask.sum()),
                COMPOSITE_CLASSES,
            )["composite"]
            metrics["untuned_subjects"] = {
                k: block[k] for k in ("uf1", "uar", "accuracy", "samples")
            }
            summary_note = (
                f"; on the {len(untouched)} subjects the search never saw: UF1 {block['uf1']:.4f}"
            )
        else:
            summary_note = ""
        (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        predictions.to_parquet(reports / "predictions.parquet", index=False)
        details = {
            "selection_statement": statement,
            "model": asdict(candidates[0]),
            "summary": summary,
            "folds": [
                {
                    "fold": o.fold.name,
                    "test": list(o.fold.test),
                    "validation": list(o.fold.validation),
                    "model": asdict(o.model_cfg),
                    "best_epoch": o.result.best_epoch,
                    "epochs_run": o.result.epochs_run,
                    "inner_uf1": o.selection_scores,
                }
                for o in outcomes
            ],
        }
        (reports / "evaluation.json").write_text(json.dumps(details, indent=2) + "\n")
        names = np.array(COMPOSITE_CLASSES)
        pd.DataFrame(
            {"actual": names[predictions.true], "predicted": names[predictions.predicted]}
        ).to_csv(plot_data / "confusion.csv", index=False)
        pd.DataFrame(
            [
                {"subset": s, "class": c, "f1": f}
                for s, b in summary.items()
                for c, f in b["f1_per_class"].items()
            ]
        ).to_csv(plot_data / "f1_per_class.csv", index=False)
        title = f"{candidates[0].backbone} / {candidates[0].attention.type}"
        for subset, block in summary.items():
            plots.confusion_png(
                np.array(block["confusion_matrix"]),
                COMPOSITE_CLASSES,
                f"{subset} {cfg.protocol}: UF1 {block['uf1']:.3f}, UAR {block['uar']:.3f}\n{title}",
                figures / f"confusion_{subset}.png",
            )
        plots.f1_bars_png(
            {s: b["f1_per_class"] for s, b in summary.items()},
            figures / "f1_per_class.png",
            f"F1 per class ({cfg.protocol}), {title}",
        )
        overlays.sort(key=lambda e: e["caption"])
        plots.attention_grid_png(
            overlays,
            figures / "attention_maps.png",
            f"{title}: each face from the fold where it was the test subject",
        )
        composite = summary["composite"]
        mlflow.log_metrics(
            {"uf1": composite["uf1"], "uar": composite["uar"], "accuracy": composite["accuracy"]}
        )
        for subset, block in summary.items():
            if subset != "composite":
                mlflow.log_metrics({f"{subset}_uf1": block["uf1"], f"{subset}_uar": block["uar"]})
        mlflow.log_artifacts(str(figures), "figures")
        mlflow.log_artifact(str(reports / "metrics.json"))
        mlflow.log_artifact(str(reports / "evaluation.json"))
        run_id = parent.info.run_id
    print(
        f"evaluate: composite UF1 {composite['uf1']:.4f}, UAR {composite['uar']:.4f} over {composite['samples']} samples"
        + summary_note
        + ("" if complete else f" (ONLY {len(folds)} folds: not a full report)")
    )
    for subset, block in summary.items():
        if subset != "composite":
            print(
                f"evaluate:   {subset}: UF1 {block['uf1']:.4f}, UAR {block['uar']:.4f} ({block['samples']} samples)"
            )
    print(
        f"evaluate: MLflow run {run_id}; reports in {reports}/ ({time.perf_counter() - started:.0f} s)"
    )
    return 0
