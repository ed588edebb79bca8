"""The tune stage on a real local two-node Ray cluster, with real checkpoints and MLflow; the
hand-off of the best point (model and training values) to evaluate and register."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from components.config import ConfigError, TuneSpaceConfig
from components.models.space import model_variants
from components.tuning.halving import replay
from components.tuning.space import trials
from tests.builders import crafted_pickle, small_project, stage_args

ROOT = Path(__file__).parent.parent
EPOCHS = 3


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
    assert ("ststnet", "temporal_mhsa") not in {(b, t) for b, t, *_ in labels}
    assert {
        p for b, t, *rest in labels for p in [rest[0]] if b == "clip_net" and t == "temporal_mhsa"
    } == {("temporal",)}
    assert len(trials(space, 0.5)) == len(variants)


def test_a_mean_gated_attention_is_one_model_before_or_after_an_average_pooling() -> None:
    """se / eca at ststnet's pre_head (a 2×2 average pooling of fused) compute the very model
    they compute at fused: same weights, same outputs; a space keeps one of them. Where the
    gate is not a function of the channel means (channel: max pooling too) both stay."""
    import numpy as np

    from components.config import AttentionConfig, ModelConfig
    from components.models import build_model

    x = np.random.default_rng(1).normal(size=(4, 28, 28, 3)).astype("float32")
    for kind, same in (("se", True), ("eca", True), ("channel", False)):
        outputs = []
        for point in ("fused", "pre_head"):
            keras_seed(3)
            model = build_model(ModelConfig("ststnet", AttentionConfig(kind), (point,), 0.0))
            outputs.append(model(x, training=False).numpy())
        assert np.allclose(outputs[0], outputs[1], atol=1e-6) == same, kind
    space = TuneSpaceConfig(
        backbone=("ststnet", "rcn"),
        attention=("se", "eca", "channel"),
        placement=(("fused",), ("pre_head",), ("fused", "pre_head")),
    )
    found = {(v.backbone, v.attention.type, v.placement) for v in model_variants(space, 0.5)}
    both = {("fused",), ("pre_head",), ("fused", "pre_head")}
    assert {p for b, t, p in found if b == "ststnet" and t == "se"} == both - {("pre_head",)}
    assert {p for b, t, p in found if b == "ststnet" and t == "eca"} == both - {("pre_head",)}
    assert {p for b, t, p in found if b == "ststnet" and t == "channel"} == both
    assert {p for b, t, p in found if b == "rcn" and t == "se"} == both  # max-pooled: kept


def test_max_keys_is_kept_only_where_it_pools() -> None:
    """STSTNet's maps have 28·28 positions at streams, 10·10 at fused (3×3/3 pooled), 5·5 at
    pre_head; ``max_keys: 100`` pools only at streams, so elsewhere it is the model without it
    (one variant, not two), and with no input sizes the space keeps what it is given."""
    from components.models.space import map_positions

    sizes = {"flow_size": 28, "clip_frames": 8, "clip_size": 64}
    assert map_positions("ststnet", sizes) == {"streams": 784, "fused": 100, "pre_head": 25}
    assert map_positions("ststnet", {**sizes, "flow_size": 30})["fused"] == 100
    space = TuneSpaceConfig(
        attention=("mhsa", "se"),
        max_keys=(None, 100),
        placement=(("streams",), ("fused",), ("pre_head",), ("streams", "fused")),
    )
    labels = [v.label for v in model_variants(space, 0.5, sizes)]
    assert len(labels) == len(set(labels))
    assert [label for label in labels if "mhsa" in label] == [
        "ststnet/mhsa@streams h=2",
        "ststnet/mhsa@streams h=2 keys≤100",
        "ststnet/mhsa@fused h=2",
        "ststnet/mhsa@pre_head h=2",
        "ststnet/mhsa@streams+fused h=2",
        "ststnet/mhsa@streams+fused h=2 keys≤100",
    ]
    assert sum("keys≤" in v.label for v in model_variants(space, 0.5)) == 4


def keras_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def test_a_space_with_no_valid_point_names_what_was_rejected() -> None:
    space = TuneSpaceConfig(attention=("temporal_mhsa",), placement=(("fused",),))
    with pytest.raises(
        ConfigError,
        match=r"ststnet/temporal_mhsa@fused: attention 'temporal_mhsa' works on frame sequences",
    ):
        model_variants(space, 0.5)


def test_a_placement_typo_or_a_backbone_left_without_variants_is_an_error() -> None:
    """Not silently dropped: a point no backbone of the space has (a typo), and a backbone of
    the space whose every attention variant was rejected (its baseline alone would train)."""
    typo = TuneSpaceConfig(attention=("none", "se"), placement=(("fused",), ("nowhere",)))
    with pytest.raises(
        ConfigError,
        match=r"'nowhere' is not a point of any backbone of the space \(ststnet: streams, fused, pre_head\)",
    ):
        model_variants(typo, 0.5)
    lacking = TuneSpaceConfig(
        backbone=("ststnet", "htnet"), attention=("none", "se"), placement=(("fused",),)
    )
    with pytest.raises(
        ConfigError,
        match=r"backbone 'htnet' gets no attention variant .*htnet/se@fused: backbone 'htnet' has no placement point 'fused'",
    ):
        model_variants(lacking, 0.5)
    both = TuneSpaceConfig(
        backbone=("ststnet", "htnet"),
        attention=("none", "se"),
        placement=(("fused",), ("regions",)),
    )
    assert {v.label for v in model_variants(both, 0.5)} == {
        "ststnet/none@-", "htnet/none@-", "ststnet/se@fused", "htnet/se@regions"
    }  # fmt: skip


def test_a_search_is_named_by_its_definition_data_and_code(monkeypatch) -> None:
    """Same search, data and code: the same name (an interrupted run resumes); any change,
    the code's too, a new search (never finished with trials of other code)."""
    from components import provenance
    from components.config import Params
    from components.tuning.search import experiment_name

    params = Params()
    name = experiment_name([{"index": 0}], params, "data-1")
    assert name == experiment_name([{"index": 0}], params, "data-1")
    assert name != experiment_name([{"index": 1}], params, "data-1")
    assert name != experiment_name([{"index": 0}], params, "data-2")
    monkeypatch.setattr(provenance, "code_version", lambda: "other code")
    assert name != experiment_name([{"index": 0}], params, "data-1")


