"""DVC stage ``register``: retrain the evaluated configuration (model and training values) on
every subject, log it with its evaluation, figures and model card, register it, and move the
champion alias only if it beats the current champion on the same protocol and data."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, replace

from components.config import load_params
from components.progress import say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-alias", action="store_true", help="register the version but never move the alias"
    )


def final_epochs(configured: int | None, folds: list[dict], fallback: int) -> tuple[int, str]:
    """Epochs for the all-subject model: ``register.epochs``, else the median epoch that the
    evaluate folds chose on their validation subjects (no test subject involved)."""
    if configured is not None:
        return configured, "register.epochs"
    chosen = [f["best_epoch"] + 1 for f in folds if f["best_epoch"] >= 0]
    if not chosen:
        return fallback, "train.epochs (the evaluation chose no epoch)"
    return int(
        statistics.median(chosen)
    ), f"median epoch chosen by the {len(chosen)} evaluate folds"


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    from components.artifacts import Chosen, Evaluation, Registration
    from components.outputs import Protected, check_files_folder, output_lock
    from components.tracking import configure_tracking

    chosen, evaluation = Chosen.of(params), Evaluation.read(params)
    folder = Registration.folder(params)
    check_files_folder(folder, "register.reports_dir", Protected.of(params), Registration.FILES)
    configure_tracking(params.tracking)  # reachable, before the training
    with output_lock(folder, "register.reports_dir"):
        return _register(args, params, chosen, evaluation)


def _register(args, params, chosen, evaluation) -> int:
    import mlflow

    from components.artifacts import Evaluation, Records, Registration, TuneResult
    from components.errors import ArtifactError
    from components.outputs import Protected, staged_files
    from components.provenance import provenance_tags
    from components.tracking.final_model import train_final
    from components.tracking.mlflow_runs import ui_link
    from components.tracking.registration import register

    cfg = params.register
    if evaluation.model != chosen.model.as_dict() or evaluation.train != asdict(chosen.train):
        raise ArtifactError(
            f"{Evaluation.folder(params) / 'evaluation.json'} evaluated another configuration or "
            f"training values than the chosen ones ({chosen.describe(params)}): run `mer evaluate` again"
        )
    epochs, epochs_source = final_epochs(cfg.epochs, evaluation.folds, chosen.train.epochs)
    train = replace(chosen.train, epochs=epochs)
    records = Records.of(params).read()  # validated before training
    say(
        f"register: training {chosen.model.backbone} / {chosen.model.attention.type} on all {len(records.subjects)} subjects ({len(records.manifest)} clips) for {epochs} epochs ({epochs_source})"
    )
    started = time.perf_counter()
    tags = provenance_tags(params.preprocess.records_dir, "register")
    synthetic = any(d.root == params.synthesize.root for d in params.datasets)
    folder = Registration.folder(params)
    with staged_files(
        folder, "register.reports_dir", Protected.of(params), Registration.FILES
    ) as staging:
        final = train_final(
            chosen, train, params, evaluation, epochs_source, tags, synthetic, staging
        )
        say(f"register: trained in {time.perf_counter() - started:.0f} s")
        reports = Evaluation.folder(params)
        files = [
            ("figures", reports / "figures"),
            ("figures/final_model", staging / "attention_maps.png"),
        ]
        files += [("", reports / name) for name in ("metrics.json", "evaluation.json")]
        if chosen.tune:
            files.append(("tune", TuneResult.folder(params) / "best_config.json"))
        registration, run_id = register(final, params, evaluation, files, args.no_alias)
        registration.write(staging)
        (staging / "model_card.md").write_text(final.card)
    verdict = "now holds" if registration.alias_moved else "does NOT take"
    print(
        f"register: {cfg.model_name} version {registration.version} {verdict} '{cfg.alias}': {registration.reason}"
    )
    print(
        f"register: model card and figures in {folder}/; MLflow run {run_id}; use it with `mer predict <clip> --model models:/{cfg.model_name}@{cfg.alias}`"
    )
    experiment = mlflow.get_run(run_id).info.experiment_id
    print(f"register: see it in MLflow: {ui_link(experiment, run_id)}")
    return 0
