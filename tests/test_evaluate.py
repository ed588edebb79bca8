"""The evaluate stage on small records: outputs, split integrity, CIs, seeds, MLflow runs,
nested selection, leave-one-dataset-out."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.builders import mer, small_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mer evaluate` once: grouped 3-fold, two seeds, short training."""
    folder = tmp_path_factory.mktemp("evaluate")
    small_project(
        folder,
        subjects=6,
        evaluate={"protocol": "kfold", "folds": 3, "seeds": 2, "folds_per_unit": 3},
    )
    done = mer(folder, "evaluate", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_stage_writes_metrics_predictions_and_plots(stage: Path) -> None:
    reports = stage / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert set(metrics) == {
        "composite", "casme2", "ensemble", "folds_run", "seeds", "folds_still_improving",
    }  # fmt: skip
    block = metrics["composite"]
    assert all(
        isinstance(v, int | float)
        for b in metrics.values()
        if isinstance(b, dict)
        for v in b.values()
    )
    assert block["uf1_ci_low"] <= block["uf1"] <= block["uf1_ci_high"]
    assert block["uar_ci_low"] <= block["uar"] <= block["uar_ci_high"]
    assert block["samples"] == 36 and metrics["seeds"] == 2 and metrics["folds_run"] == 3
    details = json.loads((reports / "evaluation.json").read_text())
    epochs, window = details["train"]["epochs"], details["train"]["patience"]
    first_best = [int(np.argmax([h["val_uf1"] for h in f["history"]])) for f in details["folds"]]
    runs = [f["epochs_run"] for f in details["folds"]]
    assert metrics["folds_still_improving"] == sum(
        run == epochs and best >= epochs - window
        for best, run in zip(first_best, runs, strict=True)
    )
    predictions = pd.read_parquet(reports / "predictions.parquet")
    assert len(predictions) == 2 * 36 and sorted(predictions.seed.unique()) == [3, 4]
    for _, rows in predictions.groupby("seed"):  # every sample once per seed
        assert rows.uid.is_unique and len(rows) == 36
    assert predictions[["p_0", "p_1", "p_2"]].sum(axis=1).round(5).eq(1).all()
    assert (predictions.predicted == predictions[["p_0", "p_1", "p_2"]].to_numpy().argmax(1)).all()
    # the two seeds' probability ensemble, against scikit-learn's macro F1 and recall
    from sklearn.metrics import f1_score, recall_score

    probability = predictions.groupby("uid")[["p_0", "p_1", "p_2"]].mean()
    truth = predictions.groupby("uid").true.first()
    voted = probability.to_numpy().argmax(1)
    ensemble = metrics["ensemble"]
    assert ensemble["samples"] == 36
    assert ensemble["uf1"] == pytest.approx(f1_score(truth, voted, average="macro"), abs=1e-9)
    assert ensemble["uar"] == pytest.approx(recall_score(truth, voted, average="macro"), abs=1e-9)
    assert ensemble["uf1_ci_low"] <= ensemble["uf1"] <= ensemble["uf1_ci_high"]
    results = pd.read_csv(reports / "results.csv")  # the paper's table, and its LaTeX twin
    assert list(results.subset) == ["composite", "casme2", "ensemble"]
    assert results.UF1.tolist() == [round(metrics[s]["uf1"], 4) for s in results.subset]
    assert "\\begin{tabular}" in (reports / "results.tex").read_text()
    for name in ("confusion_composite.png", "f1_per_class.png", "attention_maps.png"):
        assert (reports / "figures" / name).stat().st_size > 5000
    confusion = pd.read_csv(reports / "plots/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 72


def test_report_proves_split_integrity_and_records_each_seed(stage: Path) -> None:
    details = json.loads((stage / "reports/evaluation.json").read_text())
    assert "test subject is never seen" in details["selection_statement"]
    assert details["train"]["learning_rate"] == 0.01 and details["seeds"] == [3, 4]
    predictions = pd.read_parquet(stage / "reports/predictions.parquet")
    for seed in (3, 4):
        tested = []
        for fold in (f for f in details["folds"] if f["seed"] == seed):
            test, validation = set(fold["test"]), set(fold["validation"])
            assert test and validation and not test & validation
            mine = predictions[(predictions.seed == seed) & (predictions.fold == fold["fold"])]
            assert set(mine.subject_id) == test  # a fold predicts exactly its test subjects
            assert len(fold["history"]) == fold["epochs_run"]
            tested += fold["test"]
        assert sorted(tested) == sorted(predictions.subject_id.unique())
    per_seed = details["summary"]["composite"]["per_seed"]
    assert set(per_seed) == {"3", "4"}
    mean = sum(s["uf1"] for s in per_seed.values()) / 2
    assert details["summary"]["composite"]["uf1"] == pytest.approx(mean)


def test_mlflow_has_a_parent_run_and_a_child_per_seed_and_fold(stage: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{stage}/mlflow.db")
    experiment = mlflow.get_experiment_by_name("test")
    assert experiment.artifact_location.endswith("artifacts")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6 and {c.data.tags["seed"] for c in children} == {"3", "4"}
    assert parent.data.params["model.attention.type"] == "spatial"
    expected = {"composite.uf1", "composite.uf1_ci_low", "composite.uar", "casme2.uf1"}
    assert expected <= set(parent.data.metrics)  # named as in `dvc metrics show`
    assert parent.data.tags["data_version"].endswith(".dir") and parent.data.tags["git_commit"]
    client = mlflow.tracking.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/confusion_composite.png" in artifacts
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_uf1")
        assert len(history) == int(child.data.metrics["epochs_run"]) >= 2
        assert [m.step for m in history] == list(range(len(history)))
        assert "test_accuracy" in child.data.metrics and child.data.params["test_subjects"]


def test_nested_selection_chooses_per_fold_on_training_subjects_only(tmp_path: Path) -> None:
    """Each outer fold scores every candidate on grouped folds of its own training subjects
    and trains the best; the report says so."""
    small_project(
        tmp_path,
        subjects=6,
        per_class=1,
        model={
            "backbone": "ststnet",
            "attention": {"type": "none"},
            "placement": [],
            "dropout": 0.0,
        },
        train={"epochs": 2, "min_epochs": 1, "learning_rate": 0.01, "augment_shift_px": 0},
        evaluate={
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
        },
    )
    done = mer(tmp_path, "evaluate", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    details = json.loads((tmp_path / "reports/evaluation.json").read_text())
    assert details["selection_statement"].startswith("nested")
    for fold in details["folds"]:
        scores = fold["inner_uf1"]
        assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
        chosen = ["none", "se"][int(max(range(2), key=lambda k: (scores[k], -k)))]
        assert fold["model"]["attention"]["type"] == chosen
        # the inner folds never include the outer fold's test subjects
    assert details["selection"] == "nested"
