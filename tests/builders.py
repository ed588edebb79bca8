"""Build small datasets in the real on-disk layouts (xlsx via openpyxl, frames via OpenCV)."""

from __future__ import annotations

import csv
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import openpyxl

FIXTURES = Path(__file__).parent / "fixtures"
CASME2_HEADER = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
)
SAMM_HEADER = (
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
)
CASME3_HEADER = (
    "Subject",
    "Filename",
    "Onset",
    "Apex",
    "Offset",
    "AU",
    "Objective class",
    "Expression type",
    "emotion",
)


def write_xlsx(path: Path, header: Sequence, rows: Iterable[Sequence], preamble: int = 0) -> Path:
    """An xlsx whose header sits on sheet row ``preamble + 1`` (title rows above it)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for k in range(preamble):
        sheet.append((f"title line {k + 1}",) if k % 3 == 0 else ())
    sheet.append(tuple(header))
    for row in rows:
        sheet.append(tuple(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def write_frames(folder: Path, names: Iterable[str], size: int = 8) -> None:
    """Tiny valid image files with the given names."""
    folder.mkdir(parents=True, exist_ok=True)
    image = np.full((size, size, 3), 127, np.uint8)
    for name in names:
        assert cv2.imwrite(str(folder / name), image)


def casme2_dataset(root: Path, rows: list[tuple], frames: bool = True) -> Path:
    """CASME II: ``CASME2-coding-x.xlsx`` + ``CASME2_RAW_selected/subNN/<clip>/imgN.jpg``.

    ``rows`` are (subject, clip, onset, apex, offset, aus, emotion); frames onset..offset are
    written for rows whose onset/offset are integers.
    """
    write_xlsx(
        root / "CASME2-coding-20140508.xlsx",
        CASME2_HEADER,
        [(s, c, None, on, ap, off, None, au, em) for s, c, on, ap, off, au, em in rows],
    )
    if frames:
        for subject, clip, onset, _, offset, _, _ in rows:
            if isinstance(onset, int) and isinstance(offset, int):
                folder = root / "CASME2_RAW_selected" / f"sub{int(subject):02d}" / clip
                write_frames(folder, (f"img{n}.jpg" for n in range(onset, offset + 1)))
    return root


def megc_rows(dataset: str) -> list[tuple[str, str, int]]:
    """(subject, clip, label) rows of the real MEGC 2019 composite list for one dataset."""
    with open(FIXTURES / "megc2019_composite_3class_gt.csv", newline="") as f:
        return [(s, c, int(lab)) for d, s, c, lab in csv.reader(f) if d == dataset]


def fake_records(
    folder: Path,
    subjects: int = 6,
    per_class: int = 2,
    flow_size: int = 28,
    clip_frames: int = 4,
    clip_size: int = 16,
    dataset: str = "casme2",
    seed: int = 0,
    shards: int = 2,
    datasets: tuple[str, ...] | None = None,
) -> list:
    """A records folder (shards + manifest, as the preprocess stage writes them) whose flow
    carries a planted, learnable class signal: a bright blob in a class-specific place."""
    from components.preprocessing.pipeline import MANIFEST_COLUMNS
    from components.preprocessing.transforms import manifest_row, shard_of
    from components.records import MANIFEST, MerRecord, encode, shard_name, write_shard, write_table
    from components.records.store import write_index

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:flow_size, 0:flow_size]
    centres = [(0.25, 0.3), (0.75, 0.7), (0.5, 0.2)]
    records = []
    for s in range(subjects):
        dataset = datasets[s % len(datasets)] if datasets else dataset
        for label in range(3):
            for k in range(per_class):
                cy, cx = (np.array(centres[label]) * flow_size).astype(int)
                blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * (flow_size / 8) ** 2))
                flow = rng.uniform(0, 0.3, size=(flow_size, flow_size, 3)).astype(np.float32)
                flow[..., label] += 0.7 * blob.astype(np.float32)
                subject = f"sub{s + 1:02d}"
                clip_id = f"EP{label}{k}_{s:02d}"
                records.append(
                    MerRecord(
                        uid=f"{dataset}/{subject}/{clip_id}",
                        dataset=dataset,
                        subject=subject,
                        subject_id=f"{dataset}/{subject}",
                        clip_id=clip_id,
                        emotion=("disgust", "happiness", "surprise")[label],
                        label=label,
                        native_label=label,
                        frames=(1, 5, 9),
                        clip_frames=tuple(range(1, clip_frames + 1)),
                        face_box=(0, 0, 10, 10),
                        alignment=np.zeros(6, np.float32),
                        detector="yuface",
                        flow=np.clip(flow, 0, 1),
                        clip=rng.integers(
                            0, 255, size=(clip_frames, clip_size, clip_size, 1), dtype=np.uint8
                        ),
                        extra={
                            "flow_mean_px": 1.0,
                            "flow_p99_px": 2.0,
                            "flow_max_px": 3.0,
                            "strain_mean": 0.1,
                        },
                    )
                )
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(shards):
        mine = sorted((r for r in records if shard_of(r.uid, shards) == index), key=lambda r: r.uid)
        write_shard(str(folder / shard_name(index, shards)), (encode(r) for r in mine))
        rows += [manifest_row(r, shard_name(index, shards)) for r in mine]
    write_table(folder / MANIFEST, sorted(rows, key=lambda r: r["uid"]), MANIFEST_COLUMNS)
    write_index(folder)
    return records


def merged(params: dict, overrides: dict) -> dict:
    """``params`` with ``overrides`` merged section by section (a non-dict value replaces)."""
    out = dict(params)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **values}
        else:
            out[section] = values
    return out


def output_params(folder: Path, experiment: str = "test") -> dict:
    """The params sections that put every output of every stage (reports, units, MLflow, Ray
    results) inside ``folder``, with a quick bootstrap and one evaluation seed (tests of
    several seeds and of the ensemble say so; the end-to-end repro runs params.yaml's)."""
    return {
        "evaluate": {
            "seeds": 1,
            "bootstrap": 200,
            "attention_examples": 1,
            "units_dir": str(folder / "units"),
            "reports_dir": str(folder / "reports"),
        },
        "compare": {"reports_dir": str(folder / "reports/compare")},
        "tracking": {
            "uri": f"sqlite:///{folder}/mlflow.db",
            "artifact_location": str(folder / "artifacts"),
            "experiment": experiment,
        },
        "tune": {
            "storage_path": str(folder / "ray_results"),
            "reports_dir": str(folder / "reports/tune"),
        },
        "register": {"reports_dir": str(folder / "reports/register")},
    }


def small_project(folder: Path, subjects: int = 8, per_class: int = 2, **overrides) -> Path:
    """A project folder for a `mer` stage: fake records (planted signal) and a params.yaml
    with short training and every output inside ``folder``; ``overrides`` are merged
    section by section. Returns the params file."""
    import yaml

    fake_records(folder / "records", subjects=subjects, per_class=per_class)
    params = {
        "seed": 3,
        "preprocess": {"records_dir": str(folder / "records"), "clip_frames": 4, "clip_size": 16},
        "model": {
            "backbone": "ststnet",
            "attention": {"type": "spatial"},
            "placement": ["fused"],
            "dropout": 0.0,
        },
        "train": {
            "epochs": 6,
            "patience": 3,
            "min_epochs": 2,
            "learning_rate": 0.01,
            "augment_flip": False,
        },
        "evaluate": {"folds_per_unit": 2, "min_units": 1},  # layouts as each test sets them
    }
    params = merged(merged(output_params(folder), params), overrides)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def mer_command(folder: Path, args: tuple[str, ...], env: dict | None) -> tuple[list[str], dict]:
    """The command line and environment of ``mer --params folder/params.yaml ARGS``."""
    import os
    import sys

    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "--params",
        str(folder / "params.yaml"),
        *args,
    ]
    environment = {**os.environ, **(env or {})}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return command, environment


