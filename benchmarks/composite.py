"""The development set for benchmarks: shaped and calibrated like the real MEGC 2019 composite (68
subjects, 442 clips, CASME II / SAMM / SMIC sub-datasets in their real layouts;
``synthesize.clips: megc2019_dev``), written and preprocessed once by the real stages into
``.mer/benchmarks/composite`` (reused while its params are unchanged); and params.yaml's
embedded default the same way into ``.mer/benchmarks/embedded``."""

from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / ".mer" / "benchmarks" / "composite"
#: params.yaml's own embedded default (10 subjects, 90 clips), for the budget of ``dvc repro``
EMBEDDED = ROOT / ".mer" / "benchmarks" / "embedded"


def params(folder: Path = FOLDER) -> dict:
    """The project's params.yaml pointed at the composite-size set inside ``folder`` (at
    params.yaml's embedded default, written there, when ``folder`` is :data:`EMBEDDED`)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if folder == EMBEDDED:
        raw["synthesize"] = {**raw["synthesize"], "root": str(folder / "raw")}
        raw["datasets"] = [{"name": "casme2", "root": str(folder / "raw")}]
    else:
        raw["synthesize"] = {
            **raw["synthesize"],
            "clips": "megc2019_dev",
            "root": str(folder / "raw"),
        }
        raw["datasets"] = [
            {"name": name, "root": str(folder / "raw" / sub)}
            for name, sub in (("casme2", "CASME2"), ("samm", "SAMM"), ("smic", "SMIC"))
        ]
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


#: stderr lines of TensorFlow's and absl's start-up chatter, not echoed
NOISE = ("I0000", "W0000", "E0000", "WARNING: All log", "To enable the following", "Instructions")


def mer(params_file: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``mer <args>`` on ``params_file``; its progress (stderr, as lines) is echoed as it
    comes, indented, so a long benchmark shows where it is; its stdout is returned."""
    command = [sys.executable, "-m", "pipelines.cli", "--params", str(params_file), *args]
    environment = {**os.environ, **(env or {}), "MER_PROGRESS": "lines"}
    environment.pop("MLFLOW_TRACKING_URI", None)
    tail: collections.deque[str] = collections.deque(maxlen=60)
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            command, cwd=params_file.parent, env=environment, stdout=out,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for line in process.stderr:
            tail.append(line)
            if line.strip() and not line.startswith(NOISE):
                print(f"    {line.rstrip()}", flush=True)
        returncode = process.wait()
        out.seek(0)
        stdout = out.read()
    if returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stdout[-2000:]}\n{''.join(tail)}")
    return subprocess.CompletedProcess(command, returncode, stdout, "".join(tail))


def code() -> str:
    """The version of the code that makes the set (the generator and the preprocessing)."""
    digest = hashlib.sha1()
    for folder in ("components/datasets", "components/preprocessing", "components/features"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure(folder: Path = FOLDER) -> Path:
    """Synthesize and preprocess the set unless it exists for the same params; returns the
    params file every benchmark run starts from: params.yaml as it is now (model, training,
    evaluation), pointed at the set's records (rewritten on every call: a file kept from when
    the set was built would hold the model and training of that day)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = params(folder)
    paths = ("root", "records_dir", "report")  # not the checkout's own folder
    settings = [
        {k: v for k, v in raw[section].items() if k not in paths}
        for section in ("synthesize", "preprocess")
    ]
    key = hashlib.sha1(yaml.safe_dump([raw["seed"], *settings, code()]).encode()).hexdigest()[:12]
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))  # params.yaml's values of today
    stamp = folder / "ready"
    if stamp.exists() and stamp.read_text() == key:
        return path
    what = "embedded default" if folder == EMBEDDED else "development set (68 subjects, 442 clips)"
    print(f"{what}: synthesize and preprocess...", flush=True)
    mer(path, "synthesize")
    mer(path, "preprocess")
    stamp.write_text(key)
    return path


def kfold_params(name: str, folds: int = 5):
    """The development set's params with grouped ``folds``-fold evaluation and units and
    reports in a folder of the benchmark's own (``name``, beside the set); returns both."""
    from dataclasses import replace

    from components.config import load_params

    base = ensure()
    folder = base.parent / name
    folder.mkdir(exist_ok=True)
    params = load_params(base)
    evaluate = replace(
        params.evaluate,
        protocol="kfold",
        folds=folds,
        units_dir=str(folder / "units"),
        reports_dir=str(folder / "reports"),
    )
    return replace(params, evaluate=evaluate), folder
