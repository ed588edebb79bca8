"""Searches that stop and go on: a search interrupted (Ctrl-C, SIGTERM) exits non-zero and the
next `mer tune` resumes it; synchronous halving's paused trials go on exactly as uninterrupted
ones; a finished search is read back from its record. On the real local two-node Ray cluster."""

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

from components.tuning.halving import replay
from tests.builders import crafted_pickle, stage_args
from tests.test_tune import EPOCHS, write_params

ROOT = Path(__file__).parent.parent


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
