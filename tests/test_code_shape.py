"""The shape of the production code (issue 38): functions that read in one screen, and no
reliance on private attributes of Keras objects (the next Keras minor may rename them)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = [ROOT / "components", ROOT / "pipelines"]

#: Keras internals the stacked training once reached into
PRIVATE_KERAS = re.compile(
    r"\._(loss_tracker|momentums|velocities|get_variable_index|trainable_variables_indices|"
    r"var_key|apply_weight_decay|use_weight_decay|compile_metrics|compile_loss)\b"
)


def production_files() -> list[Path]:
    return sorted(f for folder in PRODUCTION for f in folder.rglob("*.py"))


def test_no_function_is_longer_than_sixty_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path in production_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long


def test_no_private_keras_attribute_is_used() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in production_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_KERAS.search(line)
    ]
    assert not found, found
