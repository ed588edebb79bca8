"""DVC stage ``register``: retrain the chosen configuration on every subject, log it with its
evaluation, figures and model card, register it, and move the champion alias only if it
beats the current champion on the same protocol and data."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

from components.config import Params, load_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-alias", action="store_true", help="register the version but never move the alias"
    )


def final_epochs(params: Params, evaluation: dict) -> tuple[int, str]:
    """Epochs for the all-subject model: ``register.epochs``, else the median epoch that the
    evaluate folds chose on their validation subjects (no test subject involved)."""
    if params.register.epochs is not None:
        return params.register.epochs, "register.epochs"
    chosen = [f["best_epoch"] + 1 for f in evaluation.get("folds", []) if f["best_epoch"] >= 0]
    if not chosen:
        return params.train.epochs, "train.epochs (the evaluation chose no epoch)"
    return int(
        statistics.median(chosen)
    ), f"median epoch chosen by the {len(chosen)} evaluate folds"


def read_json(path: Path, stage: str) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `mer {stage}` (or `dvc repro`) first")
    return json.loads(path.read_text())


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from components.training import runtime

    runtime.configure(params.train, params.seed)  # before any TensorFlow op

    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from components.datasets.labels import COMPOSITE_CLASSES
    from components.evaluation import plots
    from components.evaluation.examples import attention_examples, load_records, pick_examples
    from components.evaluation.protocol import ExperimentData, fit_on_subjects
    from components.inference.predict import METADATA_KEY
    from components.records.schema import model_input
    from components.tracking import configure_tracking, flatten, provenance_tags
    from components.tracking import registry as reg
    from components.tracking.keras_flavor import log_model
    from components.tracking.model_card import CardFacts, model_card
    from components.tuning.best import BEST_CONFIG, chosen_model
    from components.tuning.space import describe_model

    cfg = params.register
    reports = Path(params.evaluate.reports_dir)
    out = Path(cfg.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = read_json(reports / "metrics.json", "evaluate")
    evaluation = read_json(reports / "evaluation.json", "evaluate")
    model_cfg, source = chosen_model(params)
    if json.loads(json.dumps(asdict(model_cfg))) != evaluation["model"]:
        raise ValueError(
            f"{reports / 'evaluation.json'} evaluated {evaluation['model']}, but the chosen "
            f"configuration is now {asdict(model_cfg)}: run `mer evaluate` again first"
        )
    epochs, epochs_source = final_epochs(params, evaluation)
    train_cfg = replace(params.train, epochs=epochs)

    data = ExperimentData.load(params.preprocess)
    subjects = data.subjects
    strategy = runtime.make_strategy(params.train)
    print(
        f"register: training {model_cfg.backbone} / {model_cfg.attention.type} on all "
        f"{len(subjects)} subjects ({len(data.manifest)} clips) for {epochs} epochs "
        f"({epochs_source})",
        flush=True,
    )
    started = time.perf_counter()
    result = fit_on_subjects(
        data, model_cfg, train_cfg, subjects, [], strategy=strategy, seed=params.seed
    )
    model = result.model
    print(f"register: trained in {time.perf_counter() - started:.0f} s", flush=True)

    kind = data.input_kind(model_cfg)
    examples = load_records(
        data.shards,
        pick_examples(data.manifest, params.evaluate.attention_examples, params.seed),
    )
    first = examples[min(examples)]
    input_example = model_input(kind, first.flow, first.clip)[None]
    signature = infer_signature(input_example, np.asarray(model(input_example, training=False)))
    overlays = sorted(
        attention_examples(data, model, model_cfg, examples, subjects), key=lambda e: e["caption"]
    )
    title = f"{model_cfg.backbone} / {model_cfg.attention.type}: final model (all subjects)"
    plots.attention_grid_png(overlays, out / "attention_maps.png", title)

    tags = provenance_tags(params.preprocess.records_dir, "register")
    synthetic = any(Path(d.root) == Path(params.synthesize.root) for d in params.datasets)
    card = model_card(
        CardFacts(
            name=cfg.model_name,
            params=params,
            model_cfg=model_cfg,
            config_source=source,
            metrics=metrics,
            selection_statement=evaluation["selection_statement"],
            manifest=data.manifest,
            epochs=epochs,
            epochs_source=epochs_source,
            parameters=int(model.count_params()),
            input_kind=kind,
            data_version=tags["data_version"],
            git_commit=tags["git_commit"],
            synthetic=synthetic,
        )
    )
    (out / "model_card.md").write_text(card)

    configure_tracking(params.tracking)
    client = MlflowClient()
    holder = reg.alias_holder(client, cfg.model_name, cfg.alias)
    version_tags = {
        **reg.evaluation_tags(metrics, tags["data_version"]),
        "git_commit": tags["git_commit"],
        "model": describe_model(asdict(model_cfg)),
        "synthetic_data": str(synthetic).lower(),
    }
    with mlflow.start_run(run_name="register", tags=tags) as run:
        mlflow.log_params(
            flatten({"model": model_cfg, "train": train_cfg, "register": cfg, "seed": params.seed})
        )
        mlflow.log_metrics(
            {
                **{k: float(v) for k, v in version_tags.items() if k.startswith(("uf1", "uar"))},
                "final_epochs": epochs,
                "train_loss": result.history["loss"][-1],
            }
        )
        mlflow.log_artifacts(str(reports / "figures"), "figures")
        mlflow.log_artifact(str(out / "attention_maps.png"), "figures/final_model")
        mlflow.log_artifact(str(reports / "metrics.json"))
        mlflow.log_artifact(str(reports / "evaluation.json"))
        if BEST_CONFIG.exists():
            mlflow.log_artifact(str(BEST_CONFIG))
        mlflow.log_text(card, "model_card.md")
        info = log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            registered_model_name=cfg.model_name,
            pip_requirements=runtime_requirements(),
            metadata={
                METADATA_KEY: {
                    "model": asdict(model_cfg),
                    "preprocess": asdict(params.preprocess),
                    "input_kind": kind,
                    "classes": list(COMPOSITE_CLASSES),
                    "data_version": tags["data_version"],
                }
            },
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    for key, value in {**version_tags, "register_run_id": run_id}.items():
        client.set_model_version_tag(cfg.model_name, version, key, value)
    client.update_model_version(cfg.model_name, version, description=card)
    decision = (
        reg.Decision(False, "--no-alias was given")
        if args.no_alias
        else reg.decide(version_tags, holder, cfg.alias)
    )
    reg.apply_decision(client, cfg.model_name, version, cfg.alias, decision)

    registration = {
        "model_name": cfg.model_name,
        "version": int(version),
        "model_uri": f"models:/{cfg.model_name}/{version}",
        "alias": cfg.alias,
        "alias_moved": decision.promote,
        "reason": decision.reason,
        "previous_alias_holder": decision.previous,
        "run_id": run_id,
        "data_version": tags["data_version"],
        "uf1": float(version_tags[reg.UF1]),
        "protocol": version_tags[reg.PROTOCOL],
    }
    (out / "registration.json").write_text(json.dumps(registration, indent=2) + "\n")
    verdict = "now holds" if decision.promote else "does NOT take"
    print(
        f"register: {cfg.model_name} version {version} {verdict} '{cfg.alias}': {decision.reason}"
    )
    print(
        f"register: model card and figures in {out}/; MLflow run {run_id}; "
        f"use it with `mer predict <clip> --model models:/{cfg.model_name}@{cfg.alias}`"
    )
    return 0


def runtime_requirements() -> list[str]:
    """What the served model needs (pinned to this environment), instead of MLflow's
    inference by loading the model in a subprocess."""
    from importlib.metadata import version

    return [
        f"{package}=={version(package)}"
        for package in ("mlflow", "tensorflow", "keras", "numpy", "pyyaml")
    ]
