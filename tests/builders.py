"""Build small datasets in the real on-disk layouts (xlsx via openpyxl, frames via OpenCV)."""

from __future__ import annotations

import csv
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
