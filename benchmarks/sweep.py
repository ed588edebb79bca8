"""The whole question: the compare stage's factorial sweep on the development set.

    python -m benchmarks.sweep            (the full grid: 23 distinct models × 3 seeds × 68 folds)
    python -m benchmarks.sweep --quick    (none, se, spatial, mhsa at fused; 3 seeds)
    python -m benchmarks.sweep --plan     (the full grid's compute floor, projected: no sweep)
    python -m benchmarks.sweep --split    (mhsa@streams with pooled keys among cheap models, 1 seed:
                                           its units split, packing on 2 nodes)

The full grid of issue 25: the 7 attention types at ``streams``, ``fused`` and ``pre_head``,
``mhsa`` with 1, 2 and 4 heads, 3 seeds, LOSO over the development set's 68 subjects
(``compare.space``, ``mer compare``). Printed and written to RESULTS.md:

- the command's wall time;
- its compute floor: the floating-point work the folds actually did (per unit: each fold's
  epochs × (training samples × training FLOPs + validation samples × forward FLOPs) + test
  forward, with each model's own FLOPs), divided by the best steady-state rate of the default
  model's stacked training on this machine (benchmarks.loso's rate measurement);
- the packing of its units onto the CPUs: wall vs max(sum of unit times / CPUs, longest unit).

Units run on a local 2-node Ray cluster (two raylets on this machine, one CPU each, started by
the benchmark: ``ray.cluster_utils.Cluster``), as the issue's packing goal asks; ``--local-ray``
runs them on the default local Ray instead.

``--plan`` projects the full grid's floor without running it: one 1-seed LOSO of the default
model gives the work of a LOSO and the rate; each model of the grid is scaled by its training
FLOPs per sample over the default's (the same epochs assumed), times the seeds; and again with
``mhsa``'s keys pooled (``max_keys``) where a map is larger than 100 positions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from benchmarks import composite
from benchmarks.loso import RATE_BATCH, run_stage, stage_params, steady_rate, units_of, work_done
from benchmarks.profile import model_flops
from benchmarks.results import write_section

FULL = {
    "attention": ["none", "se", "eca", "channel", "spatial", "cbam", "mhsa"],
    "placement": [["streams"], ["fused"], ["pre_head"]],
    "heads": [1, 2, 4],
}
POOLED_KEYS = 100  # --plan's second grid: mhsa's keys pooled to at most this many
QUICK = {"attention": ["none", "se", "spatial", "mhsa"], "placement": [["fused"]], "heads": [2]}
SPLIT = {
    "attention": ["none", "spatial", "mhsa"],
    "placement": [["streams"], ["fused"]],
    "heads": [2],
    "max_keys": [POOLED_KEYS],
}
#: --quick, --split and the full grid: (space, seeds, what it is, RESULTS section, flag)
RUNS = {
    "quick": (QUICK, 3, "quick: none, se, spatial, mhsa at fused", "sweep", " --quick"),
    "split": (
        SPLIT,
        1,
        f"a costly variant split: none, spatial and mhsa (max_keys {POOLED_KEYS}) at streams / "
        "fused",
        "sweep: a costly variant split",
        " --split",
    ),
    "full": (
        FULL,
        3,
        "the full grid: 7 types × streams / fused / pre_head, mhsa with 1 / 2 / 4 heads",
        "sweep",
        "",
    ),
}


@contextlib.contextmanager
def two_nodes(wanted: bool) -> Iterator[str | None]:
    """The address of a local Ray cluster of two nodes with one CPU each (None: not wanted)."""
    if not wanted:
        yield None
        return
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep")
    parser.add_argument("--quick", action="store_true", help="4 types at fused, 3 seeds")
    parser.add_argument("--plan", action="store_true", help="project the full grid's floor")
    parser.add_argument(
        "--split", action="store_true", help="mhsa@streams (pooled keys) among cheap models, 1 seed"
    )
    parser.add_argument(
        "--local-ray", action="store_true", help="the default local Ray, not 2 nodes"
    )
    args = parser.parse_args(argv)
    base = composite.ensure()
    cores = os.cpu_count() or 1
    if args.plan:
        plan(base, cores)
        return
    run = "quick" if args.quick else "split" if args.split else "full"
    space, seeds, what, section, flag = RUNS[run]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raw = yaml.safe_load(base.read_text())
        raw["compare"] = {
            **raw["compare"],
            "space": {**raw["compare"]["space"], **space},
            "seeds": seeds,
            "reports_dir": str(folder / "reports/compare"),
        }
        raw["evaluate"] = {**raw["evaluate"], "units_dir": str(folder / "units")}
        raw["tracking"] = {"uri": f"sqlite:///{folder}/mlflow.db",
                           "artifact_location": str(folder / "artifacts"), "experiment": "sweep"}  # fmt: skip
        params = folder / "params.yaml"
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        with two_nodes(not args.local_ray) as address:
            started = time.perf_counter()
            composite.mer(params, "compare", env={"RAY_ADDRESS": address} if address else None)
            wall = time.perf_counter() - started
        units = units_of(folder / "units")
        found = json.loads((folder / "reports/compare/comparison.json").read_text())
        shutil.copy(folder / "reports/compare/forest.png", base.parent / "sweep_forest.png")
    flops_of: dict[str, tuple[float, float]] = {}
    work = 0.0
    for unit in units:
        key = json.dumps(unit.spec.variant.as_dict(), sort_keys=True)
        if key not in flops_of:
            flops_of[key] = model_flops(unit.spec.variant.as_dict())
        work += work_done([unit], *flops_of[key])[0]
    settings = yaml.safe_load(base.read_text())
    per_fold = settings["evaluate"]["folds_per_unit"]
    seeds_per_unit = min(seeds, settings["evaluate"]["seeds_per_unit"])
    where = (
        f"the default local Ray over {cores} cores"
        if args.local_ray
        else "a local 2-node Ray cluster (one CPU each)"
    )
    default_train = flops_of.get(json.dumps(settings["model"], sort_keys=True), (0, 0))[1] or max(
        t for _, t in flops_of.values()
    )
    rate = best_rate(per_fold, cores, base) * default_train
    floor = work / rate
    seconds = [u.seconds for u in units]
    ideal = max(sum(seconds) / cores, max(seconds))
    models = len(found["rows"])
    lines = [
        f"sweep of {models} models × {seeds} seed(s) ({len(units)} units): wall {wall / 60:.1f} min",
        f"floor {floor / 60:.1f} min ({work / 1e12:.1f} TFLOP at {rate / 1e9:.1f} GFLOP/s): "
        f"ratio {wall / floor:.2f}×",
        f"packing: units sum {sum(seconds) / 60:.1f} min, longest {max(seconds):.0f} s; ideal "
        f"{ideal / 60:.1f} min on {cores} cores: {wall / ideal:.2f}×",
    ]
    print("\n".join(lines))
    calls = sum(r.get("verdict_adjusted") in ("better", "worse") for r in found["rows"])
    layout = "; ".join(
        f"`{label}` {len(mine)} of {max(len(u.spec.seeds) * len(u.spec.folds) for u in mine)}"
        f" member(s), longest {max(u.seconds for u in mine):.0f} s"
        for label, mine in units_by_model(units).items()
    )
    body = f"""Development set (68 subjects, 442 clips), LOSO, `mer compare` of {models} models
