"""Released pre-computed optical flow: a folder of flow images plus a label CSV.

Several MER authors publish the flow images their papers used (for the MEGC 2019 composite:
442 PNGs ``<sub>_<filename_o> .png``, 28×28, u / v / strain in R / G / B, with a CSV
``dataset,sub,filename_o,label,...``). This reader turns every CSV row into a sample the
``preprocess`` stage stores as a record without a face or flow step. Rows are checked here: an
unknown dataset or label, a repeated (dataset, sub, filename_o), an image that is missing or
would escape the root — each is quarantined with the CSV file, row and reason. Image content
(unreadable, not 8-bit RGB, not square) is checked when preprocess reads it.
"""

from __future__ import annotations

import csv
from pathlib import Path

from components.config import PATTERN_FIELDS, DatasetConfig
from components.datasets.labels import COMPOSITE_CLASSES
from components.datasets.sample import (
    DatasetError,
    ReadResult,
    Rejection,
    RowError,
    Sample,
    safe_join,
)

DATASETS = ("casme2", "samm", "smic", "casme3")
REQUIRED = ("dataset", "sub", "filename_o", "label")


def find_csv(root: Path, name: str | None) -> Path:
    if name:
        path = root / name
        if not path.is_file():
            raise DatasetError(f"flow_images: label CSV {path} not found")
        return path
    found = sorted(root.glob("*.csv"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DatasetError(
            f"flow_images: expected exactly one *.csv in {root} (found: {names}); set 'csv'"
        )
    return found[0]


def read_flow_images(cfg: DatasetConfig) -> ReadResult:
    """Every CSV row as a ``flow_image`` sample, or a quarantined row with its reason."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DatasetError(f"flow_images: root {root} does not exist or is not a folder")
    table = find_csv(root, cfg.csv)
    images = root / cfg.images_dir if cfg.images_dir else root
    faces = root / cfg.faces_dir if cfg.faces_dir else None
    result = ReadResult()
    seen: dict[tuple[str, str, str], int] = {}
    try:
        _read_rows(table, images, faces, cfg, seen, result)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{table}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8"
        ) from None
    return result


def _read_rows(
    table: Path, images: Path, faces: Path | None, cfg: DatasetConfig, seen: dict, result
) -> None:
    with open(table, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DatasetError(
                f"{table}: missing column(s) {', '.join(missing)}; has: {', '.join(header)}"
            )
        for number, raw in enumerate(reader, start=2):  # row 1 is the header
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            clip = row.get("filename_o", "")
            try:
                sample = _sample(row, number, images, faces, cfg, table, seen)
            except RowError as exc:
                code, message = exc.args if len(exc.args) == 2 else ("invalid_annotation", str(exc))
                result.rejections.append(
                    Rejection(
                        row.get("dataset") or "flow_images", str(table), number, clip, message, code
                    )
                )
                continue
            result.samples.append(sample)


def _sample(
    row: dict,
    number: int,
    images: Path,
    faces: Path | None,
    cfg: DatasetConfig,
    table: Path,
    seen: dict,
) -> Sample:
    dataset, subject, clip = row["dataset"].lower(), row["sub"], row["filename_o"]
    if dataset not in DATASETS:
        raise RowError(
            "unknown_dataset", f"dataset {row['dataset']!r} is not one of {', '.join(DATASETS)}"
        )
    if not subject or not clip:
        raise RowError("invalid_annotation", "sub or filename_o is blank")
    if row["label"] not in ("0", "1", "2"):
        raise RowError(
            "unknown_label",
            f"label {row['label']!r} is not 0 (negative), 1 (positive) or 2 (surprise)",
        )
    key = (dataset, subject, clip)
    if key in seen:
        raise RowError("duplicate_row", f"{dataset}/{subject}/{clip} repeats row {seen[key]}")
    seen[key] = number
    name = cfg.pattern.format(**dict(zip(PATTERN_FIELDS, (subject, clip, dataset), strict=True)))
    image = safe_join(images, name)
    if not image.is_file():
        raise RowError("missing_image", f"flow image {image} not found")
    face = ""
    if faces is not None:
        candidate = safe_join(faces, f"{subject}_{clip}.jpg")
        face = str(candidate) if candidate.is_file() else ""
    return Sample(
        dataset=dataset,
        subject=subject,
        clip=clip,
        frames=(str(image),),
        frame_numbers=(0,),
        apex=0,
        emotion=COMPOSITE_CLASSES[int(row["label"])],
        source=f"{table.name} row {number}",
        kind="flow_image",
        channels=cfg.channels,
        face=face,
    )
