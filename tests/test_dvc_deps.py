"""dvc.yaml is complete: each stage's code deps cover every project module the stage can import,
and its declared outputs are exactly what its artifact class writes."""

from pathlib import Path

import pytest
import yaml

from components.artifacts import Comparison, Evaluation, Records, Registration, TuneResult
from components.config import Params
from tools.import_closure import closure

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def entries(items: list) -> list[str]:
    return [next(iter(i)) if isinstance(i, dict) else i for i in items]


def uncovered(stage: str, deps: list[str]) -> list[str]:
    """Modules the stage can import that no dep (a file, or a folder above it) covers."""
    needed = closure(ROOT / "pipelines" / f"{stage}.py") | {Path("pipelines/cli.py")}
    return sorted(
        str(m)
        for m in needed
        if not any(str(m) == d or str(m).startswith(d.rstrip("/") + "/") for d in deps)
    )


@pytest.mark.parametrize("stage", list(STAGES))
def test_deps_cover_every_module_the_stage_imports(stage: str) -> None:
    missing = uncovered(stage, STAGES[stage]["deps"])
    assert not missing, f"dvc.yaml stage {stage!r} misses deps on: {', '.join(missing)}"


def test_the_check_fails_when_a_dep_is_removed() -> None:
    deps = list(STAGES["evaluate"]["deps"])
    assert not uncovered("evaluate", deps)
    deps.remove("components/records")
    assert "components/records/store.py" in uncovered("evaluate", deps)
    deps = [d for d in STAGES["tune"]["deps"] if d != "components/config.py"]
    assert uncovered("tune", deps) == ["components/config.py"]


def test_the_registry_entries_are_deps_of_the_stages_that_build_models() -> None:
    """Layers are imported by name from the registry: the closure must still follow them."""
    assert Path("components/models/stacked.py") in closure(ROOT / "pipelines/evaluate.py")
    assert Path("components/attention/spatial.py") in closure(ROOT / "pipelines/register.py")
    assert Path("components/attention/spatial.py") not in closure(ROOT / "pipelines/synthesize.py")


def declared(stage: str) -> set[str]:
    spec = STAGES[stage]
    return set(
        entries(spec.get("outs", []))
        + entries(spec.get("metrics", []))
        + entries(spec.get("plots", []))
    )


def test_declared_outputs_are_what_the_artifact_classes_write() -> None:
    params = Params()
    records = Records.of(params)
    expected = {
        "synthesize": {params.synthesize.root},
        "preprocess": {str(records.folder), str(records.report)},
        "tune": {str(TuneResult.folder(params) / f) for f in TuneResult.FILES}
        | {str(TuneResult.metrics_path(params))},
        "evaluate": {str(Evaluation.folder(params) / f) for f in Evaluation.OUTPUTS},
        "register": {str(Registration.folder(params) / f) for f in Registration.FILES},
        "compare": {str(Comparison.folder(params) / f) for f in Comparison.FILES},
    }
    assert set(STAGES) == set(expected)
    for stage, paths in expected.items():
        assert declared(stage) == paths, stage


def test_metrics_files_hold_numbers_only() -> None:
    """`dvc metrics show` shows numbers: strings (run ids, reasons) live in other files."""
    for stage in STAGES.values():
        for path in entries(stage.get("metrics", [])):
            file = ROOT / path
            if file.exists():
                import json

                def numbers(value) -> bool:
                    if isinstance(value, dict):
                        return all(numbers(v) for v in value.values())
                    return isinstance(value, int | float) and not isinstance(value, bool)

                assert numbers(json.loads(file.read_text())), path


def test_stage_runs_are_short_orchestration() -> None:
    """Bookkeeping lives in components: every stage's run() is under 60 lines."""
    import ast

    for path in sorted((ROOT / "pipelines").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name == "run":
                assert node.end_lineno - node.lineno + 1 < 60, path.name
