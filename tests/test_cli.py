"""The ``mer`` command line as users of DVC and other tools expect it: ``--version``, flags
before or after the subcommand, ``-S key=value`` overrides, ``-q``; progress with an ETA."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import progress
from components.progress import Bar, FileTally, say

ROOT = Path(__file__).resolve().parents[1]

#: a tiny synthetic dataset: 3 subjects × 1 clip per class, short small clips
TINY = [
    "-S", "synthesize.subjects=3", "-S", "synthesize.clips_per_class=1",
    "-S", "synthesize.frames_min=6", "-S", "synthesize.frames_max=7",
    "-S", "synthesize.frame_size=96",
]  # fmt: skip


#: what selects TensorFlow's kernels and the fold convolution: kept, so the subprocess runs on
#: the kernels this test process runs on (the kernel tier sets them)
KERNEL_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "MER_FOLD_CONV")


def mer(cwd: Path, *args: str, progress_style: str = "lines") -> subprocess.CompletedProcess:
    """``mer ARGS`` in a bare environment (no user settings but the kernel selection)."""
    kernels = {k: os.environ[k] for k in KERNEL_VARIABLES if k in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MER_PROGRESS": progress_style}
        | kernels,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthesize"]["root"] = "raw/synthetic"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


@pytest.mark.slow
def test_version(tmp_path: Path) -> None:
    done = mer(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"mer-attention \S+", lines[0])
    assert re.fullmatch(r"TensorFlow \S+, Keras \S+; oneDNN (on|off); devices: .*CPU:0.*", lines[1])
    from components.models.fold_conv import describe

    assert lines[2] == describe()  # the same probe in the test process: the same kernels
    assert len(lines) == 3


def test_flags_after_the_subcommand_and_overrides_reach_the_stage(project: Path) -> None:
    done = mer(project, "synthesize", *TINY, "--params", "params.yaml")
    assert done.returncode == 0, done.stderr
    subjects = sorted(p.name for p in (project / "raw/synthetic/CASME2_RAW_selected").iterdir())
    assert subjects == ["sub01", "sub02", "sub03"]  # -S synthesize.subjects=3, not params.yaml's
    assert done.stdout.strip().endswith("]") and "wrote 9 clips" in done.stdout
    lines = re.findall(r"^synthesize: (\d)/3 subjects \((\d+)%\)", done.stderr, re.M)
    assert lines == [("1", "33"), ("2", "67"), ("3", "100")]  # one a subject: each a tenth+


def test_quiet_prints_results_only(project: Path) -> None:
    done = mer(project, "-q", "synthesize", *TINY)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1 and "wrote 9 clips" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-S", "synthesize.subjects"], "expected KEY=VALUE"),
        (["-S", "synthesize.subject=3"], "subject"),
        (["-S", "synthesize.subjects=1"], "synthesize.subjects"),
        (["-S", "seed.x=1"], "seed is not a section"),
    ],
)
def test_a_bad_override_is_named(project: Path, args: list[str], message: str) -> None:
    done = mer(project, "synthesize", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (project / "raw").exists()


def test_quiet_and_verbose_together_are_refused(project: Path) -> None:
    done = mer(project, "synthesize", "-q", "--verbose")
    assert done.returncode == 2 and "cannot be used together" in done.stderr


@pytest.fixture
def level():
    yield progress.set_level
    progress.set_level("normal")


def test_a_log_gets_a_line_at_every_tenth(monkeypatch, level) -> None:
    monkeypatch.setenv("MER_PROGRESS", "lines")
    out = io.StringIO()
    with Bar("evaluate", 40, "fold-epoch", file=out) as bar:
        for _ in range(25):
            bar.advance()
        bar.drop(10)  # folds that stopped early: 25 of 30 now
        bar.to(30)
    shares = re.findall(r"^evaluate: (\d+)/(\d+) fold-epochs \((\d+)%\)", out.getvalue(), re.M)
    assert [int(s[2]) for s in shares] == [2, 10, 20, 30, 40, 50, 60, 83, 100]  # the first too
    assert shares[-1][:2] == ("30", "30")


def test_a_log_shows_life_at_least_every_minute(monkeypatch, level) -> None:
    """A long run's tenths can be many minutes apart (a real-composite LOSO printed its first
    line after 487 s): a line at the first progress, then at least every LINE_EVERY_S."""
    clock = [0.0]
    monkeypatch.setattr(progress, "_now", lambda: clock[0])
    monkeypatch.setenv("MER_PROGRESS", "lines")
    out = io.StringIO()
    with Bar("evaluate", 1000, "fold-epoch", file=out) as bar:
        for _ in range(40):  # 4% of the work over 200 s, a step every 5 s
            clock[0] += 5.0
            bar.advance()
    elapsed = [int(e) for e in re.findall(r"(\d+) s elapsed", out.getvalue())]
    assert elapsed == [5, 65, 125, 185]
    # the time left from the rate since the first report (start-up is not work): 1 step / 5 s
    left = re.findall(r"s elapsed, (ETA next|~\d+ s left)", out.getvalue())
    assert left == ["ETA next", f"~{5 * (1000 - 13):.0f} s left", f"~{5 * (1000 - 25):.0f} s left",
                    f"~{5 * (1000 - 37):.0f} s left"]  # fmt: skip


def test_a_terminal_gets_a_bar_and_quiet_gets_nothing(monkeypatch, capsys, level) -> None:
    monkeypatch.setenv("MER_PROGRESS", "bar")
    out = io.StringIO()
    with Bar("tune", 8, "trial-epoch", file=out) as bar:
        bar.advance(8)
    assert "8/8" in out.getvalue() and "trial-epoch" in out.getvalue()
    level("quiet")
    quiet = io.StringIO()
    with Bar("tune", 8, "trial-epoch", file=quiet) as bar:
        bar.advance(8)
    say("a line")
    assert quiet.getvalue() == "" and capsys.readouterr().out == ""


def test_other_processes_report_through_a_file(monkeypatch, level) -> None:
    monkeypatch.setenv("MER_PROGRESS", "off")
    bar = Bar("preprocess", 50, "clip")
    with FileTally(bar, every=0.05) as tally:
        script = f"import os\nfor _ in range(20): os.write(os.open({tally.path!r}, os.O_WRONLY | os.O_APPEND), b'.')"
        for _ in range(2):
            subprocess.run([sys.executable, "-c", script], check=True)
    assert bar.count == 40 and not Path(tally.path).exists()


def test_the_search_progress_survives_ray_tunes_pickling() -> None:
    """Ray Tune pickles its callbacks with the experiment state; the bar's stream cannot be."""
    import pickle

    from components.tuning.progress import SearchProgress

    progress = SearchProgress([{"epochs": 3}], None, ["ststnet/none@-"], expected=2)
    progress.bar.advance()
    copy = pickle.loads(pickle.dumps(progress))
    assert copy.planned == 6 and copy._bar is None
    progress.close()


def test_a_stage_that_trains_on_ray_does_not_load_tensorflow_itself() -> None:
    """tune, evaluate and compare train in Ray's workers: their own process checks params.yaml's
    spaces and placements (every attention type, every backbone's points) without TensorFlow,
    the ≈ 5 s a stage's start-up saves."""
    code = """
import sys
from components.config import load_params
from components.models.space import model_variants
from components.models.pinned_form import check_pinned_form
from pipelines.cli import main
import pipelines.compare, pipelines.evaluate, pipelines.tune
params = load_params("params.yaml", [])
model_variants(params.compare.space, 0.5)
model_variants(params.tune.space, 0.5)
check_pinned_form()
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "loaded"
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
