"""SMIC-HS reader: ``HS/s1/micro/{negative,positive,surprise}/<clip>/imageNNNNNN.bmp``.

SMIC has no sheet: the label is the folder name, the clip spans all its frames, and there is no
apex label, so the middle frame stands in.
"""

from __future__ import annotations

import re
from pathlib import Path

from components.config import DatasetConfig
from components.datasets.labels import KNOWN_EMOTIONS
from components.datasets.sample import DatasetError, ReadResult, Rejection, RowError
from components.datasets.sheets import make_sample

FRAMES_DIR = "HS"
FRAME_PATTERN = re.compile(r"image(\d+)\.(bmp|jpg|png)$", re.IGNORECASE)


def clip_frames(clip_dir: Path) -> dict[int, Path]:
    """Frame number -> path for the image files of a clip folder."""
    frames = {}
    for path in clip_dir.iterdir():
        if match := FRAME_PATTERN.match(path.name):
            frames[int(match.group(1))] = path
    return frames


def read_smic(cfg: DatasetConfig) -> ReadResult:
    """Read SMIC-HS micro-expression clips from the folder layout."""
    root = Path(cfg.root) / (cfg.frames_dir or FRAMES_DIR)
    if not root.is_dir():
        raise DatasetError(f"SMIC folder {root} does not exist (expected HS/s1/micro/...)")
    result = ReadResult()
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"s\d+", p.name))
    if not subjects:
        raise DatasetError(f"no subject folders (s1, s2, ...) in {root}")
    for subject_dir in subjects:
        micro = subject_dir / "micro"
        if not micro.is_dir():
            result.rejections.append(
                Rejection("smic", str(subject_dir), None, "", "no 'micro' folder")
            )
            continue
        for emotion_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            for clip_dir in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                try:
                    if emotion_dir.name.lower() not in KNOWN_EMOTIONS["smic"]:
                        raise RowError(
                            f"emotion folder {emotion_dir.name!r} is not one of "
                            "negative, positive, surprise"
                        )
                    frames = clip_frames(clip_dir)
                    if len(frames) < 2:
                        raise RowError(f"{len(frames)} image frame(s); need at least 2")
                    numbers = sorted(frames)
                    sample = make_sample(
                        dataset="smic",
                        subject=subject_dir.name,
                        clip=clip_dir.name,
                        onset=numbers[0],
                        apex=None,
                        offset=numbers[-1],
                        frame_path=lambda n, f=frames, d=clip_dir: f.get(n, d / f"image{n:06d}"),
                        emotion=emotion_dir.name,
                        action_units="",
                        source=str(clip_dir.relative_to(root)),
                    )
                except (RowError, ValueError) as exc:
                    result.rejections.append(
                        Rejection("smic", str(clip_dir), None, clip_dir.name, str(exc))
                    )
                    continue
                result.samples.append(sample)
    return result
