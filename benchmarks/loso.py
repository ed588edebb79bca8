"""LOSO at the composite's scale: wall time vs its compute floor, and compare vs ideal packing.

    python -m benchmarks.loso            (builds .mer/benchmarks/composite on first use)

On the development set (68 subjects, 442 clips, calibrated like the real composite:
``synthesize.clips: megc2019_dev``), in one run:

1. ``mer evaluate`` (LOSO, 68 folds, one seed) of params.yaml's model and training — the default
   ``ststnet`` training — with no stored units: the command's wall time, start-up included
   (best of two runs: this VM's speed shifts for minutes at a time).
2. Its compute floor: the floating-point work of the training actually done (per fold: epochs
   run × (training samples × training FLOPs + validation samples × forward FLOPs) + test
   forward), divided by the best steady-state FLOP rate this machine reaches for the same model
   at a large batch (batch 256): the ordinary Keras model on both cores, or its fold-stacked form
   (one shared batch, or a batch per fold) in one process per core; FLOPs are TensorFlow's profiler count (a multiply-add = 2).
3. ``mer compare`` of 4 attention types (one seed): wall time vs ideal packing of its measured
   units onto the machine's cores (max(sum / cores, longest unit)).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks import composite
from benchmarks.profile import model_flops
from benchmarks.results import write_section
from components.config import load_params

ROOT = Path(__file__).resolve().parents[1]
COMPARE_TYPES = ("none", "se", "spatial", "cbam")
RATE_BATCH = 256
LOSO_REPEATS = 2


def run_stage(params_file: Path, reports: Path, units: Path, *args: str) -> float:
    """Wall seconds of ``mer <args>`` with fresh units and reports folders."""
    for folder in (reports, units):
        shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    composite.mer(params_file, *args)
    return time.perf_counter() - start


def stage_params(base: Path, name: str, **evaluate) -> Path:
    raw = yaml.safe_load(base.read_text())
    folder = base.parent / name
    folder.mkdir(exist_ok=True)
    raw["evaluate"] = {
        **raw["evaluate"],
        "units_dir": str(folder / "units"),
        "reports_dir": str(folder / "reports"),
        **evaluate,
    }
    raw["compare"] = {
        **raw["compare"],
        "space": {
            **raw["compare"]["space"],
            "attention": list(COMPARE_TYPES),
            "placement": [["fused"]],
        },
        "reports_dir": str(folder / "reports/compare"),
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def units_of(folder: Path) -> list:
    from components.evaluation.units import UnitStore

    return UnitStore(folder).stored()


RATE_SCRIPT = r"""
import json, os, sys, time
mode, folds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import tensorflow as tf
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
import numpy as np, keras
from components.config import load_params
from components.models import build_model
from components.models.stacked import ststnet
params = load_params(sys.argv[4])
cfg, sizes = params.model, {"flow_size": 28, "clip_frames": 8, "clip_size": 64}
n, batch = 2048, 256
rng = np.random.default_rng(0)
x = rng.uniform(size=(n, 28, 28, 3)).astype("float32"); y = rng.integers(0, 3, n)
if mode.startswith("stacked"):
    model = ststnet(cfg, folds, sizes, 3); model.initialise(list(range(folds)))
    if mode == "stacked-per-fold":  # each fold its own batch of `batch`, rows with their
        # patch statistics (the training path)
        from components.models.patch_stats import patch_stats_table
        n //= 2
        order = np.stack([rng.permutation(n) for _ in range(folds)], 1)
        stats = patch_stats_table(x[:n], "flow", False, 0)[:, 0]
        data = tf.data.Dataset.from_tensor_slices(((x[order], np.ones(order.shape, "float32"), stats[order]), y[order]))
    else:  # one shared batch for every fold
        data = tf.data.Dataset.from_tensor_slices(((x, np.ones((n, folds), "float32")), y))
    from components.training.fold_models import FoldAdam
    model.compile(optimizer=FoldAdam(folds, learning_rate=1e-3), steps_per_execution=n // batch)
else:
    model = build_model(cfg, **sizes)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", steps_per_execution=n // batch)
data = data.batch(batch).cache()
model.fit(data, epochs=1, verbose=0)
start = time.perf_counter(); model.fit(data, epochs=4, verbose=0); seconds = time.perf_counter() - start
print(json.dumps({"samples_per_s": 4 * n / seconds}))
"""


def steady_rate(mode: str, folds: int, threads: int, processes: int, params_file: Path) -> float:
    """Model-samples per second (a stacked sample counts once per fold) over ``processes``
    concurrent processes."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", RATE_SCRIPT, mode, str(folds), str(threads), str(params_file)]
    running = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for _ in range(processes)
    ]
    rates = [
        json.loads(p.communicate()[0].strip().splitlines()[-1])["samples_per_s"] for p in running
    ]
    return sum(rates) * folds


