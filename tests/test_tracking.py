"""MLflow helpers: which store is used, flattened params, data version."""

import subprocess
from pathlib import Path

import mlflow
import yaml

from components.config import ModelConfig, TrackingConfig
from components.tracking import (
    configure_tracking,
    data_version,
    flatten,
    git_commit,
    resolved_uri,
)


def test_our_own_earlier_uri_is_not_mistaken_for_the_users_override(tmp_path: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/a.db")  # MLflow also writes the env var
    cfg = TrackingConfig(
        uri=f"sqlite:///{tmp_path}/b.db", artifact_location=str(tmp_path / "art"), experiment="x"
    )
    configure_tracking(cfg)
    assert mlflow.get_tracking_uri().endswith("/b.db")
    experiment = mlflow.get_experiment_by_name("x")
    assert experiment.artifact_location == (tmp_path / "art").as_uri()


def test_experiments_open_on_the_training_runs_and_a_users_kind_stays(tmp_path: Path) -> None:
    """MLflow 3's UI opens an experiment by its kind tag: ours are model training, whether
    created here or found without the tag; a kind someone set is left as it is."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"

    def configured(name: str):
        configure_tracking(
            TrackingConfig(uri=uri, artifact_location=str(tmp_path), experiment=name)
        )
        return mlflow.get_experiment_by_name(name).tags.get("mlflow.experimentKind")

    assert configured("new") == "custom_model_development"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    client.create_experiment("untagged")
    assert configured("untagged") == "custom_model_development"
    client.create_experiment("theirs", tags={"mlflow.experimentKind": "genai_development"})
    assert configured("theirs") == "genai_development"


def test_relative_sqlite_path_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        resolved_uri(TrackingConfig(uri="sqlite:///mlflow.db")) == f"sqlite:///{tmp_path}/mlflow.db"
    )
    assert resolved_uri(TrackingConfig(uri="http://127.0.0.1:5000")) == "http://127.0.0.1:5000"


def test_flatten_nested_config() -> None:
    flat = flatten({"model": ModelConfig(), "seed": 3})
    assert flat["model.attention.type"] == "none" and flat["model.placement"] == "fused"
    assert flat["seed"] == "3"


def test_data_version_changes_with_the_records(tmp_path: Path) -> None:
    (tmp_path / "manifest.parquet").write_bytes(b"a")
    (tmp_path / "records-00000-of-00001.tfrecord.gz").write_bytes(b"b")
    first = data_version(tmp_path)
    assert data_version(tmp_path) == first and first.endswith(".dir") and len(first) == 36
    (tmp_path / "records-00000-of-00001.tfrecord.gz").write_bytes(b"c")
    assert data_version(tmp_path) != first


def test_data_version_is_the_hash_dvc_records(tmp_path: Path) -> None:
    """The same value DVC writes for the directory (here via ``dvc add``; in dvc.lock for a
    stage output), including nested files, which DVC orders by the joined path string."""
    records = tmp_path / "records"
    (records / "sub").mkdir(parents=True)
    (records / "sub-a").write_bytes(b"x")  # "sub-a" < "sub/b" as strings, not as components

    (records / "sub" / "b").write_bytes(b"y")
    (records / "manifest.parquet").write_bytes(b"z")
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "add", "-q", "records"], cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "records.dvc").read_text())["outs"][0]["md5"]
    assert data_version(records) == recorded


def test_git_commit_is_dirty_for_code_changes_not_for_pipeline_outputs(
    tmp_path: Path, monkeypatch
) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for name in ("code.py", "dvc.lock", "reports/metrics.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("1")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    clean = git_commit()
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (tmp_path / "dvc.lock").write_text("2")  # dvc repro rewrites these as it runs
    (tmp_path / "reports/metrics.json").write_text("2")
    assert git_commit() == clean
    (tmp_path / "code.py").write_text("2")
    assert git_commit() == clean + "-dirty"
    monkeypatch.chdir(tmp_path.parent)
    assert git_commit() == "unknown"


def test_the_champion_rule_compares_what_each_version_registered() -> None:
    """A seed ensemble is judged by its ensemble's evaluated UF1; a version registered before
    the ``registered.uf1`` tag is read through its older names (``composite.uf1``, ``uf1``)."""
    from types import SimpleNamespace

    from components.tracking.registry import REGISTERED_UF1, decide, evaluation_tags

    block = {"uf1": 0.60, "uf1_ci_low": 0.5, "uf1_ci_high": 0.7, "uar": 0.6}
    evaluation = SimpleNamespace(
        protocol="loso",
        complete=True,
        seeds=[1, 2],
        summary={"composite": block, "ensemble": {**block, "uf1": 0.66}},
    )
    single = evaluation_tags(evaluation, "d1")
    ensemble = evaluation_tags(evaluation, "d1", ensemble=True)
    assert single[REGISTERED_UF1] == "0.600000" and ensemble[REGISTERED_UF1] == "0.660000"
    common = {"protocol": "loso", "data_version": "d1"}
    for older in ({"composite.uf1": "0.63"}, {"uf1": "0.63"}):
        holder = SimpleNamespace(version="3", tags={**common, **older})
        assert decide(ensemble, holder, "champion").promote  # 0.66 > 0.63
        assert not decide(single, holder, "champion").promote  # 0.60 < 0.63
        assert "0.6300" in decide(single, holder, "champion").reason