def write_params(folder: Path, **tune_overrides) -> Path:
    return small_project(
        folder,
        subjects=6,
        model={"dropout": 0.0},
        train={"augment_shift_px": 0, "augment_flip": False},
        tune={
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
    )


@pytest.fixture(scope="module")
def search(cluster, tmp_path_factory):
    """One search: 2 trials at once (one per node), 2 logical CPU devices each, every trial
    crashes once at epoch 1."""
    from pipelines import tune as tune_stage

    folder = tmp_path_factory.mktemp("tune")
    space = {"attention": ["none", "cbam"], "epochs": [EPOCHS], "learning_rate": [0.01]}
    params = write_params(folder, devices_per_trial=2, space=space)
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        args = stage_args(params, "tune")
        args.crash_once_at_epoch = 1  # a test hook, not a flag
        code = tune_stage.run(args)
    finally:
        del os.environ["RAY_ADDRESS"]
    return folder, code


@pytest.mark.slow
def test_trials_spread_over_both_nodes_and_use_two_devices(search, cluster) -> None:
    folder, code = search
    assert code == 0
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert len(table) == 2 and (table.status == "TERMINATED").all()
    node_ids = {node.node_id for node in cluster.list_all_nodes()}
    assert "node_id" not in table and "seconds" not in table  # no host or timing in DVC outputs
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    runs = mlflow.search_runs(
        [mlflow.get_experiment_by_name("test").experiment_id], output_format="list"
    )
    ran_on = {r.data.tags["node_id"] for r in runs if "trial_key" in r.data.tags}
    assert ran_on == node_ids and len(node_ids) == 2
    assert (table.replicas == 2).all()  # MirroredStrategy over 2 logical CPU devices


@pytest.mark.slow
def test_crashed_trials_resume_from_their_checkpoint(search) -> None:
    folder, _ = search
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert (table.restored_from_epoch == 0).all()  # restarted after the crash at epoch 1
    assert (table.epochs_run == 3).all()  # epochs 0, 1, 2 once each: not started over


@pytest.mark.slow
def test_best_config_carries_model_and_training_values(search) -> None:
    folder, _ = search
    best = json.loads((folder / "reports/tune/best_config.json").read_text())
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert best["score"] == table.best_val_uf1.max()
    assert best["model"]["attention"]["type"] in {"none", "cbam"}
    assert (best["learning_rate"], best["batch_size"], best["epochs"]) == (0.01, 16, EPOCHS)
    assert best["holdout_subjects"] and not set(best["search_subjects"]) & set(
        best["holdout_subjects"]
    )
    assert (folder / "reports/tune/search.png").stat().st_size > 10000


@pytest.mark.slow
def test_mlflow_has_a_child_run_per_trial(search) -> None:
    folder, _ = search
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    experiment = mlflow.get_experiment_by_name("test")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parent = next(r for r in runs if r.info.run_name == "tune")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2  # one per trial, the same run continued after the crash
    client = mlflow.tracking.MlflowClient()
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_uf1")]
        assert sorted(set(steps)) == [0, 1, 2]
        assert child.data.params["point.model.attention.type"]
    assert parent.data.metrics["best_val_uf1"] >= 0 and parent.info.status == "FINISHED"


def finished(state: Path) -> bool:
    """A trial is finished when its stored state is after its last epoch."""
    from components import datafiles

    try:
        return datafiles.load(state)["next_epoch"] == EPOCHS
    except Exception:  # being replaced at this moment
        return False


def trial_states(storage: Path) -> list[Path]:
    """The trials' stored states (the search store: components/tuning/store.py)."""
    return sorted(storage.glob("tune-*/trials/*.npz"))


def completed_trials(storage: Path) -> int:
    return sum(finished(p) for p in trial_states(storage))


def start_tune(cluster, folder: Path, **tune_overrides):
    """`mer tune` started in a subprocess on a small project in ``folder``, attached to the
    test cluster; returns (command, environment, process) for a signal and a second run."""
    params = write_params(folder, **tune_overrides)
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "pipelines.cli", "--params", str(params), "tune"]
    driver = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return command, env, driver


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_a_search_the_same_way(how: signal.Signals) -> None:
    """Both signals are recorded and forwarded to Ray Tune as SIGUSR1 (its graceful stop), a
    second one aborts, and the handlers in place before are restored: so the search
    interrupted by SIGTERM below stands for Ctrl-C too."""
    from components.tuning.search import interruptible

    forwarded = []
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: forwarded.append(signum))
    try:
        previous = signal.getsignal(how)
        with interruptible() as seen:
            os.kill(os.getpid(), how)
            assert seen.signal == how.name and forwarded == [signal.SIGUSR1]
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), how)
        assert signal.getsignal(how) is previous
    finally:
        signal.signal(signal.SIGUSR1, before)