({what}),
{seeds} seed(s), units of up to {per_fold} stacked folds × {seeds_per_unit} seed(s) (a costly
model's cut smaller), on {where}. Units per model: {layout}.

| measurement | value |
| --- | ---: |
| wall time | {wall / 60:.1f} min (goal for the full grid: ≤ 60 min) |
| floating-point work done | {work / 1e12:.1f} TFLOP |
| best steady-state rate (default model, stacked: shared batch or a batch per fold, batch {RATE_BATCH}) | {rate / 1e9:.1f} GFLOP/s |
| compute floor | {floor / 60:.1f} min |
| **wall / floor** | **{wall / floor:.2f}×** (goal ≤ 1.6×) |
| units: sum, longest | {sum(seconds) / 60:.1f} min, {max(seconds):.0f} s |
| **wall / ideal packing on {cores} CPUs** | **{wall / ideal:.2f}×** (goal ≤ 1.15×) |
| models called better or worse after adjustment | {calls} of {models - 1} |
"""
    write_section(section, "python -m benchmarks.sweep" + flag, body)


def units_by_model(units: list) -> dict[str, list]:
    """The units of each model (by label), in the order the models first appear."""
    found: dict[str, list] = {}
    for unit in units:
        found.setdefault(unit.spec.variant.label, []).append(unit)
    return found


def best_rate(per_fold: int, cores: int, base: Path) -> float:
    """Samples per second of the default model's best stacked training (a shared batch, or a
    batch per fold), one process per core."""
    return max(
        steady_rate(mode, per_fold, 1, cores, base) for mode in ("stacked", "stacked-per-fold")
    )


def grid_models(base: Path, max_keys: int | None = None) -> list:
    """The full grid's distinct models, as the compare stage expands ``compare.space`` (with
    ``max_keys``: mhsa's keys pooled where a map has more positions)."""
    import dataclasses

    from components.config import load_params
    from components.models.space import model_variants

    params = load_params(base)
    space = dataclasses.replace(
        params.compare.space,
        attention=tuple(FULL["attention"]),
        placement=tuple(tuple(p) for p in FULL["placement"]),
        heads=tuple(FULL["heads"]),
        max_keys=(max_keys,),
    )
    return model_variants(space, params.model.dropout, params.preprocess.input_sizes())


