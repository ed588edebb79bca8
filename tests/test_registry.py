"""The register stage against a real `mlflow server` on a real PostgreSQL: the champion-alias
rules, what a version carries, `mer registry`, a REST-served model, and the MLflow UI page of
the registered model rendered in headless Chromium."""

import json
import shutil
import urllib.request
from dataclasses import asdict
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from components.artifacts import Evaluation
from components.config import ModelConfig, load_params, parse
from components.outputs import write_json
from components.tracking import mlflow_runs
from pipelines import register, registry
from tests import services
from tests.builders import fake_records, stage_args

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # kept after the run
NAME = "mer-attention-test"
MODEL = {"backbone": "ststnet", "attention": {"type": "cbam"}, "placement": ["fused"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """PostgreSQL + `mlflow server` with an artifact root, for the whole module."""
    root = tmp_path_factory.mktemp("services")
    with (
        services.postgres() as database,
        services.mlflow_server(database, root / "artifacts", root / "mlflow.log") as url,
    ):
        yield url


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with records and the evaluate stage's reports (metrics set per test)."""
    folder = tmp_path_factory.mktemp("project")
    fake_records(folder / "records", subjects=4, per_class=2)
    params = {
        "seed": 1,
        "preprocess": {"records_dir": "records", "clip_frames": 4, "clip_size": 16},
        "model": MODEL,
        "train": {"learning_rate": 0.01},
        "evaluate": {"attention_examples": 1, "reports_dir": "reports"},
        "register": {"model_name": NAME, "epochs": 3, "reports_dir": "reports/register"},
        "tracking": {"experiment": "registry-test"},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    (folder / "reports" / "figures").mkdir(parents=True)
    cv2.imwrite(str(folder / "reports/figures/confusion_composite.png"), np.zeros((8, 8, 3)))
    return folder


RISING = [{"epoch": e, "val_uf1": min(1.0, e / 59), "val_loss": 1 - e / 60} for e in range(60)]


def evaluation_result(
    project: Path, uf1: float, complete: bool, ensemble_uf1: float | None = None
) -> Evaluation:
    """What the evaluate stage would have written, with composite UF1 ``uf1`` (and given
    ``ensemble_uf1``, two seeds and their ensemble's row)."""
    params = load_params(project / "params.yaml")
    block = {
        "uf1": uf1, "uf1_ci_low": uf1 - 0.1, "uf1_ci_high": min(1.0, uf1 + 0.1),
        "uar": uf1, "uar_ci_low": uf1 - 0.1, "uar_ci_high": min(1.0, uf1 + 0.1),
        "accuracy": uf1, "samples": 24, "subjects": 4,
    }  # fmt: skip
    summary = {"composite": block, "casme2": block}
    if ensemble_uf1 is not None:
        summary["ensemble"] = {**block, "uf1": ensemble_uf1, "uf1_ci_high": ensemble_uf1 + 0.1}
    seeds = [1] if ensemble_uf1 is None else [1, 2]
    return Evaluation(
        protocol="loso",
        complete=complete,
        selection="given",
        selection_statement="given configuration (test)",
        model=parse(ModelConfig, MODEL, "test").as_dict(),
        train=asdict(params.train),
        seeds=seeds,
        summary=summary,
        folds=[  # every fold trained all of train.epochs (60), its UF1 still rising at the end
            {"fold": f, "seed": seed, "best_epoch": 59, "epochs_run": 60, "history": RISING}
            for seed in seeds
            for f in ("a", "b")
        ],
        folds_still_improving=2 * len(seeds),
    )


def register_version(
    project: Path,
    server: str,
    monkeypatch: pytest.MonkeyPatch,
    uf1: float,
    complete: bool = True,
    ensemble_uf1: float | None = None,
) -> dict:
    """Run the register stage with an evaluate result of ``uf1``; return registration.json."""
    evaluation = evaluation_result(project, uf1, complete, ensemble_uf1)
    write_json(project / "reports" / "metrics.json", evaluation.metrics())
    write_json(project / "reports" / "evaluation.json", asdict(evaluation))
    monkeypatch.chdir(project)
    monkeypatch.setattr(mlflow_runs, "USER_TRACKING_URI", server)
    assert register.run(stage_args("params.yaml", "register")) == 0
    return json.loads((project / "reports/register/registration.json").read_text())


@pytest.fixture(scope="module")
def history(server: str, project: Path) -> list[dict]:
    """Five registrations in a row, each exercising one alias rule."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        steps = [register_version(project, server, monkeypatch, 0.60)]  # first: champion
        steps.append(register_version(project, server, monkeypatch, 0.55))  # worse
        steps.append(register_version(project, server, monkeypatch, 0.60))  # a tie is no win
        steps.append(register_version(project, server, monkeypatch, 0.90, complete=False))
        records = project / "records"
        shutil.move(records, project / "records-v1")
        fake_records(records, subjects=4, per_class=2, seed=9)  # other data
        steps.append(register_version(project, server, monkeypatch, 0.95))
        shutil.rmtree(records)
        shutil.move(project / "records-v1", records)
        steps.append(register_version(project, server, monkeypatch, 0.70))  # better: champion
    return steps


def test_the_alias_moves_only_to_a_better_version_on_the_same_protocol_and_data(
    history: list[dict], server: str
) -> None:
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert [h["alias_moved"] for h in history] == [True, False, False, False, False, True]
    assert "no version holds" in history[0]["reason"]
    assert "does not beat" in history[1]["reason"] and "does not beat" in history[2]["reason"]
    assert "did not run every fold" in history[3]["reason"]
    assert "not comparable" in history[4]["reason"] and "data version" in history[4]["reason"]
    assert history[4]["data_version"] != history[0]["data_version"]
    assert "beats v1's 0.6000" in history[5]["reason"]
    client = MlflowClient(server)
    assert client.get_model_version_by_alias(NAME, "champion").version == "6"
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3, 4, 5, 6]  # none deleted


def test_a_version_carries_metrics_provenance_figures_and_a_model_card(
    history: list[dict], server: str
) -> None:
    client = MlflowClient(server)
    version = client.get_model_version(NAME, "6")
    tags = version.tags
    assert tags["protocol"] == "loso" and float(tags["composite.uf1"]) == pytest.approx(0.70)
    assert float(tags["casme2.uf1"]) == pytest.approx(0.70)
    assert tags["data_version"] == history[0]["data_version"] and tags["data_version"].endswith(
        ".dir"
    )
    assert tags["git_commit"] and tags["model"] == "ststnet/cbam@fused"
    assert "beats" in tags["champion_decision"]
    assert version.description.startswith("# Model card") and "## Limits" in version.description
    assert "**Training budget:** 2 of 2 evaluate folds trained all 60 epochs" in (
        version.description
    )
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"figures", "metrics.json", "evaluation.json", "model_card.md"} <= artifacts
    figures = {a.path for a in client.list_artifacts(version.run_id, "figures/final_model")}
    assert figures == {"figures/final_model/attention_maps.png"}
    run = client.get_run(version.run_id)
    assert run.data.params["train.epochs"] == "3" and run.data.metrics[
        "composite.uf1"
    ] == pytest.approx(0.7)
    mlflow.set_tracking_uri(server)
    info = mlflow.models.get_model_info(f"models:/{NAME}/6")
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 28, 28, 3]
    assert info.flavors["keras"]["keras_version"]  # MLflow's own Keras 3 flavour
    assert info.metadata["mer_attention"]["input_kind"] == "flow"


def test_mer_registry_lists_versions_and_promotes_by_hand(
    history: list[dict], server: str, project: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setattr(mlflow_runs, "USER_TRACKING_URI", server)
    assert registry.run(stage_args("params.yaml", "registry")) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line for line in lines[2:]}
    assert list(table) == ["6", "5", "4", "3", "2", "1"]
    assert "champion" in table["6"] and "champion" not in table["1"]
    assert "0.7000" in table["6"] and "(partial)" in table["4"]
    args = stage_args("params.yaml", "registry", "--promote", "5", "--reason", "new data")
    assert registry.run(args) == 0
    client = MlflowClient(server)
    assert client.get_model_version_by_alias(NAME, "champion").version == "5"
    assert "by hand: new data" in client.get_model_version(NAME, "5").tags["champion_decision"]
    client.set_registered_model_alias(NAME, "champion", "6")  # back, for the tests below


def test_the_served_model_answers_like_the_model_loaded_in_process(
    history: list[dict], server: str, project: Path, tmp_path: Path
) -> None:
    from components.inference import load_registered_model
    from components.records import decode, shard_paths
    from components.records.tfrecord import read_records

    uri = f"models:/{NAME}@champion"
    mlflow.set_tracking_uri(server)
    shards = shard_paths(str(project / "records"))
    loaded = load_registered_model(uri)
    x = np.stack([decode(r).flow for r in list(read_records(shards[0]))[:4]]).astype(np.float32)
    expected = np.asarray(loaded.model(x, training=False))
    pyfunc = mlflow.pyfunc.load_model(uri).predict(x)
    np.testing.assert_allclose(pyfunc, expected, atol=1e-5)
    with services.model_server(uri, server, tmp_path / "serve.log") as url:
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.array(json.loads(response.read())["predictions"])
    assert served.shape == (4, 3)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert (served.argmax(1) == expected.argmax(1)).all()


def test_the_mlflow_ui_shows_the_model_and_its_champion(
    history: list[dict], server: str, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "mlflow_registered_model.png"
    screenshot.unlink(missing_ok=True)
    dom = services.render_page(f"{server}/#/models/{NAME}", screenshot, tmp_path / "profile")
    assert NAME in dom and "champion" in dom
    assert screenshot.stat().st_size > 20_000  # a rendered page, not an empty one
    with open(screenshot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_mlflow_link_a_stage_prints_opens_on_the_training_runs(
    history: list[dict], server: str, tmp_path: Path
) -> None:
    """MLflow 3.17 opens an experiment on its GenAI overview (traces, token usage) in a fresh
    browser; the link evaluate and register print (`ui_link`) opens on the experiment's runs."""
    client = MlflowClient(server)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.stage = 'register'"
    )
    experiment, run = runs[0].info.experiment_id, runs[0].info.run_id
    mlflow.set_tracking_uri(server)
    link = mlflow_runs.ui_link(experiment, run)
    assert link == mlflow_runs.training_view_url(server, experiment, run)
    url = mlflow_runs.training_view_url(server, experiment)
    dom = services.render_page(url, tmp_path / "runs.png", tmp_path / "profile")
    assert f"Runs - Experiment {experiment} - MLflow" in dom  # the page's title
    assert runs[0].info.run_name in dom and "Model training" in dom


def test_two_evaluated_seeds_register_their_probability_ensemble_as_one_model(
    history: list[dict], server: str, project: Path, monkeypatch
) -> None:
    """With two evaluated seeds, register trains a final model per seed and registers their
    mean as one model: the champion rule compares the ensemble's evaluated UF1, and the model
    predicts a clip (probabilities = the mean of its members', attention of the first)."""
    from components.inference import load_registered_model
    from components.inference.predict import predict_clip
    from tests.test_inference import synthetic_clips

    found = register_version(project, server, monkeypatch, 0.65, ensemble_uf1=0.75)
    assert found["version"] == 7 and found["alias_moved"]
    assert "UF1 0.7500 beats v6's 0.7000" in found["reason"]  # the ensemble's, not 0.65
    client = MlflowClient(server)
    version = client.get_model_version(NAME, "7")
    assert version.tags["registered_seeds"] == "1,2"
    assert float(version.tags["registered.uf1"]) == pytest.approx(0.75)
    assert "probability ensemble (the mean of 2 final models" in version.description
    mlflow.set_tracking_uri(server)
    loaded = load_registered_model(f"models:/{NAME}/7")
    members = [loaded.model.get_layer(f"member{i}") for i in range(2)]
    _, frames = synthetic_clips(1)[0]
    prediction = predict_clip(loaded, frames, "clip")
    x = prediction.features.flow[None].astype(np.float32)
    outputs = [np.asarray(m(x, training=False)) for m in members]
    assert not np.allclose(outputs[0], outputs[1], atol=1e-4)  # two different models
    expected = np.mean(outputs, axis=0)[0]
    np.testing.assert_allclose(list(prediction.probabilities.values()), expected, atol=1e-5)
    assert prediction.attention is not None and prediction.attention.ndim >= 2
    client.set_registered_model_alias(NAME, "champion", "6")