@pytest.mark.slow
def test_an_interrupted_search_fails_and_resumes(cluster, tmp_path: Path) -> None:
    """SIGTERM (as Ctrl-C: the test above): a non-zero exit, no best configuration, the run
    marked KILLED; a crafted marker or crafted states are refused; the next `mer tune` resumes
    without rerunning finished trials and completes."""
    space = {"attention": ["none", "cbam"], "epochs": [EPOCHS], "learning_rate": [0.01]}
    command, env, driver = start_tune(
        cluster, tmp_path, max_concurrent_trials=1, devices_per_trial=1, space=space
    )
    storage = tmp_path / "ray_results"
    deadline = time.time() + 240
    while completed_trials(storage) < 1 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert completed_trials(storage) >= 1, "no trial finished before the deadline"
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-2000:]
    assert "Run `mer tune` again to resume it" in err
    assert not (tmp_path / "reports/tune/best_config.json").exists()
    finished_before = {p.name: p.read_bytes() for p in trial_states(storage) if finished(p)}
    assert len(finished_before) == 1  # of 2, one at a time
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = mlflow.get_experiment_by_name("test")
    first = [
        r
        for r in mlflow.search_runs([experiment.experiment_id], output_format="list")
        if r.info.run_name == "tune"
    ]
    assert [r.info.status for r in first] == ["KILLED"]
    refused_with_a_marker_or_crafted_states(command, env, storage, tmp_path / "marker")

    resumed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the interrupted search" in resumed.stdout
    table = pd.read_parquet(tmp_path / "reports/tune/trials.parquet")
    assert len(table) == 2 and (table.status == "TERMINATED").all()
    for name, content in finished_before.items():  # finished trials were not run again
        assert next(storage.glob(f"tune-*/trials/{name}")).read_bytes() == content
    restored = table[table.restored_from_epoch >= 0]  # the interrupted trial went on from
    assert len(restored) <= 1  # its last stored epoch (none if the signal fell between trials)
    best = json.loads((tmp_path / "reports/tune/best_config.json").read_text())  # strict JSON
    assert best["score"] == table.best_val_uf1.max()