def work_done(units: list, forward: float, train: float) -> tuple[float, int]:
    """FLOPs of the training and selection the folds actually did, and the sample-passes."""
    total, passes = 0.0, 0
    for unit in units:
        for fold in unit.folds:
            total += fold.epochs_run * (
                fold.train_samples * train + fold.validation_samples * forward
            )
            total += len(fold.predictions) * forward
            passes += fold.epochs_run * fold.train_samples
    return total, passes


def calibration_lines(metrics: dict, units: list, epochs: int) -> list[str]:
    """The development set's calibration targets, checked on a LOSO: composite UF1 in
    0.62–0.78, a per-subset spread of at least 0.15, folds that stop early."""
    composite_uf1 = metrics["composite"]["uf1"]
    subsets = {k: v["uf1"] for k, v in metrics.items() if k in ("casme2", "samm", "smic")}
    spread = max(subsets.values()) - min(subsets.values()) if subsets else 0.0
    runs = [f.epochs_run for u in units for f in u.folds]
    early = sum(r < epochs for r in runs)

    def mark(ok: bool) -> str:
        return "within the target" if ok else "OUTSIDE the target"

    return [
        f"calibration: composite UF1 {composite_uf1:.3f} ({mark(0.62 <= composite_uf1 <= 0.78)} "
        "0.62–0.78)",
        "calibration: per subset "
        + ", ".join(f"{k} {v:.3f}" for k, v in subsets.items())
        + f"; spread {spread:.3f} ({mark(spread >= 0.15)} ≥ 0.15)",
        f"calibration: {early} of {len(runs)} folds stopped early ({mark(early > len(runs) / 2)}"
        f" most), after {sum(runs) / max(len(runs), 1):.1f} epochs on average",
    ]


