"""Which project modules a stage imports (statically, including imports inside functions).

    python tools/import_closure.py pipelines/evaluate.py        # the files
    python tools/import_closure.py pipelines/evaluate.py --dvc  # as dvc.yaml deps
    python tools/import_closure.py --update-dvc                 # rewrite dvc.yaml's code deps

``tests/test_dvc_deps.py`` uses :func:`closure` to check that every stage's ``deps`` in
``dvc.yaml`` cover every module the stage can import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "pipelines")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of module ``name`` (``a.b`` → a/b.py or a/b/__init__.py), if it is ours."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


LOADER = "components.imports.load_target"  # imports a registry's "module:object" strings


def _statements(path: Path) -> tuple[set[str], set[str]]:
    """(module names imported anywhere in ``path``, "module:object" strings it holds)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if ":" in text and text.split(".")[0] in PACKAGES and " " not in text:
                targets.add(text.split(":")[0])
    return names, targets


def imported(path: Path, root: Path = ROOT) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (and their parent packages).

    Registries name their entries as ``"module:object"`` strings, imported late through
    :mod:`components.imports`; a module that uses that loader also imports the entries of the
    registries it uses (and a module that only reads a registry's names does not)."""
    names, targets = _statements(path)
    if LOADER in names:
        names |= targets
        for name in list(names):
            file = module_file(name, root)
            if file is not None and file != path:
                names |= _statements(file)[1]
    found = set()
    for name in names:
        if name.split(".")[0] not in PACKAGES:
            continue
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            if module_file(".".join(parts[:k]), root):
                found.add(".".join(parts[:k]))
    return found


def closure(start: Path, root: Path = ROOT) -> set[Path]:
    """Every project file reachable by imports from ``start`` (``start`` included)."""
    seen: set[Path] = set()
    todo = [start.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported(path, root):
            file = module_file(name, root)
            if file is not None and file.resolve() not in seen:
                todo.append(file.resolve())
    return {p.relative_to(root) for p in seen}


def compact(files: set[Path], root: Path = ROOT) -> list[str]:
    """``files`` as dvc.yaml deps: a folder when every Python file under it is included."""
    out: set[str] = set()
    for file in files:
        folder, best = file.parent, file
        while folder != Path(".") and all(
            p.relative_to(root) in files for p in (root / folder).rglob("*.py")
        ):
            best, folder = folder, folder.parent
        out.add(str(best))
    # drop entries covered by a listed folder
    return sorted(o for o in out if not any(o != p and o.startswith(p + "/") for p in out))


DVC_HEADER = """\
# The experiment's stages. Each stage's code deps are exactly the project modules it can import
# (tests/test_dvc_deps.py checks them against `python tools/import_closure.py pipelines/<stage>.py
# --dvc`, and each stage's outputs against its artifact class in components/artifacts.py).
# After changing imports: `python tools/import_closure.py --update-dvc`.
"""


def update_dvc(path: Path = ROOT / "dvc.yaml") -> None:
    """Replace every stage's code deps (components/, pipelines/) by its import closure."""
    import yaml

    spec = yaml.safe_load(path.read_text())
    for name, stage in spec["stages"].items():
        data = [d for d in stage["deps"] if not d.startswith(PACKAGES)]
        code = compact(
            closure(root_file := ROOT / "pipelines" / f"{name}.py") | {Path("pipelines/cli.py")}
        )
        assert root_file.exists(), name
        stage["deps"] = data + code
    path.write_text(DVC_HEADER + yaml.safe_dump(spec, sort_keys=False, width=100))


if __name__ == "__main__":
    if sys.argv[1] == "--update-dvc":
        update_dvc()
        sys.exit()
    files = closure(Path(sys.argv[1]))
    for entry in compact(files) if "--dvc" in sys.argv else sorted(map(str, files)):
        print(entry)