def refused_with_a_marker_or_crafted_states(command, env, storage: Path, marker: Path) -> None:
    """Bad cases 5 and 8 on the interrupted search, as a user meets them: (5) a finished-search
    marker dropped into its folder (595f2f7 hung: it read the search back as finished and waited
    for trials that never ran) is one line naming the record, at once; (8) its trials' stored
    states and Ray's checkpoints replaced by pickles that write a marker are refused before
    anything resumes, and no code runs. Both put back as they were for the resume after."""
    (folder,) = storage.glob("tune-*")
    (folder / "mer-search-finished").write_text("finished\n")  # 595f2f7's marker
    (folder / "search.json").write_text(json.dumps({"name": folder.name, "metric": "val_uf1",
                                                    "mode": "max", "trials": []}))  # fmt: skip
    started = time.time()
    marked = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert marked.returncode == 2, marked.stderr[-2000:]
    assert "search.json" in marked.stderr and "Traceback" not in marked.stderr
    assert time.time() - started < 60
    (folder / "search.json").unlink()
    (folder / "mer-search-finished").unlink()
    states = [*folder.glob("trials/*.npz"), *folder.rglob("state.pkl"), *folder.rglob("state.npz")]
    assert states
    kept = {path: path.read_bytes() for path in states}
    for path in states:
        path.write_bytes(crafted_pickle(marker))
    refused = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "is not a data file this project wrote" in refused.stderr
    assert not marker.exists()
    for path, content in kept.items():
        path.write_bytes(content)


def interrupt_after_first_epoch(cluster, params: Path) -> None:
    """`mer tune` on ``params`` in a subprocess, stopped by Ctrl-C once a trial stored an epoch."""
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "pipelines.cli", "--params", str(params), "tune"]
    driver = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    storage = params.parent / "ray_results"
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None and not trial_states(storage):
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-2000:]
    assert trial_states(storage), "no trial stored an epoch before the deadline"


