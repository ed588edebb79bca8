"""Write the synthetic dataset in the real CASME II layout, so the real reader and preprocessing run.

Layout written under ``root``::

    CASME2-coding-synthetic.xlsx                 (the real sheet's columns)
    CASME2_RAW_selected/sub01/EP01_01/img37.jpg  (onset .. offset frames)
    README.txt                                   (what this is)

Every clip is drawn from its own seeded generator (``seed``, subject, clip), so the output
depends only on the parameters, never on the order of work.
"""

from __future__ import annotations

import csv
import datetime
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from components.config import SynthesizeConfig
from components.datasets.synthetic.faces import SubjectLook, make_subject, photometric, source_image
from components.datasets.synthetic.motion import ACTION_UNITS, displacement_field, temporal_profile

SHEET_NAME = "CASME2-coding-synthetic.xlsx"
FRAMES_DIR = "CASME2_RAW_selected"
SHEET_HEADER = (
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
#: composite class -> native CASME II emotions drawn for it (negative alternates)
CLASS_EMOTIONS: dict[str, tuple[str, ...]] = {
    "negative": ("disgust", "repression"),
    "positive": ("happiness",),
    "surprise": ("surprise",),
}
FIXED_TIME = datetime.datetime(2014, 5, 8)


@dataclass(frozen=True)
class ClipPlan:
    """One clip to render."""

    subject: str
    clip: str
    emotion: str
    first_frame: int
    n_frames: int
    apex: int
    amplitude: float


@dataclass(frozen=True)
class SyntheticSummary:
    """What was written."""

    root: Path
    subjects: int
    clips: int
    frames: int
    per_emotion: dict[str, int]


COMPOSITE_LIST = Path(__file__).with_name("megc2019_composite.csv")


def composite_class_counts() -> list[tuple[int, int, int]]:
    """(negative, positive, surprise) clip counts of each of the 68 subjects of the real MEGC
    2019 composite (its published ground-truth list, plus SAMM clip 032_3_1, negative, which
    that file omits): 442 clips, 250/109/83."""
    counts: dict[tuple[str, str], list[int]] = {}
    with open(COMPOSITE_LIST, newline="") as handle:
        for dataset, subject, _, label in csv.reader(handle):
            counts.setdefault((dataset, subject), [0, 0, 0])[int(label)] += 1
    counts[("samm", "32")][0] += 1
    return [tuple(v) for _, v in sorted(counts.items())]


def class_counts(cfg: SynthesizeConfig) -> list[tuple[int, int, int]]:
    """Clips per class of every subject, as ``synthesize.clips`` asks."""
    if cfg.clips == "megc2019_composite":
        return composite_class_counts()
    return [(cfg.clips_per_class,) * 3] * cfg.subjects


def plan_subject(
    index: int, cfg: SynthesizeConfig, seed: int, counts: tuple[int, int, int] | None = None
) -> list[ClipPlan]:
    """The clips of subject ``index`` (0-based): ``counts`` clips of each composite class
    (default ``clips_per_class`` of each)."""
    rng = np.random.default_rng([seed, index, 0])
    counts = counts or (cfg.clips_per_class,) * 3
    emotions = [
        CLASS_EMOTIONS[c][(index + k) % len(CLASS_EMOTIONS[c])]
        for c, n in zip(CLASS_EMOTIONS, counts, strict=True)
        for k in range(n)
    ]
    rng.shuffle(emotions)
    plans = []
    for k, emotion in enumerate(emotions):
        n = int(rng.integers(cfg.frames_min, cfg.frames_max + 1))
        plans.append(
            ClipPlan(
                subject=f"sub{index + 1:02d}",
                clip=f"EP{k + 1:02d}_{index + 1:02d}",
                emotion=emotion,
                first_frame=int(rng.integers(1, 300)),
                n_frames=n,
                apex=round(float(rng.uniform(0.35, 0.6)) * (n - 1)),
                amplitude=float(rng.uniform(*cfg.amplitude_px)),
            )
        )
    return plans


def subject_look(index: int, cfg: SynthesizeConfig, seed: int) -> SubjectLook:
    """The rendering of subject ``index`` (0-based)."""
    return make_subject(index, cfg.frame_size, np.random.default_rng([seed, index, 1]))


def render_clip(
    plan: ClipPlan, look: SubjectLook, cfg: SynthesizeConfig, seed: int, index: int
) -> list[np.ndarray]:
    """All frames (uint8 BGR) of one clip, onset to offset."""
    size = cfg.frame_size
    rng = np.random.default_rng([seed, index, 2, int(plan.clip[2:4])])
    source = source_image(look.identity)
    field = displacement_field(look.landmarks, plan.emotion, plan.amplitude, (size, size))
    intensity = temporal_profile(plan.n_frames, plan.apex)
    # small smooth rigid head motion: a random low-frequency path, zero at onset
    phases = rng.uniform(0, 2 * np.pi, size=4)
    t = np.linspace(0, 1, plan.n_frames)
    head = (
        cfg.head_motion_px
        * np.stack(
            [
                np.sin(np.pi * t + phases[0]) - np.sin(phases[0]),
                np.sin(np.pi * t + phases[1]) - np.sin(phases[1]),
            ],
            axis=1,
        )
        / 2
    )
    from_frame = cv2.invertAffineTransform(look.to_frame)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = []
    for k in range(plan.n_frames):
        # backward map: the pixel at p came from p - displacement (exact to first order)
        px = xs - intensity[k] * field[..., 0] - head[k, 0]
        py = ys - intensity[k] * field[..., 1] - head[k, 1]
        frame = warp(source, from_frame, px, py)
        lit = photometric(frame, look) * (1 + cfg.flicker * rng.standard_normal())
        lit += rng.normal(0, cfg.noise_sigma, size=lit.shape)
        frames.append(np.clip(np.rint(lit), 0, 255).astype(np.uint8))
    return frames


def write_sheet(path: Path, plans: list[ClipPlan]) -> None:
    """The coding sheet with the real CASME II columns (two unnamed ones included)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(SHEET_HEADER)
    for p in plans:
        sheet.append(
            (
                p.subject[3:],
                p.clip,
                None,
                p.first_frame,
                p.first_frame + p.apex,
                p.first_frame + p.n_frames - 1,
                None,
                ACTION_UNITS[p.emotion],
                p.emotion,
            )
        )
    workbook.properties.created = FIXED_TIME
    workbook.save(path)
    _freeze_times(path)


def _freeze_times(path: Path) -> None:
    """Make an xlsx byte-reproducible: openpyxl stamps 'modified' and zip entry times at save."""
    stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in entries:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp, data)
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)


#: everything the generator writes under its root (anything else there is refused)
OWNED = (SHEET_NAME, "README.txt", f"{FRAMES_DIR}/*")


def write_synthetic_casme2(
    cfg: SynthesizeConfig,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    root: Path | None = None,
) -> SyntheticSummary:
    """Render the whole dataset under ``root`` (default ``cfg.root``; the stage passes a
    staging folder that then replaces ``cfg.root``)."""
    root = Path(root or cfg.root)
    frames_root = root / FRAMES_DIR
    all_plans: list[ClipPlan] = []
    n_frames = 0
    subjects = class_counts(cfg)
    for index, counts in enumerate(subjects):
        look = subject_look(index, cfg, seed)
        plans = plan_subject(index, cfg, seed, counts)
        for plan in plans:
            clip_dir = frames_root / plan.subject / plan.clip
            clip_dir.mkdir(parents=True)
            for k, frame in enumerate(render_clip(plan, look, cfg, seed, index)):
                ok = cv2.imwrite(
                    str(clip_dir / f"img{plan.first_frame + k}.jpg"),
                    frame,
                    [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality],
                )
                if not ok:
                    raise OSError(f"could not write a frame to {clip_dir}")
                n_frames += 1
        all_plans.extend(plans)
        if progress:
            progress(index + 1, len(subjects))
    write_sheet(root / SHEET_NAME, all_plans)
    (root / "README.txt").write_text(
        "Synthetic micro-expression dataset in the CASME II layout, generated by mer-attention\n"
        "from public-domain faces shipped in scikit-image and matplotlib. Subjects are\n"
        f"variations of {min(len(subjects), 2)} real identities. Not real micro-expressions.\n"
    )
    per_emotion: dict[str, int] = {}
    for p in all_plans:
        per_emotion[p.emotion] = per_emotion.get(p.emotion, 0) + 1
    return SyntheticSummary(root, len(subjects), len(all_plans), n_frames, per_emotion)


def warp(source: np.ndarray, from_frame: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """``source`` sampled at the frame points (``px``, ``py``) mapped by the 2×3 ``from_frame``
    (bicubic, reflected at the border)."""
    map_x = from_frame[0, 0] * px + from_frame[0, 1] * py + from_frame[0, 2]
    map_y = from_frame[1, 0] * px + from_frame[1, 1] * py + from_frame[1, 2]
    return cv2.remap(
        source,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
