"""Registering a final model: its MLflow run (params, metrics with CIs, figures, card, the
model in the Keras 3 flavour with the project code), the registered version's tags and
description, and the champion-alias decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from components.artifacts import Evaluation, Registration
from components.config import ModelConfig, Params, TrainConfig
from components.tracking import flatten, tracked_run
from components.tracking import registry as reg


@dataclass(frozen=True)
class FinalModel:
    """What the register stage trained and everything the registry records about it."""

    model: Any  # keras.Model
    model_cfg: ModelConfig
    train: TrainConfig
    kind: str
    input_example: np.ndarray
    card: str
    tags: dict[str, str]  # provenance: git commit, data version, stage
    synthetic: bool
    seeds: tuple[int, ...] = ()  # the members' seeds (several: the probability ensemble)


def runtime_requirements() -> list[str]:
    """What the served model needs (pinned to this environment), instead of MLflow's
    inference by loading the model in a subprocess."""
    from importlib.metadata import version

    return [
        f"{package}=={version(package)}"
        for package in ("mlflow", "tensorflow", "keras", "numpy", "pyyaml")
    ]


def register(
    final: FinalModel,
    params: Params,
    evaluation: Evaluation,
    files: list[tuple[str, Path]],
    no_alias: bool = False,
) -> tuple[Registration, str]:
    """Log and register ``final``; move the alias only if the champion rule says so. Returns
    the registration and the MLflow run id (which stays out of the DVC-tracked record: it
    differs at every run)."""
    cfg = params.register
    client = MlflowClient()
    holder = reg.alias_holder(client, cfg.model_name, cfg.alias)
    version_tags = {
        **reg.evaluation_tags(evaluation, final.tags["data_version"], len(final.seeds) > 1),
        "registered_seeds": ",".join(map(str, final.seeds)),
        "git_commit": final.tags["git_commit"],
        "model": final.model_cfg.label,
        "synthetic_data": str(final.synthetic).lower(),
    }
    version, run_id = log_and_register(final, params, evaluation, files)
    for key, value in {**version_tags, "register_run_id": run_id}.items():
        client.set_model_version_tag(cfg.model_name, version, key, value)
    client.update_model_version(cfg.model_name, version, description=final.card)
    decision = (
        reg.Decision(False, "--no-alias was given")
        if no_alias
        else reg.decide(version_tags, holder, cfg.alias)
    )
    reg.apply_decision(client, cfg.model_name, version, cfg.alias, decision)
    registration = Registration(
        model_name=cfg.model_name,
        version=int(version),
        model_uri=f"models:/{cfg.model_name}/{version}",
        alias=cfg.alias,
        alias_moved=decision.promote,
        reason=decision.reason,
        previous_alias_holder=decision.previous,
        data_version=final.tags["data_version"],
        uf1=float(version_tags[reg.REGISTERED_UF1]),
        protocol=version_tags[reg.PROTOCOL],
    )
    return registration, run_id


def log_and_register(
    final: FinalModel, params: Params, evaluation: Evaluation, files: list[tuple[str, Path]]
) -> tuple[str, str]:
    """The register run: ``final``'s parameters, metrics, ``files`` and card logged, the model
    logged in the Keras 3 flavour and registered. Returns (model version, run id)."""
    from components.tracking.evaluation_runs import summary_metrics

    with tracked_run(run_name="register", tags=final.tags) as run:
        mlflow.log_params(
            flatten(
                {
                    "model": final.model_cfg.as_dict(),
                    "train": final.train,
                    "register": params.register,
                    "seed": params.seed,
                }
            )
        )
        mlflow.log_metrics(
            {**summary_metrics(evaluation.summary), "final_epochs": final.train.epochs}
        )
        for artifact_path, path in files:
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path)
            elif path.is_file():
                mlflow.log_artifact(str(path), artifact_path or None)
        mlflow.log_text(final.card, "model_card.md")
        info = log_final_model(final, params)
        return str(info.registered_model_version), run.info.run_id


def log_final_model(final: FinalModel, params: Params):
    """``final`` logged as the run's "model" (signature, input example, the runtime's
    requirements, what inference needs to rebuild its input) and registered."""
    from mlflow.models import infer_signature

    from components.datasets.labels import COMPOSITE_CLASSES
    from components.tracking.keras_flavor import METADATA_KEY, log_model

    output = np.asarray(final.model(final.input_example, training=False))
    return log_model(
        final.model,
        name="model",
        signature=infer_signature(final.input_example, output),
        input_example=final.input_example,
        registered_model_name=params.register.model_name,
        pip_requirements=runtime_requirements(),
        metadata={
            METADATA_KEY: {
                "model": final.model_cfg.as_dict(),
                "preprocess": asdict(params.preprocess),
                "input_kind": final.kind,
                "classes": list(COMPOSITE_CLASSES),
                "data_version": final.tags["data_version"],
            }
        },
    )