@pytest.mark.slow
def test_paused_trials_go_on_as_uninterrupted_ones(cluster, tmp_path: Path, capsys) -> None:
    """With dropout: synchronous halving pauses every trial at each rung (Ray saves it, and
    restores it from its checkpoint in a new actor); every epoch of every trial has the
    validation UF1 and loss of the same epoch in an uninterrupted full grid (a trial depends
    only on its point, the seed and the data), so replaying the grid's curves gives halving's
    cuts. The halving search is interrupted once first: Ray cannot restore its rungs (a
    restored one would leave its paused trials waiting forever), so it starts over. A second
    `mer tune` reads the finished search back."""
    from pipelines import tune as tune_stage

    def tune_in(folder: Path) -> None:
        os.environ["RAY_ADDRESS"] = cluster.address
        try:
            code = tune_stage.run(stage_args(folder / "params.yaml", "tune"))
        finally:
            del os.environ["RAY_ADDRESS"]
        assert code == 0

    histories = {}
    for scheduler in ("fifo", "halving"):
        folder = tmp_path / scheduler
        params = write_params(folder, scheduler=scheduler, grace_period=1, reduction_factor=2)
        raw = yaml.safe_load(params.read_text())
        raw["model"]["dropout"] = 0.5
        params.write_text(yaml.safe_dump(raw))
        if scheduler == "halving":
            interrupt_after_first_epoch(cluster, params)
            capsys.readouterr()
        tune_in(folder)
        if scheduler == "halving":
            restarted = "used synchronous halving, whose rungs cannot be restored; starting it over"
            assert restarted in capsys.readouterr().out
        histories[scheduler] = epoch_metrics(folder)
    halved, grid = histories["halving"], histories["fifo"]

    first = pd.read_parquet(tmp_path / "halving/reports/tune/trials.parquet")
    trial_folders = sorted((tmp_path / "halving/ray_results").glob("tune-*/ray/t???-p???"))
    capsys.readouterr()
    tune_in(tmp_path / "halving")  # the finished search (cut trials left paused by Ray): read
    assert "reading the finished search" in capsys.readouterr().out
    again = pd.read_parquet(tmp_path / "halving/reports/tune/trials.parquet")
    columns = ["label", "epochs_run", "best_val_uf1", "best_val_loss"]
    pd.testing.assert_frame_equal(first[columns], again[columns])
    assert sorted((tmp_path / "halving/ray_results").glob("tune-*/ray/t???-p???")) == trial_folders
    assert len(trial_folders) == 4
    read_back_without_trial_folders(tmp_path / "halving", trial_folders, again, tune_in)
    # rungs at epochs 1 and 2: 4 trials train 1 epoch, 2 go on to 2, 1 to 3 (paused at each rung)
    assert sorted(len(h) for h in halved.values()) == [1, 1, 2, EPOCHS]
    assert all(len(h) == EPOCHS for h in grid.values())
    for label, epochs in halved.items():
        assert epochs == grid[label][: len(epochs)], label
    # so the full grid's curves tell which trials halving cut, and when
    assert {label: len(h) for label, h in halved.items()} == replay(grid, 1, 2, EPOCHS)


def read_back_without_trial_folders(folder: Path, trial_folders, table, tune_in) -> None:
    """Bad case 6: a finished search with one trial folder deleted was read back as complete
    with that trial empty (0 epochs, NaN) and the best chosen among the rest. The record holds
    every trial's metrics, so the folders Ray and the trials wrote can go; a record that lacks
    a trial is one error naming it."""
    from components.errors import MerError
    from pipelines import tune as tune_stage

    store = trial_folders[0].parent.parent
    best = (folder / "reports/tune/best_config.json").read_text()
    shutil.rmtree(trial_folders[0])
    next((store / "trials").glob("*.npz")).unlink()
    tune_in(folder)
    assert not trial_folders[0].exists()  # read back, not trained again
    pd.testing.assert_frame_equal(table, pd.read_parquet(folder / "reports/tune/trials.parquet"))
    assert (folder / "reports/tune/best_config.json").read_text() == best
    record = json.loads((store / "search.json").read_text())
    record["trials"] = record["trials"][1:]
    (store / "search.json").write_text(json.dumps(record))
    with pytest.raises(MerError, match=r"t\d{3}-p\d{3} has no results"):
        tune_stage.run(stage_args(folder / "params.yaml", "tune"))


