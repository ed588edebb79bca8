"""Tune-stage efficiency: scheduling overhead, trial start-up, and what ASHA saves.

    python -m benchmarks.tune        (needs data/records: run `dvc repro` first)

Runs the params.yaml search twice on the embedded records, in temporary folders: the full grid
with the FIFO scheduler (every trial runs every epoch) and with ASHA. Reports, from the same
run: wall time vs the sum of trial times / concurrent slots (ideal packing), per-trial start-up
(imports, data, model: `setup_s`), and the epochs ASHA saved and whether it found the same best
configuration.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.results import write_section
from pipelines import tune as tune_stage


def run_search(params_path: str, scheduler: str, folder: Path) -> tuple[float, pd.DataFrame, dict]:
    raw = yaml.safe_load(Path(params_path).read_text())
    raw["tune"] = {
        **raw["tune"],
        "scheduler": scheduler,
        "storage_path": str(folder / "ray_results"),
        "reports_dir": str(folder / "reports"),
    }
    raw["tracking"] = {
        **raw.get("tracking", {}),
        "uri": f"sqlite:///{folder}/mlflow.db",
        "artifact_location": str(folder / "artifacts"),
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    start = time.perf_counter()
    code = tune_stage.run(argparse.Namespace(params=str(path), fresh=True))
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{scheduler} search failed")
    table = pd.read_parquet(folder / "reports/trials.parquet")
    best = yaml.safe_load((folder / "reports/best_config.json").read_text())
    return wall, table, best


def setup_times(folder: Path) -> list[float]:
    times = []
    for progress in folder.glob("ray_results/tune-*/*/progress.csv"):
        frame = pd.read_csv(progress)
        if "setup_s" in frame and len(frame):
            times.append(float(frame.setup_s.iloc[0]))
    return times


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    params = yaml.safe_load(Path("params.yaml").read_text())
    slots = int(params["tune"]["max_concurrent_trials"])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scheduler in ("fifo", "asha"):
            folder = Path(tmp) / scheduler
            folder.mkdir()
            wall, table, best = run_search("params.yaml", scheduler, folder)
            results[scheduler] = (wall, table, best, setup_times(folder))
    fifo_wall, fifo, fifo_best, setups = results["fifo"]
    asha_wall, asha, asha_best, _ = results["asha"]
    ideal = fifo.seconds.sum() / slots
    ratio = fifo_wall / ideal
    saved = 1 - asha.epochs_run.sum() / fifo.epochs_run.sum()
    same = fifo_best["label"] == asha_best["label"]
    mean_setup = sum(setups) / len(setups) if setups else float("nan")
    print(
        f"full grid (fifo): wall {fifo_wall:.0f} s vs ideal {ideal:.0f} s (sum of trial times / {slots} slots): {ratio:.2f}x (target <= 1.25)"
    )
    print(
        f"per-trial start-up (imports, data, model): {mean_setup:.1f} s mean over {len(setups)} trials"
    )
    print(
        f"ASHA: {asha.epochs_run.sum()} of {fifo.epochs_run.sum()} epochs ({saved:.0%} saved), wall {asha_wall:.0f} s; "
        f"best {'the same' if same else 'DIFFERENT'}: {asha_best['label']} vs {fifo_best['label']}"
    )
    body = f"""Search from params.yaml (`tune.space`: {len(fifo)} points), embedded records, {slots}
concurrent trial slots (1 CPU each) on a local Ray instance. Trial time = Ray's `time_total_s`
(from trial start, start-up included).

| measurement | value |
| --- | ---: |
| full grid (FIFO): wall time | {fifo_wall:.0f} s |
| sum of trial times / {slots} slots (ideal packing) | {ideal:.0f} s |
| **wall / ideal** | **{ratio:.2f}×** (target ≤ 1.25) |
| per-trial start-up (imports, data, model), mean | {mean_setup:.1f} s |
| ASHA: epochs run vs full grid | {asha.epochs_run.sum()} vs {fifo.epochs_run.sum()} (**{saved:.0%} saved**) |
| ASHA: wall time | {asha_wall:.0f} s |
| best configuration, ASHA vs full grid | {asha_best["label"]} vs {fifo_best["label"]} ({"same" if same else "different"}) |

Per trial (full grid): {", ".join(f"{r.label}: {r.best_val_uf1:.3f}" for r in fifo.itertuples())}.
ASHA: {", ".join(f"{r.label}: {r.epochs_run} epochs, {r.best_val_uf1:.3f}" for r in asha.itertuples())}."""
    write_section("tune", "python -m benchmarks.tune", body)


if __name__ == "__main__":
    main()
