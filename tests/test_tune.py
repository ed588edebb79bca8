"""The tune stage on a real local two-node Ray cluster, with real checkpoints and MLflow."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from components.config import TuneSpaceConfig
from components.tuning.space import model_variants, trials
from tests.builders import fake_records

ROOT = Path(__file__).parent.parent


def test_space_has_no_duplicate_or_invalid_points() -> None:
    space = TuneSpaceConfig(
        backbone=("ststnet", "clip_net"),
        attention=("none", "se", "mhsa", "temporal_mhsa"),
        heads=(1, 4),
        reduction=(2, 4),
        placement=(("fused",), ("temporal",), ("frame",)),
    )
    variants = model_variants(space, 0.5)
    assert len(variants) == len(set(variants))
    labels = {
        (v.backbone, v.attention.type, v.placement, v.attention.heads, v.attention.reduction)
        for v in variants
    }
    # none once per backbone; heads only for self-attention, reduction only for se
    assert ("ststnet", "none", (), 2, 4) in labels and ("clip_net", "none", (), 2, 4) in labels
    assert {(h, r) for b, t, p, h, r in labels if t == "se"} == {(2, 2), (2, 4)}
    assert {(h, r) for b, t, p, h, r in labels if t == "mhsa"} == {(1, 4), (4, 4)}
    # placements only where they exist and fit the attention
    assert ("ststnet", "temporal_mhsa") not in {(b, t) for b, t, *_ in labels}
    assert {
        p for b, t, *rest in labels for p in [rest[0]] if b == "clip_net" and t == "temporal_mhsa"
    } == {("temporal",)}
    assert len(trials(space, 0.5)) == len(variants)


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node, one CPU each, as separate Ray raylets on this machine."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def write_params(folder: Path, **tune_overrides) -> Path:
    fake_records(folder / "records", subjects=6, per_class=2)
    params = {
        "seed": 1,
        "preprocess": {"records_dir": str(folder / "records"), "clip_frames": 4, "clip_size": 16},
        "model": {"dropout": 0.0},
        "train": {"augment_shift_px": 0},
        "tracking": {
            "uri": f"sqlite:///{folder}/mlflow.db",
            "artifact_location": str(folder / "artifacts"),
            "experiment": "tune-test",
        },
        "tune": {
            "space": {
                "attention": ["none", "se", "spatial", "cbam"],
                "epochs": [EPOCHS],
                "learning_rate": [0.01],
            },
            "scheduler": "fifo",
            "max_concurrent_trials": 2,
            "holdout_fraction": 0.2,
            "validation_fraction": 0.25,
            "storage_path": str(folder / "ray_results"),
            "reports_dir": str(folder / "reports/tune"),
            **tune_overrides,
        },
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def search(cluster, tmp_path_factory):
    """One search: 4 trials, 2 logical CPU devices each, every trial crashes once at epoch 1."""
    from pipelines import tune as tune_stage

    folder = tmp_path_factory.mktemp("tune")
    params = write_params(folder, devices_per_trial=2)
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        code = tune_stage.run(
            argparse.Namespace(params=str(params), fresh=False, crash_once_at_epoch=1)
        )
    finally:
        del os.environ["RAY_ADDRESS"]
    return folder, code


def test_trials_spread_over_both_nodes_and_use_two_devices(search, cluster) -> None:
    folder, code = search
    assert code == 0
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert len(table) == 4 and (table.status == "TERMINATED").all()
    node_ids = {node.node_id for node in cluster.list_all_nodes()}
    assert set(table.node_id) == node_ids and len(node_ids) == 2
    assert (table.replicas == 2).all()  # MirroredStrategy over 2 logical CPU devices


def test_crashed_trials_resume_from_their_checkpoint(search) -> None:
    folder, _ = search
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert (table.restored_from_epoch == 0).all()  # restarted after the crash at epoch 1
    assert (table.epochs_run == 3).all()  # epochs 0, 1, 2 once each: not started over


def test_best_config_and_holdout_are_written(search) -> None:
    folder, _ = search
    best = json.loads((folder / "reports/tune/best_config.json").read_text())
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert best["val_uf1"] == table.best_val_uf1.max()
    assert best["model"]["attention"]["type"] in {"none", "se", "spatial", "cbam"}
    seen = set(best["search_train_subjects"]) | set(best["search_validation_subjects"])
    assert best["holdout_subjects"] and not seen & set(best["holdout_subjects"])
    assert (folder / "reports/tune/search.png").stat().st_size > 10000


def test_mlflow_has_a_child_run_per_trial(search) -> None:
    folder, _ = search
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    experiment = mlflow.get_experiment_by_name("tune-test")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parent = next(r for r in runs if r.info.run_name == "tune")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4  # one per trial, the same run continued after the crash
    client = mlflow.tracking.MlflowClient()
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_uf1")]
        assert sorted(set(steps)) == [0, 1, 2]
        assert child.data.params["point.model.attention.type"]
    assert parent.data.metrics["best_val_uf1"] >= 0
    mlflow.set_tracking_uri(None)


EPOCHS = 3


def finished(result: Path) -> bool:
    """A trial is finished when its last reported row is its last epoch."""
    lines = result.read_text().strip().splitlines()
    return bool(lines) and json.loads(lines[-1]).get("training_iteration") == EPOCHS


def completed_trials(storage: Path) -> int:
    return sum(finished(p) for p in storage.glob("tune-*/*/result.json"))


def test_an_interrupted_search_resumes_without_rerunning_finished_trials(
    cluster, tmp_path: Path
) -> None:
    params = write_params(tmp_path, max_concurrent_trials=1, devices_per_trial=1)
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    command = [sys.executable, "-m", "pipelines.cli", "--params", str(params), "tune"]
    driver = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    storage = tmp_path / "ray_results"
    deadline = time.time() + 240
    while completed_trials(storage) < 1 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert completed_trials(storage) >= 1, "no trial finished before the deadline"
    driver.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves the experiment state and stops
    driver.wait(timeout=120)
    finished_before = {
        p.parent.name: p.read_bytes() for p in storage.glob("tune-*/*/result.json") if finished(p)
    }
    assert 1 <= len(finished_before) < 4

    resumed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the interrupted search" in resumed.stdout
    table = pd.read_parquet(tmp_path / "reports/tune/trials.parquet")
    assert len(table) == 4 and (table.status == "TERMINATED").all()
    for name, content in finished_before.items():  # finished trials were not run again:
        # their reported rows (with their timestamps) are exactly what the first run wrote
        assert next(storage.glob(f"tune-*/{name}/result.json")).read_bytes() == content
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.tracking.MlflowClient()
    experiment = mlflow.get_experiment_by_name("tune-test")
    children = [
        r
        for r in mlflow.search_runs([experiment.experiment_id], output_format="list")
        if "trial_id" in r.data.tags
    ]
    assert len(children) == 4  # one per trial across both driver runs
    for child in children:
        trial = child.data.tags["trial_id"]
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_uf1")]
        if any(f"_{trial}_" in name for name in finished_before):
            assert sorted(steps) == list(range(EPOCHS)), trial  # finished before: logged once
        else:  # the interrupted trial may repeat the epoch it was in when Ctrl-C came
            assert set(steps) == set(range(EPOCHS)), trial
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(
    ("search", "scheduler"), [("grid", "asha"), ("random", "fifo"), ("optuna", "asha")]
)
def test_search_algorithms_and_schedulers(search: str, scheduler: str) -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from components.config import Params, TuneConfig
    from pipelines.tune import search_setup

    params = Params(tune=TuneConfig(search=search, scheduler=scheduler, grace_period=4))
    space, algorithm, chosen = search_setup(params, 5)
    assert isinstance(chosen, ASHAScheduler if scheduler == "asha" else FIFOScheduler)
    if search == "optuna":
        assert isinstance(algorithm, OptunaSearch)
        assert space["index"].categories == [0, 1, 2, 3, 4]
    elif search == "grid":
        assert algorithm is None and space["index"] == {"grid_search": [0, 1, 2, 3, 4]}
    else:
        assert algorithm is None and (space["index"].lower, space["index"].upper) == (0, 5)
