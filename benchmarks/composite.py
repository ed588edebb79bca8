"""A composite-size embedded dataset for benchmarks: 68 subjects, 442 clips with the per-subject
class counts of the real MEGC 2019 composite (``synthesize.clips: megc2019_composite``), written
and preprocessed once by the real stages into ``.mer/benchmarks/composite`` (reused while its
params are unchanged)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / ".mer" / "benchmarks" / "composite"


def params(folder: Path = FOLDER) -> dict:
    """The project's params.yaml pointed at the composite-size set inside ``folder``."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["synthesize"] = {
        **raw["synthesize"],
        "clips": "megc2019_composite",
        "root": str(folder / "raw"),
    }
    raw["datasets"] = [{"name": "casme2", "root": str(folder / "raw")}]
    raw["preprocess"] = {
        **raw["preprocess"],
        "records_dir": str(folder / "records"),
        "report": str(folder / "preprocess.json"),
    }
    raw["tracking"] = {
        "uri": f"sqlite:///{folder}/mlflow.db",
        "artifact_location": str(folder / "artifacts"),
        "experiment": "benchmarks",
    }
    return raw


def mer(params_file: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipelines.cli", "--params", str(params_file), *args]
    environment = {**os.environ, **(env or {})}
    environment.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        command, cwd=params_file.parent, env=environment, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return done


def ensure(folder: Path = FOLDER) -> Path:
    """Synthesize and preprocess the set unless it exists for the same params; returns the
    params file whose records every benchmark run reads."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = params(folder)
    key = hashlib.sha1(
        yaml.safe_dump([raw["seed"], raw["synthesize"], raw["preprocess"]]).encode()
    ).hexdigest()[:12]
    path = folder / "params.yaml"
    stamp = folder / "ready"
    if stamp.exists() and stamp.read_text() == key and path.exists():
        return path
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    print("composite-size set: synthesize (68 subjects, 442 clips) and preprocess...", flush=True)
    mer(path, "synthesize")
    mer(path, "preprocess")
    stamp.write_text(key)
    return path
