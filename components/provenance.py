"""Where a run's code and data came from: the git commit and DVC's hash of the records."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

#: What ``dvc repro`` itself rewrites while it runs: changes there do not make the code dirty.
PIPELINE_OUTPUTS = ("dvc.lock", "reports")
CODE_ROOT = Path(__file__).resolve().parent  # components/


def code_version() -> str:
    """Hash of the project's components: results a run keeps for a later run (finished units,
    tune searches) are reused only by the same code (training depends on all of it)."""
    digest = hashlib.sha1()
    for path in sorted(CODE_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(CODE_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def git_commit() -> str:
    """The commit of the code, ``-dirty`` if tracked files other than the pipeline's own
    outputs (:data:`PIPELINE_OUTPUTS`) differ from it; ``unknown`` outside a git checkout."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return "unknown"
        excluded = [f":(exclude){path}" for path in PIPELINE_OUTPUTS]
        dirty = git("diff", "--quiet", "HEAD", "--", ".", *excluded).returncode != 0
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def data_version(records_dir: str | Path) -> str:
    """The version of the data a run used: DVC's hash of the records directory, exactly the
    ``md5`` that ``dvc.lock`` records for it (``<md5 of the sorted file listing>.dir``), so a
    run can be traced to its ``dvc.lock`` entry and back."""
    root = Path(records_dir)
    listing = [
        {
            "md5": hashlib.md5(path.read_bytes()).hexdigest(),
            "relpath": path.relative_to(root).as_posix(),
        }
        for path in root.rglob("*")
        if path.is_file()
    ]
    listing.sort(key=lambda entry: entry["relpath"])  # DVC orders by the joined path string
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def provenance_tags(records_dir: str | Path, stage: str) -> dict[str, str]:
    return {"git_commit": git_commit(), "data_version": data_version(records_dir), "stage": stage}
