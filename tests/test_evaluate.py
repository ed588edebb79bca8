"""The evaluate stage on small records: outputs, split integrity in the report, MLflow runs."""

import argparse
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from pipelines import evaluate
from tests.builders import fake_records


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory):
    """Run `mer evaluate` once (grouped 3-fold, short training) in a fresh folder."""
    folder = tmp_path_factory.mktemp("evaluate")
    records = fake_records(folder / "records", subjects=6, per_class=2)
    params = {
        "seed": 3,
        "preprocess": {"records_dir": str(folder / "records"), "clip_frames": 4, "clip_size": 16},
        "model": {
            "backbone": "ststnet",
            "attention": {"type": "spatial"},
            "placement": ["fused"],
            "dropout": 0.0,
        },
        "train": {"epochs": 6, "patience": 3, "min_epochs": 2, "learning_rate": 0.01},
        "evaluate": {
            "protocol": "kfold",
            "folds": 3,
            "attention_examples": 1,
            "reports_dir": str(folder / "reports"),
        },
        "tracking": {
            "uri": f"sqlite:///{folder}/mlflow.db",
            "artifact_location": str(folder / "artifacts"),
            "experiment": "test",
        },
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    import os

    previous = os.getcwd()
    os.chdir(folder)
    try:
        code = evaluate.run(argparse.Namespace(params="params.yaml", folds=None))
    finally:
        os.chdir(previous)
    return folder, records, code


def test_stage_writes_metrics_predictions_and_plots(stage) -> None:
    folder, records, code = stage
    assert code == 0
    reports = folder / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["protocol"] == "kfold" and metrics["complete"] is True
    assert 0 <= metrics["composite"]["uf1"] <= 1 and metrics["composite"]["samples"] == len(records)
    assert metrics["casme2"]["uf1"] == metrics["composite"]["uf1"]
    predictions = pd.read_parquet(reports / "predictions.parquet")
    assert sorted(predictions.uid) == sorted(r.uid for r in records)  # every sample once
    truth = {r.uid: r.label for r in records}
    assert (predictions.true == predictions.uid.map(truth)).all()
    assert predictions[["p_0", "p_1", "p_2"]].sum(axis=1).round(5).eq(1).all()
    assert (predictions.predicted == predictions[["p_0", "p_1", "p_2"]].to_numpy().argmax(1)).all()
    for name in ("confusion_composite.png", "f1_per_class.png", "attention_maps.png"):
        assert (reports / "figures" / name).stat().st_size > 5000
    confusion = pd.read_csv(reports / "plots/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == len(records)


def test_report_proves_split_integrity(stage) -> None:
    folder, records, _ = stage
    details = json.loads((folder / "reports/evaluation.json").read_text())
    assert "test subject is never seen" in details["selection_statement"]
    predictions = pd.read_parquet(folder / "reports/predictions.parquet")
    tested = []
    for fold in details["folds"]:
        test, validation = set(fold["test"]), set(fold["validation"])
        assert test and validation and not test & validation
        fold_subjects = set(predictions[predictions.fold == fold["fold"]].subject_id)
        assert fold_subjects == test  # a fold predicts exactly its test subjects
        tested += fold["test"]
    assert sorted(tested) == sorted({r.subject_id for r in records})


def test_mlflow_has_a_parent_run_and_a_child_per_fold(stage) -> None:
    folder, _, _ = stage
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    experiment = mlflow.get_experiment_by_name("test")
    assert experiment.artifact_location.endswith("artifacts")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.data.params["model.attention.type"] == "spatial"
    assert parent.data.params["train.epochs"] == "6"
    assert {"uf1", "uar", "casme2_uf1"} <= set(parent.data.metrics)
    assert parent.data.tags["data_version"].endswith(".dir") and parent.data.tags["git_commit"]
    client = mlflow.tracking.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/confusion_composite.png" in artifacts
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_uf1")
        assert len(history) == int(child.data.metrics["epochs_run"]) >= 2
        assert [m.step for m in history] == list(range(len(history)))
        assert "test_accuracy" in child.data.metrics and child.data.params["test_subjects"]
    mlflow.set_tracking_uri(None)


def test_evaluate_uses_the_tune_stage_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.config import Params
    from components.tuning.best import chosen_model

    monkeypatch.chdir(tmp_path)
    assert chosen_model(Params())[1] == "params.yaml model"
    best = tmp_path / "reports/tune/best_config.json"
    best.parent.mkdir(parents=True)
    best.write_text(
        json.dumps(
            {
                "model": {
                    "backbone": "resnet_small",
                    "attention": {"type": "se"},
                    "placement": ["block2"],
                }
            }
        )
    )
    model, source = chosen_model(Params())
    assert (
        model.backbone == "resnet_small"
        and model.attention.type == "se"
        and source.startswith("tune")
    )


def test_nested_selection_chooses_per_fold_on_training_subjects_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nested mode: each outer fold scores every candidate on grouped folds of its own
    training subjects and trains the best; the report says so."""
    fake_records(tmp_path / "records", subjects=6, per_class=1)
    params = {
        "seed": 2,
        "preprocess": {"records_dir": str(tmp_path / "records"), "clip_frames": 4, "clip_size": 16},
        "model": {
            "backbone": "ststnet",
            "attention": {"type": "none"},
            "placement": [],
            "dropout": 0.0,
        },
        "train": {"epochs": 2, "min_epochs": 1, "learning_rate": 0.01, "augment_shift_px": 0},
        "evaluate": {
            "protocol": "kfold",
            "folds": 2,
            "selection": "nested",
            "inner_folds": 2,
            "candidates": [
                {
                    "backbone": "ststnet",
                    "attention": {"type": "se"},
                    "placement": ["fused"],
                    "dropout": 0.0,
                }
            ],
            "attention_examples": 1,
            "reports_dir": str(tmp_path / "reports"),
        },
        "tracking": {
            "uri": f"sqlite:///{tmp_path}/mlflow.db",
            "artifact_location": str(tmp_path / "artifacts"),
            "experiment": "nested",
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert evaluate.run(argparse.Namespace(params="params.yaml", folds=None)) == 0
    details = json.loads((tmp_path / "reports/evaluation.json").read_text())
    assert details["selection_statement"].startswith("nested")
    for fold in details["folds"]:
        scores = fold["inner_uf1"]
        assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
        chosen = ["none", "se"][int(max(range(2), key=lambda k: (scores[k], -k)))]
        assert fold["model"]["attention"]["type"] == chosen
    assert json.loads((tmp_path / "reports/metrics.json").read_text())["selection"] == "nested"
