"""CASME II reader: ``CASME2-coding-*.xlsx`` and ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg``."""

from __future__ import annotations

from pathlib import Path

from components.config import DatasetConfig
from components.datasets.sample import ReadResult, RowError, Sample, safe_join
from components.datasets.sheets import (
    apex_frame,
    find_sheet,
    frame_number,
    make_sample,
    read_sheet_samples,
    text,
)

SHEET_PATTERN = "CASME2-coding-*.xlsx"
FRAMES_DIR = "CASME2_RAW_selected"
COLUMNS = [
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
]


def subject_folder(value: object) -> str:
    """Sheet subject (``1``, ``'01'`` or ``'sub01'``) -> folder name ``sub01``."""
    name = text(value)
    if name.lower().startswith("sub"):
        name = name[3:]
    if not name.isdigit():
        raise RowError(f"Subject {value!r} is not a subject number")
    return f"sub{int(name):02d}"


def read_casme2(cfg: DatasetConfig) -> ReadResult:
    """Read every CASME II row; invalid rows are quarantined with file, row and reason."""
    root = Path(cfg.root)
    sheet = find_sheet(root, SHEET_PATTERN, cfg.sheet)
    frames_root = root / (cfg.frames_dir or FRAMES_DIR)

    def row_sample(row_number: int, row: dict) -> Sample:
        clip = text(row["filename"])
        subject = subject_folder(row["subject"])
        clip_dir = safe_join(frames_root, subject, clip)
        return make_sample(
            dataset="casme2",
            subject=subject,
            clip=clip,
            onset=frame_number(row["onsetframe"], "OnsetFrame"),
            apex=apex_frame(row["apexframe"], "ApexFrame", cfg.missing_apex),
            offset=frame_number(row["offsetframe"], "OffsetFrame"),
            frame_path=lambda n: clip_dir / f"img{n}.jpg",
            emotion=text(row["estimated emotion"]),
            action_units=text(row["action units"]),
            source=f"{sheet.name}:{row_number}",
        )

    return read_sheet_samples("casme2", sheet, COLUMNS, row_sample)