def plan(base: Path, cores: int) -> None:
    """The full grid's projected floor (see the module's docstring)."""
    from components.config import load_params

    params = load_params(base)
    default_forward, default_train = model_flops(params.model.as_dict())
    stage = stage_params(base, "sweep-plan", seeds=1)
    wall = run_stage(stage, stage.parent / "reports", stage.parent / "units", "evaluate")
    work, _ = work_done(units_of(stage.parent / "units"), default_forward, default_train)
    rate = best_rate(params.evaluate.folds_per_unit, cores, base) * default_train
    loso_floor = work / rate
    relative = {m.label: model_flops(m.as_dict())[1] / default_train for m in grid_models(base)}
    pooled = {
        m.label: model_flops(m.as_dict())[1] / default_train
        for m in grid_models(base, POOLED_KEYS)
        if m.attention.max_keys is not None
    }
    rows = [
        f"| `{label}` | {r:.2f}× | {3 * r * loso_floor / 60:.1f} min |"
        for label, r in {**relative, **pooled}.items()
    ]
    print("\n".join(rows), flush=True)
    floor = 3 * loso_floor * sum(relative.values())
    streams = 3 * loso_floor * sum(r for label, r in relative.items() if "mhsa@streams" in label)
    heavy = sum("mhsa@streams" in label for label in relative)
    with_pooled = floor - streams + 3 * loso_floor * sum(pooled.values())
    lines = [
        f"default model's LOSO (1 seed): wall {wall:.0f} s, floor {loso_floor:.0f} s "
        f"({work / 1e12:.2f} TFLOP at {rate / 1e9:.1f} GFLOP/s)",
        f"full grid ({len(relative)} models × 3 seeds): projected floor {floor / 3600:.1f} h "
        f"({floor / 60:.0f} min; mhsa@streams {streams / 60:.0f} min of it)",
        f"with max_keys {POOLED_KEYS} (mhsa@streams pooled): {with_pooled / 60:.0f} min",
    ]
    print("\n".join(lines))
    verdict = "below" if min(floor, with_pooled) > 3600 else "above"
    body = f"""Development set (68 subjects, 442 clips). One 1-seed LOSO of params.yaml's model
(`{params.model.label}`): wall {wall:.0f} s, its work {work / 1e12:.2f} TFLOP, the best
steady-state rate of its stacked training {rate / 1e9:.1f} GFLOP/s (batch {RATE_BATCH}, one
process per core): **a LOSO's floor {loso_floor:.0f} s**. Each model of the full grid costs its
training FLOPs per sample over the default's (TensorFlow's profiler) × that floor × 3 seeds,
assuming the same epochs (early stopping varies them by model); the last {len(pooled)} rows are
the `streams` models of `mhsa` with `max_keys: {POOLED_KEYS}` (keys/values pooled 3×3, PVT-style):

| model | training FLOPs / default's | projected floor, 3 seeds |
| --- | ---: | ---: |
{chr(10).join(rows)}

**Projected floor of the full grid: {floor / 3600:.1f} h** on {cores} cores
({floor / 60:.0f} min; the {heavy} mhsa models at `streams` — attention over each stream's
full-resolution map — are {streams / 60:.0f} min of it; without them {(floor - streams) / 60:.0f}
min for {len(relative) - heavy} models). **With `max_keys: {POOLED_KEYS}`: {with_pooled / 60:.0f} min.**
The issue's goal of ≤ 60 min for this grid is {verdict} its floor on this machine.
"""
    write_section("sweep: plan", "python -m benchmarks.sweep --plan", body)


if __name__ == "__main__":
    main()