def mer(folder: Path, *args: str, env: dict | None = None, timeout: int = 600):
    """Run ``mer --params folder/params.yaml ARGS`` in ``folder`` (a subprocess, as a user)."""
    import subprocess

    command, environment = mer_command(folder, args, env)
    return subprocess.run(
        command, cwd=folder, env=environment, capture_output=True, text=True, timeout=timeout
    )


def flow_images_release(root: Path, subjects: int = 6, per_class: int = 2, size: int = 28) -> list:
    """A released-features folder as authors publish it for the composite: one RGB PNG of
    u, v, strain per sample, ``<sub>_<filename_o> .png`` (with the space), and a label CSV
    ``dataset,sub,filename_o,label,...``; made from :func:`fake_records`' planted flow.
    Subjects are spread over casme2, samm and smic. Returns the records it encodes."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        records = fake_records(
            Path(scratch), subjects=subjects, per_class=per_class, flow_size=size,
            datasets=("casme2", "samm", "smic"),
        )  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in records:
        pixels = np.rint(record.flow * 255).astype(np.uint8)  # what a release stores
        name = f"{record.subject}_{record.clip_id} .png"
        assert cv2.imwrite(str(root / name), pixels[..., ::-1])  # RGB = u, v, strain
        rows.append((record.dataset, record.subject, record.clip_id, record.label, "x"))
    with open(root / "composite_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "sub", "filename_o", "label", "notes"])
        writer.writerows(rows)
    return records


def start_mer(folder: Path, *args: str, env: dict | None = None):
    """Start ``mer --params folder/params.yaml ARGS`` in the background (to interrupt it)."""
    import subprocess

    command, environment = mer_command(folder, args, env)
    return subprocess.Popen(
        command,
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition, process, timeout: float = 240) -> None:
    """Poll ``condition()`` until it holds, ``process`` ends, or ``timeout`` seconds pass."""
    import time

    deadline = time.time() + timeout
    while not condition() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)


def stage_args(params: str | Path, command: str, *argv: str):
    """The arguments ``mer --params PARAMS COMMAND ARGV`` gives a stage's ``run`` (parsed by
    the real command line, so every flag has its default)."""
    from pipelines.cli import build_parser

    return build_parser().parse_args(["--params", str(params), command, *argv])


class Payload:
    """Unpickling this writes ``marker``: what a crafted store file would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def crafted_pickle(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker), protocol=pickle.HIGHEST_PROTOCOL)