def epoch_metrics(folder: Path) -> dict[str, list[tuple[float, float]]]:
    """Each trial's (validation UF1, validation loss) per epoch, from its latest MLflow child
    run (by trial label: an interrupted search before left runs of its own)."""
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    client = mlflow.tracking.MlflowClient()
    experiment = mlflow.get_experiment_by_name("test")
    out = {}
    newest_first = mlflow.search_runs(
        [experiment.experiment_id], output_format="list", order_by=["attributes.start_time DESC"]
    )
    for run in newest_first:
        if "trial_id" in run.data.tags and run.data.tags["label"] not in out:
            uf1, loss = (
                {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
                for key in ("val_uf1", "val_loss")
            )
            out[run.data.tags["label"]] = [(uf1[e], loss[e]) for e in sorted(loss)]
    return out


@pytest.mark.parametrize(
    ("search", "scheduler"),
    [("grid", "asha"), ("random", "fifo"), ("optuna", "asha"), ("grid", "halving")],
)
def test_search_algorithms_and_schedulers(search: str, scheduler: str) -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from components.config import Params, TuneConfig
    from components.tuning.halving import SynchronousHalving
    from components.tuning.search import search_setup, trial_slots

    params = Params(
        tune=TuneConfig(search=search, scheduler=scheduler, grace_period=4, num_samples=3)
    )
    slots = trial_slots(params, 5)
    space, algorithm, chosen = search_setup(params, slots, 5)
    kinds = {"asha": ASHAScheduler, "fifo": FIFOScheduler, "halving": SynchronousHalving}
    assert type(chosen) is kinds[scheduler]
    if scheduler != "fifo":
        assert chosen._time_attr == "epochs_done"  # counts epochs across restarts
    if search == "optuna":
        assert slots is None and isinstance(algorithm, OptunaSearch)
        assert space["index"].categories == [0, 1, 2, 3, 4]
        return
    assert algorithm is None and space["slot"] == {"grid_search": list(range(len(slots)))}
    if search == "grid":  # the grid, num_samples times
        assert [s.index for s in slots] == [0, 1, 2, 3, 4] * 3
    else:  # num_samples points drawn from the seed: the same trials every run
        assert len(slots) == 3 and slots == trial_slots(params, 5)
        assert len({s.index for s in slots}) == 3  # without replacement while they last
    assert len({s.key for s in slots}) == len(slots)  # every trial's state file its own


def test_kfold_objective_folds_never_touch_the_holdout() -> None:
    from components.config import Params, TuneConfig
    from components.tuning.search import objective_folds, subject_split

    params = Params(tune=TuneConfig(objective="kfold", kfold=3, holdout_fraction=0.2))
    subjects = [f"casme2/sub{k:02d}" for k in range(1, 11)]
    holdout, search = subject_split(subjects, params)
    folds = objective_folds(search, params)
    assert len(folds) == 3 and len(holdout) == 2
    scored = [s for f in folds for s in f.validation]
    assert sorted(scored) == sorted(search)  # each search subject scored exactly once
    for f in folds:
        assert not set(f.train) & set(f.validation) and not (
            set(f.train) | set(f.validation)
        ) & set(holdout)


@pytest.mark.slow
def test_a_trial_error_a_retry_cannot_cure_ends_the_trial_once(cluster, tmp_path: Path) -> None:
    """A platform limit (any MerError) inside a trial is stored as its one line and the trial
    ends: with max_failures=2, Ray would otherwise run it three times."""
    import ray
    from ray import tune

    from components.config import PreprocessConfig, TrackingConfig, TrainConfig
    from components.errors import MerError, PlatformError
    from components.tuning.search import Interruption, check_complete
    from components.tuning.store import SearchStore
    from components.tuning.trainable import TrialContext, ending_on_user_errors

    limit = "TensorFlow's kernels on this machine cannot train this model: X (export Y=1)"
    calls = tmp_path / "calls"
    calls.mkdir()

    def failing(config, context) -> None:
        (calls / str(time.monotonic_ns())).touch()
        raise PlatformError(limit)

    context = TrialContext(
        points=[{}],
        preprocess=PreprocessConfig(),
        data_version="v",
        train=TrainConfig(),
        tracking=TrackingConfig(),
        folds=(),
        seed=0,
        cpus=1,
        devices=1,
        parent_run_id=None,
        storage=str(tmp_path / "store"),
        search="s",
        slots=None,
        tags={},
    )
    trainable = tune.with_parameters(ending_on_user_errors(failing), context=context)
    ray.init(address=cluster.address)
    try:
        results = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"index": 0},
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "ray"),
                name="fatal",
                failure_config=tune.FailureConfig(max_failures=2),
                verbose=0,
            ),
        ).fit()
    finally:
        ray.shutdown()
    assert len(list(calls.iterdir())) == 1 and not results.errors
    fatal = SearchStore(context.storage, context.search).fatal_messages()
    assert list(fatal.values()) == [limit]
    statuses = {key: (0, "ERROR") for key in fatal}
    errors = [MerError(f"trial {k}: {m}") for k, m in fatal.items()]
    with pytest.raises(
        MerError, match=r"^1 trial\(s\) failed: trial .*a retry cannot cure"
    ) as caught:
        check_complete(statuses, Interruption(), 1, errors)
    assert "\n" not in str(caught.value)
