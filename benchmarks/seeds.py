"""Seeds inside units: a 3-seed LOSO with each seed its own units vs the seeds stacked together.

    python -m benchmarks.seeds
    python -m benchmarks.seeds --counts 3 10 [--embedded]   # what more seeds cost

On the development set (68 subjects, 442 clips), ``mer evaluate`` of params.yaml's model with
its seeds (3), once with ``evaluate.seeds_per_unit: 1`` (3 seeds × 4 blocks of 17 folds = 12
units) and once with ``seeds_per_unit: 3`` (4 units of 3 seeds × 17 folds), in alternating
order (``--repeats`` pairs), no stored units. Printed and written to RESULTS.md: each run's wall
time, units, their summed seconds, the compute floor of the work done (benchmarks.loso's: the
work over the best steady-state rate measured in the same run), and the ratios. With
``--counts``: the same LOSO with each number of seeds (units as params.yaml lays them out), its
wall time against the first count's, on the development set or (``--embedded``) on this
checkout's embedded records (after ``dvc repro``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import yaml

from benchmarks import composite
from benchmarks.loso import run_stage, stage_params, steady_rate, units_of, work_done
from benchmarks.profile import model_flops
from benchmarks.results import write_section
from components.config import load_params

WIDTHS = (1, 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seeds")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs (alternating)")
    parser.add_argument("--counts", type=int, nargs="+", help="seed counts to cost instead")
    parser.add_argument("--embedded", action="store_true", help="on the embedded records")
    args = parser.parse_args(argv)
    if args.counts:
        base = embedded_base() if args.embedded else composite.ensure()
        return cost_of_counts(args.counts, base, args.embedded)
    base = composite.ensure()
    cores = os.cpu_count() or 1
    params = load_params(base)
    seeds, per_fold = params.evaluate.seeds, params.evaluate.folds_per_unit
    forward, train = model_flops(params.model.as_dict())
    runs: dict[int, list[dict]] = {w: [] for w in WIDTHS}
    for repeat in range(args.repeats):
        for width in WIDTHS if repeat % 2 == 0 else WIDTHS[::-1]:
            stage = stage_params(base, f"seeds-{width}", seeds=seeds, seeds_per_unit=width)
            wall = run_stage(stage, stage.parent / "reports", stage.parent / "units", "evaluate")
            units = units_of(stage.parent / "units")
            flops, _ = work_done(units, forward, train)
            metrics = json.loads((stage.parent / "reports/metrics.json").read_text())
            runs[width].append(
                {
                    "wall": wall,
                    "units": len(units),
                    "unit_seconds": sum(u.seconds for u in units),
                    "longest": max(u.seconds for u in units),
                    "flops": flops,
                    "uf1": metrics["composite"]["uf1"],
                }
            )
            print(f"seeds_per_unit {width}: wall {wall:.0f} s, {len(units)} units", flush=True)
    rate = steady_rate("stacked", per_fold, 1, cores, base) * train
    best = {w: min(r, key=lambda run: run["wall"]) for w, r in runs.items()}
    rows = []
    for width, run in best.items():
        floor = run["flops"] / rate
        walls = ", ".join(f"{r['wall']:.0f}" for r in runs[width])
        rows.append(
            f"| {width} | {run['units']} | {walls} s | "
            f"{run['unit_seconds']:.0f} s, {run['longest']:.0f} s | {floor:.0f} s | "
            f"**{run['wall'] / floor:.2f}×** | {run['uf1']:.4f} |"
        )
    speedup = best[WIDTHS[0]]["wall"] / best[WIDTHS[-1]]["wall"]
    lines = [*rows, f"seeds inside units: {speedup:.2f}× faster (best against best)"]
    print("\n".join(lines))
    label = params.model.label
    body = f"""Development set (68 subjects, 442 clips), `mer evaluate` LOSO of `{label}` with
{seeds} seeds, units of {per_fold} folds on a local Ray over {cores} cores, no stored units; the
two layouts run alternately ({args.repeats} pair(s)). Floor: the work the folds did (as
benchmarks.loso counts it) over the best steady-state rate of the stacked model measured in this
run ({rate / 1e9:.1f} GFLOP/s, {per_fold} folds, batch 256, one process per core).

| seeds per unit | units | wall (runs) | units: sum, longest | floor | wall / floor | UF1 (mean of seeds) |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

**Seeds inside units: {speedup:.2f}×** faster, best against best. The UF1s differ only by the
float rounding of a wider stack (tests/test_units.py checks ≥ 95% of the predictions agree).
"""
    write_section("seeds inside units", "python -m benchmarks.seeds", body)


def embedded_base() -> Path:
    """params.yaml in a scratch folder, pointed at this checkout's embedded records."""
    folder = Path(tempfile.mkdtemp(prefix="mer-seeds-"))
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["preprocess"]["records_dir"] = str(Path(raw["preprocess"]["records_dir"]).resolve())
    raw["tracking"] = {**raw["tracking"], "uri": f"sqlite:///{folder}/mlflow.db",
                       "artifact_location": str(folder / "mlartifacts")}  # fmt: skip
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def cost_of_counts(counts: list[int], base: Path, embedded: bool) -> None:
    """Wall time and UF1 of one LOSO per seed count; written to RESULTS.md."""
    params = load_params(base)
    rows, first = [], None
    for count in counts:
        stage = stage_params(base, f"seeds-x{count}", seeds=count)
        wall = run_stage(stage, stage.parent / "reports", stage.parent / "units", "evaluate")
        units = units_of(stage.parent / "units")
        uf1 = json.loads((stage.parent / "reports/metrics.json").read_text())["composite"]["uf1"]
        first = first or (count, wall)
        ratio = wall / first[1]
        rows.append(
            f"| {count} | {len(units)} | {wall:.0f} s | **{ratio:.2f}×** "
            f"({count / first[0]:.2f}× the seeds) | {uf1:.4f} |"
        )
        print(rows[-1], flush=True)
    data = "the embedded records" if embedded else "the development set"
    body = f"""`mer evaluate` LOSO of `{params.model.label}` on {data} ({len(params.datasets)}
dataset(s)), each seed count in one run with no stored units, seeds stacked
{params.evaluate.seeds_per_unit} a unit (`evaluate.seeds_per_unit`), process start included;
`compare.seeds: auto` trains its further seeds the same way.

| seeds | units | wall | against the first | UF1 (mean of seeds) |
| ---: | ---: | ---: | --- | ---: |
{chr(10).join(rows)}
"""
    command = "python -m benchmarks.seeds --counts " + " ".join(map(str, counts))
    command += " --embedded" if embedded else ""
    write_section("seeds: what more cost", command, body)


if __name__ == "__main__":
    main()