def main() -> None:
    base = composite.ensure()
    cores = os.cpu_count() or 1
    params = yaml.safe_load(base.read_text())
    label = f"{params['model']['backbone']}/{params['model']['attention']['type']}@{'+'.join(params['model']['placement'])}"

    evaluate_params = stage_params(base, "evaluate", seeds=1)  # one seed: 4 units, as recorded
    # this VM's speed shifts for minutes at a time (the same unit: 25 s or 43 s): best of two
    walls = [
        run_stage(
            evaluate_params,
            evaluate_params.parent / "reports",
            evaluate_params.parent / "units",
            "evaluate",
        )
        for _ in range(LOSO_REPEATS)
    ]
    wall = min(walls)
    units = units_of(evaluate_params.parent / "units")
    metrics = json.loads((evaluate_params.parent / "reports/metrics.json").read_text())
    forward, train = model_flops(load_params(base).model.as_dict())
    flops, passes = work_done(units, forward, train)
    per_fold = params["evaluate"]["folds_per_unit"]
    rates = {
        f"ordinary model, 1 process × {cores} threads": steady_rate("ordinary", 1, 0, 1, base)
        * train,
        f"ordinary model, {cores} processes × 1 thread": steady_rate("ordinary", 1, 1, cores, base)
        * train,
        f"stacked ({per_fold} folds, shared batch), {cores} processes × 1 thread": steady_rate(
            "stacked", per_fold, 1, cores, base
        )
        * train,
        f"stacked ({per_fold} folds, a batch per fold), {cores} processes × 1 thread": steady_rate(
            "stacked-per-fold", per_fold, 1, cores, base
        )
        * train,
    }
    best_name, best_rate = max(rates.items(), key=lambda kv: kv[1])
    floor = flops / best_rate
    unit_seconds = [u.seconds for u in units]

    compare_params = stage_params(base, "compare")
    compare_wall = run_stage(
        compare_params, compare_params.parent / "reports", compare_params.parent / "units",
        "compare", "--seeds", "1",
    )  # fmt: skip
    compare_units = units_of(compare_params.parent / "units")
    seconds = [u.seconds for u in compare_units]
    ideal = max(sum(seconds) / cores, max(seconds))

    calibration = calibration_lines(metrics, units, params["train"]["epochs"])
    lines = [
        *calibration,
        f"LOSO of {label} (68 folds, {len(units)} units): wall {wall:.0f} s; floor {floor:.0f} s "
        f"({flops / 1e12:.2f} TFLOP at {best_rate / 1e9:.1f} GFLOP/s, {best_name}); ratio {wall / floor:.2f}×",
        f"compare of {len(COMPARE_TYPES)} types ({len(compare_units)} units): wall {compare_wall:.0f} s vs ideal packing "
        f"{ideal:.0f} s: {compare_wall / ideal:.2f}×",
    ]
    print("\n".join(lines))
    rate_rows = "\n".join(f"| {name} | {rate / 1e9:.1f} GFLOP/s |" for name, rate in rates.items())
    calibration_text = "\n".join(f"- {line}" for line in calibration)
    body = f"""Development set: 68 subjects, 442 clips (the real MEGC 2019 composite's subjects and
classes, CASME II / SAMM / SMIC in their layouts; `synthesize.clips: megc2019_dev`), 28×28×3 flow.
Its calibration, checked on this run's LOSO:

{calibration_text}

params.yaml's
model and training: `{label}`, batch {params["train"]["batch_size"]}, ≤{params["train"]["epochs"]} epochs,
patience {params["train"]["patience"]}, epoch chosen on validation subjects per fold; units of
{per_fold} stacked folds on a local Ray over {cores} cores. Wall times are whole `mer` commands
(start-up, Ray, reports and MLflow included).

| measurement | value |
| --- | ---: |
| **LOSO wall time** (`mer evaluate`, 68 folds, 1 seed; best of {LOSO_REPEATS}) | **{wall:.0f} s** (runs: {", ".join(f"{w:.0f}" for w in walls)} s; goal ≤ 120 s; 1397 s before the stacked units) |
| units of the last run (each {per_fold} folds, one core) | {", ".join(f"{s:.0f}" for s in unit_seconds)} s |
| training done: sample-passes (training) | {passes:,} |
| FLOPs per sample: forward / training step | {forward / 1e6:.3f} / {train / 1e6:.3f} MFLOP |
| floating-point work of the LOSO | {flops / 1e12:.2f} TFLOP |
{rate_rows}
| compute floor (work ÷ best rate) | {floor:.0f} s |
| **LOSO wall / floor** | **{wall / floor:.2f}×** (goal ≤ 2×) |
| composite UF1 / UAR (this run) | {metrics["composite"]["uf1"]:.4f} [{metrics["composite"]["uf1_ci_low"]:.3f}, {metrics["composite"]["uf1_ci_high"]:.3f}] / {metrics["composite"]["uar"]:.4f} |
| `mer compare` {", ".join(COMPARE_TYPES)} (1 seed): wall | {compare_wall:.0f} s |
| its units: sum, longest | {sum(seconds):.0f} s, {max(seconds):.0f} s |
| ideal packing on {cores} cores (max(sum/{cores}, longest)) | {ideal:.0f} s |
| **compare wall / ideal packing** | **{compare_wall / ideal:.2f}×** (goal ≤ 1.15×) |

The floor's rate is the best of the four steady-state measurements (same model, batch
{RATE_BATCH}); the stacked form with a batch per fold is the project's own training path, so the
ratio measures what the protocol costs beyond pure training arithmetic: small batches
({params["train"]["batch_size"]} per fold), padding rows (folds of a unit differ in size), epochs
of folds that stopped early while others in their unit went on, validation every epoch,
start-up and reporting. This machine is a 2-vCPU
VM whose speed shifts for minutes at a time; the LOSO is run twice and the faster run is kept;
the rates are measured after it, so a slow phase during the rates lowers the ratio and one during
both LOSO runs raises it. (Units that took 43–45 s instead of 25–30 s in earlier runs were not
the VM: tf.data's autotuning thread stalled the end of `fit`; the training streams now run
without it.)"""
    write_section("loso", "python -m benchmarks.loso", body)


if __name__ == "__main__":
    main()
