"""End to end: a fresh copy of the repository → `dvc repro` → a champion in the registry →
`mer predict` classifies clips of an unseen subject; a worse `dvc repro -f` leaves the alias."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
import yaml

from components.config import SynthesizeConfig
from components.datasets.labels import composite_label
from components.datasets.synthetic.generator import plan_subject, render_clip, subject_look

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def fresh_copy(target: Path) -> Path:
    """What a clone holds: the tracked and the new, not ignored, files; committed to git."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "fresh copy"], cwd=target, check=True)
    return target


def set_params(repo: Path, changes: dict) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(repo: Path, *command: str, timeout: int = 1500) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done.stdout


#: A smaller experiment than the default (same stages, same code): 8 subjects, smaller frames,
#: two attention types in the search (the tuned learning rate and epochs reach evaluate and
#: register; with 8 subjects of 160² frames, 60 epochs at 0.003 train well, measured).
SMALL = {
    "synthesize.subjects": 8,
    "synthesize.frames_min": 14,
    "synthesize.frames_max": 18,
    "synthesize.frame_size": 160,
    "tune.space.attention": ["none", "cbam"],
    "tune.space.epochs": [60],
    "tune.space.learning_rate": [0.003],
    "tune.grace_period": 15,
    "train.patience": 10,
}
#: The same experiment made worse: one epoch of training everywhere.
WORSE = {"tune.space.epochs": [1], "tune.grace_period": 1, "train.epochs": 1, "train.min_epochs": 1}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = fresh_copy(tmp_path_factory.mktemp("clone"))
    set_params(repo, SMALL)
    run(repo, "dvc", "repro")
    return repo


def unseen_clips(folder: Path) -> dict[str, Path]:
    """One clip per composite class of a subject the dataset does not have, at the strongest
    amplitude the synthetic data uses, as a folder of frames."""
    cfg = SynthesizeConfig(frame_size=160, frames_min=14, frames_max=18)
    clips: dict[str, Path] = {}
    index = 40
    while len(clips) < 3:
        look = subject_look(index, cfg, seed=123)
        for plan in plan_subject(index, cfg, seed=123):
            label = ("negative", "positive", "surprise")[composite_label("casme2", plan.emotion)]
            if label in clips:
                continue
            plan = replace(plan, amplitude=cfg.amplitude_px[1])
            out = folder / f"{plan.subject}_{plan.clip}_{plan.emotion}"
            out.mkdir(parents=True)
            for k, frame in enumerate(render_clip(plan, look, cfg, 123, index)):
                cv2.imwrite(str(out / f"img{k + 1}.jpg"), frame)
            clips[label] = out
        index += 1
    return clips


@pytest.mark.slow
def test_repro_registers_a_champion_and_predict_uses_it(repo: Path, tmp_path: Path) -> None:
    registration = json.loads((repo / "reports/register/registration.json").read_text())
    assert registration["version"] == 1 and registration["alias_moved"] is True
    assert (repo / "reports/register/model_card.md").read_text().startswith("# Model card")
    listing = run(repo, "mer", "registry")
    assert "champion" in listing.splitlines()[2] and listing.splitlines()[2].startswith("1 ")
    predicted = {}
    for label, clip in unseen_clips(tmp_path).items():
        png = tmp_path / f"{label}.png"
        out = json.loads(run(repo, "mer", "predict", str(clip), "--json", "--output", str(png)))
        assert out["model"] == "models:/mer-attention@champion"
        assert abs(sum(out["probabilities"].values()) - 1) < 1e-4
        assert png.stat().st_size > 10_000
        predicted[label] = out["label"]
    assert predicted == {label: label for label in predicted}  # the planted class, each time


@pytest.mark.slow
def test_a_worse_forced_repro_registers_without_taking_the_alias(repo: Path) -> None:
    set_params(repo, WORSE)
    output = run(repo, "dvc", "repro", "-f")
    registration = json.loads((repo / "reports/register/registration.json").read_text())
    assert registration["version"] == 2 and registration["alias_moved"] is False
    assert "does not beat 'champion' v1" in registration["reason"]
    assert "does NOT take 'champion'" in output
    listing = run(repo, "mer", "registry").splitlines()
    assert listing[2].startswith("2 ") and "champion" not in listing[2]
    assert listing[3].startswith("1 ") and "champion" in listing[3]
