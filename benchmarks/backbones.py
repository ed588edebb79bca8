"""Each backbone's LOSO on the embedded default, against the ``dvc repro`` budget.

    python -m benchmarks.backbones                      (ststnet, htnet, rcn)
    python -m benchmarks.backbones --backbones rcn      (any of the flow backbones)
    python -m benchmarks.backbones --alone              (stacked backbones also fold by fold)

On params.yaml's embedded default (synthesized and preprocessed once by the real stages into
``.mer/benchmarks/embedded``), for each backbone: ``mer evaluate`` with params.yaml's protocol
(LOSO), seeds and training, params.yaml's attention type at the backbone's point in
:data:`POINTS`, no stored units. Printed: the command's wall time (start-up, Ray, reports and
MLflow included) against the whole ``dvc repro`` budget of :data:`BUDGET_S` (the evaluate
stage alone must fit in it for a user to swap the backbone), how its folds trained (stacked
units or one by one), and the UF1 — on the embedded set, a check that the backbone learns, not a
ranking. With ``--alone``, a backbone with a stacked form runs again with ``train.stack_folds:
false`` (the same folds one by one): what stacking saves, and that it gives the same result
within the seeds' noise.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import yaml

from benchmarks import composite
from benchmarks.loso import run_stage, stage_params
from benchmarks.results import write_section
from components.models.registry import unstacked_because

#: the point each backbone's attention goes at (its middle map, as benchmarks.models)
POINTS = {
    "ststnet": "fused",
    "off_apexnet": "fused",
    "resnet_small": "block2",
    "htnet": "regions",
    "rcn": "fused",
}
BUDGET_S = 480  # the whole `dvc repro` of a fresh clone on the embedded default: ≤ 8 min
DEFAULT = ("ststnet", "htnet", "rcn")


def backbone_params(base: Path, backbone: str, stacked: bool = True) -> Path:
    """The embedded default's params with ``backbone`` (params.yaml's attention at its point;
    folds one by one unless ``stacked``), units and reports in a folder of its own."""
    path = stage_params(base, f"backbone-{backbone}" + ("" if stacked else "-alone"))
    raw = yaml.safe_load(path.read_text())
    raw["model"] = {**raw["model"], "backbone": backbone, "placement": [POINTS[backbone]]}
    raw["train"] = {**raw["train"], "stack_folds": raw["train"]["stack_folds"] and stacked}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def measure(base: Path, backbone: str, stacked: bool = True) -> dict:
    params_file = backbone_params(base, backbone, stacked)
    folder = params_file.parent
    wall = run_stage(params_file, folder / "reports", folder / "units", "evaluate")
    evaluation = json.loads((folder / "reports/evaluation.json").read_text())
    metrics = json.loads((folder / "reports/metrics.json").read_text())
    return {
        "backbone": backbone,
        "wall": wall,
        "units": evaluation["units"],
        "uf1": metrics["composite"]["uf1"],
        "ensemble": metrics["ensemble"]["uf1"] if "ensemble" in metrics else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backbones")
    parser.add_argument("--backbones", nargs="+", choices=sorted(POINTS), default=list(DEFAULT))
    parser.add_argument("--alone", action="store_true", help="stacked backbones fold by fold too")
    args = parser.parse_args(argv)
    backbones = args.backbones

    base = composite.ensure(composite.EMBEDDED)
    raw = yaml.safe_load(base.read_text())
    load = os.getloadavg()[0]
    rows = []
    runs = [(b, True) for b in backbones]
    if args.alone:
        runs += [(b, False) for b in backbones if not unstacked_because(b)]
    for backbone, stacked in runs:
        print(f"{backbone}: mer evaluate{'' if stacked else ' (fold by fold)'}...", flush=True)
        result = measure(base, backbone, stacked)
        units = result["units"]
        how = (
            f"{units['count']} stacked units"
            if units["stacked"]
            else f"{units['count']} units, one fold each ({units['not_stacked_because']})"
        )
        ensemble = "" if result["ensemble"] is None else f" (ensemble {result['ensemble']:.3f})"
        verdict = "within" if result["wall"] <= BUDGET_S else "OVER"
        print(
            f"{backbone}: LOSO {result['wall']:.0f} s = {result['wall'] / BUDGET_S:.2f}× the "
            f"budget ({verdict}); {how}; UF1 {result['uf1']:.3f}{ensemble}",
            flush=True,
        )
        rows.append(
            f"| `{backbone}` | `{raw['model']['attention']['type']}` at `{POINTS[backbone]}` | "
            f"{result['wall']:.0f} s | {result['wall'] / BUDGET_S:.2f}× ({verdict}) | {how} | "
            f"{result['uf1']:.3f}{ensemble} |"
        )
    table = "\n".join(rows)
    body = f"""The embedded default (params.yaml: {raw["synthesize"]["subjects"]} subjects, 90 clips), `mer evaluate`
with params.yaml's protocol ({raw["evaluate"]["protocol"]}), {raw["evaluate"]["seeds"]} seeds and
training (≤{raw["train"]["epochs"]} epochs), no stored units; wall time of the whole command
against the whole `dvc repro` budget ({BUDGET_S} s on a fresh clone). Load average at the start:
{load:.1f} on {os.cpu_count()} cores.

| backbone | attention | LOSO wall | × budget | folds trained as | UF1, mean of seeds (embedded) |
| --- | --- | ---: | ---: | --- | ---: |
{table}
"""
    write_section(
        "backbones",
        "python -m benchmarks.backbones"
        + ("" if tuple(backbones) == DEFAULT else " --backbones " + " ".join(backbones))
        + (" --alone" if args.alone else ""),
        body,
    )


if __name__ == "__main__":
    main()
