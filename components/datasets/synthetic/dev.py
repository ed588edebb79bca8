"""A development set like the real MEGC 2019 composite (``synthesize.clips: megc2019_dev``).

The embedded default is easy (every method scores near 1.000), so it cannot tell a good method
decision from a bad one. This set is built to behave like the real composite instead:

- **Its shape**: the composite's 68 subjects with their real subject and clip ids and class
  counts (442 clips, 250/109/83), in three sub-datasets written in their **real layouts** —
  CASME II (sheet + ``CASME2_RAW_selected``), SAMM (FACS sheet with its 13-line preamble +
  ``006/006_1_2/006_05562.jpg``) and SMIC-HS (``HS/s1/micro/negative/...``, no apex) — read by
  the real readers.
- **Sub-datasets that differ as the real ones do** (:data:`PROFILES`): resolution, clip length
  (frame rate), greyscale (SAMM), amplitude, sensor noise, head motion; SAMM's negative class
  spans five emotions (anger, contempt, disgust, fear, sadness) at their real proportions, SMIC's
  negative any of them.
- **What makes real data hard**: every subject makes each expression its own way (each region's
  direction turned, its overall expressivity scaled), clips carry class-independent motion
  (blinks) and, for some, a second, weaker expression of another class (mixed or ambiguous
  clips).

The knobs were calibrated so that the default configuration's honest LOSO lands where real
data does (README, "development set"; benchmarks/RESULTS.md, "development set").
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from components.datasets.synthetic.faces import make_subject, photometric, source_image
from components.datasets.synthetic.generator import (
    COMPOSITE_LIST,
    FRAMES_DIR,
    SHEET_NAME,
    ClipPlan,
    SyntheticSummary,
    warp,
    write_sheet,
)
from components.datasets.synthetic.motion import (
    ACTION_UNITS,
    blink_profile,
    displacement_field,
    temporal_profile,
)


@dataclass(frozen=True)
class Profile:
    """How one sub-dataset looks and moves."""

    dataset: str  # casme2 | samm | smic
    folder: str  # its folder under the synthesize root
    frame_size: int
    frames: tuple[int, int]  # clip length range (frame rate × duration)
    amplitude: tuple[float, float]  # peak displacement of a clip's expression, px
    noise_sigma: float
    head_motion_px: float
    grey: bool
    subject_sd: float  # log-sd of a subject's expressivity (all its clips scaled alike)
    style_deg: float  # sd of the turn of each region's direction, per subject and emotion
    blink_rate: float  # clips with a blink
    mixed_rate: float  # clips with a second expression of another class
    mixed_amplitude: tuple[float, float]  # its amplitude, relative to the first


#: calibrated (README "development set"): CASME II clearest, SAMM and SMIC harder
PROFILES: dict[str, Profile] = {
    "casme2": Profile("casme2", "CASME2", 224, (20, 32), (0.9, 1.7), 1.5, 0.4, False,
                      0.25, 20.0, 0.25, 0.15, (0.3, 0.6)),
    "samm": Profile("samm", "SAMM", 224, (24, 36), (0.6, 1.3), 2.5, 0.6, True,
                    0.35, 35.0, 0.35, 0.3, (0.4, 0.8)),
    "smic": Profile("smic", "SMIC", 160, (12, 20), (0.6, 1.2), 3.0, 0.8, False,
                    0.35, 30.0, 0.3, 0.3, (0.4, 0.8)),
}  # fmt: skip

#: emotions drawn for each composite class, with weights (SAMM: its real negative mix)
EMOTIONS: dict[str, dict[int, tuple[tuple[str, float], ...]]] = {
    "casme2": {0: (("disgust", 0.6), ("repression", 0.4)), 1: (("happiness", 1),), 2: (("surprise", 1),)},
    "samm": {
        0: (("anger", 57), ("contempt", 12), ("disgust", 9), ("fear", 8), ("sadness", 6)),
        1: (("happiness", 1),),
        2: (("surprise", 1),),
    },
    "smic": {
        0: (("disgust", 1), ("repression", 1), ("anger", 1), ("fear", 1), ("sadness", 1)),
        1: (("happiness", 1),),
        2: (("surprise", 1),),
    },
}  # fmt: skip
SMIC_FOLDERS = ("negative", "positive", "surprise")
SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_HEADER = (
    "Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
    "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes",
)  # fmt: skip

#: everything the development set writes under its root
OWNED = ("README.txt", "CASME2/*", "SAMM/*", "SMIC/*")


@dataclass(frozen=True)
class DevClip:
    """One clip of the development set: where it goes, what it shows, how it is rendered."""

    plan: ClipPlan
    dataset: str
    label: int
    secondary: str | None  # a weaker expression of another class, or None
    secondary_amplitude: float
    blink: tuple[int, int] | None  # (start frame, length)


def composite_rows() -> list[tuple[str, str, str, int]]:
    """(dataset, subject, clip, label) of the real composite list, plus SAMM's 032_3_1
    (negative) that the list omits: 442 clips."""
    with open(COMPOSITE_LIST, newline="") as handle:
        rows = [(d, s, c, int(label)) for d, s, c, label in csv.reader(handle)]
    return [*rows, ("samm", "32", "032_3_1", 0)]


def _pick(rng: np.random.Generator, weighted: tuple[tuple[str, float], ...]) -> str:
    names, weights = zip(*weighted, strict=True)
    return str(rng.choice(names, p=np.asarray(weights, float) / sum(weights)))


def plan_clips(seed: int) -> dict[tuple[str, str], list[DevClip]]:
    """Every clip, by (dataset, subject), each drawn from its own seeded generator."""
    subjects: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for dataset, subject, clip, label in composite_rows():
        subjects.setdefault((dataset, subject), []).append((clip, label))
    planned: dict[tuple[str, str], list[DevClip]] = {}
    for index, ((dataset, subject), clips) in enumerate(sorted(subjects.items())):
        profile = PROFILES[dataset]
        out = []
        for k, (clip, label) in enumerate(clips):
            rng = np.random.default_rng([seed, 7, index, k])
            n = int(rng.integers(profile.frames[0], profile.frames[1] + 1))
            emotion = _pick(rng, EMOTIONS[dataset][label])
            other = [c for c in range(3) if c != label]
            secondary = (
                _pick(rng, EMOTIONS[dataset][int(rng.choice(other))])
                if rng.random() < profile.mixed_rate
                else None
            )
            blink = None
            if rng.random() < profile.blink_rate:
                length = max(3, n // 5)
                blink = (int(rng.integers(0, max(1, n - length))), length)
            out.append(
                DevClip(
                    ClipPlan(
                        subject=subject,
                        clip=clip,
                        emotion=emotion,
                        first_frame=int(rng.integers(1, 3000)),
                        n_frames=n,
                        apex=round(float(rng.uniform(0.35, 0.6)) * (n - 1)),
                        amplitude=float(rng.uniform(*profile.amplitude)),
                    ),
                    dataset,
                    label,
                    secondary,
                    float(rng.uniform(*profile.mixed_amplitude)) if secondary else 0.0,
                    blink,
                )
            )
        planned[(dataset, subject)] = out
    return planned


@dataclass(frozen=True)
class Style:
    """A subject's way of moving: expressivity and each emotion's region turns."""

    scale: float
    turns: dict[str, np.ndarray]


def subject_style(profile: Profile, rng: np.random.Generator) -> Style:
    scale = float(np.exp(rng.normal(0, profile.subject_sd)))
    turns = {
        emotion: np.deg2rad(rng.normal(0, profile.style_deg, size=6))
        for emotion in (*ACTION_UNITS, "blink")
    }
    return Style(scale, turns)


def render(clip: DevClip, look, style: Style, profile: Profile, seed: int) -> list[np.ndarray]:
    """All frames (uint8 BGR, or grey for a greyscale profile) of one clip, onset to offset."""
    plan, size = clip.plan, profile.frame_size
    rng = np.random.default_rng([seed, 8, *map(ord, f"{clip.dataset}/{plan.subject}/{plan.clip}")])
    shape = (size, size)
    amplitude = plan.amplitude * style.scale
    field = displacement_field(
        look.landmarks, plan.emotion, amplitude, shape, style.turns[plan.emotion]
    )
    intensity = temporal_profile(plan.n_frames, plan.apex)
    extra = np.zeros_like(field)
    extra_intensity = np.zeros(plan.n_frames)
    if clip.secondary:
        extra = displacement_field(
            look.landmarks,
            clip.secondary,
            amplitude * clip.secondary_amplitude,
            shape,
            style.turns[clip.secondary],
        )
        shift = int(rng.integers(-plan.n_frames // 6, plan.n_frames // 6 + 1))
        extra_intensity = temporal_profile(
            plan.n_frames, int(np.clip(plan.apex + shift, 1, plan.n_frames - 2))
        )
    lids = np.zeros_like(field)
    lid_profile = np.zeros(plan.n_frames)
    if clip.blink:
        lids = displacement_field(look.landmarks, "blink", 1.0, shape, style.turns["blink"])
        lid_profile = blink_profile(plan.n_frames, *clip.blink)
    phases = rng.uniform(0, 2 * np.pi, size=4)
    t = np.linspace(0, 1, plan.n_frames)
    head = profile.head_motion_px * np.stack(
        [np.sin(np.pi * t + phases[k]) - np.sin(phases[k]) for k in (0, 1)], axis=1
    )
    from_frame = cv2.invertAffineTransform(look.to_frame)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    source = source_image(look.identity)
    frames = []
    for k in range(plan.n_frames):
        moved = intensity[k] * field + extra_intensity[k] * extra + lid_profile[k] * lids
        px = xs - moved[..., 0] - head[k, 0]
        py = ys - moved[..., 1] - head[k, 1]
        frame = warp(source, from_frame, px, py)
        lit = photometric(frame, look) * (1 + 0.015 * rng.standard_normal())
        if profile.grey:  # one channel: written as a greyscale JPEG, as SAMM's frames are
            lit = lit.mean(axis=-1)
        lit += rng.normal(0, profile.noise_sigma, size=lit.shape)
        frames.append(np.clip(np.rint(lit), 0, 255).astype(np.uint8))
    return frames


def frame_paths(clip: DevClip, root: Path) -> tuple[Path, Callable[[int], str]]:
    """The clip's folder in its sub-dataset's real layout, and its frame file names."""
    plan, folder = clip.plan, root / PROFILES[clip.dataset].folder
    if clip.dataset == "casme2":
        return folder / FRAMES_DIR / plan.subject / plan.clip, lambda n: f"img{n}.jpg"
    if clip.dataset == "samm":
        subject = f"{int(plan.subject):03d}"
        return folder / subject / plan.clip, lambda n: f"{subject}_{n:05d}.jpg"
    return (
        folder / "HS" / plan.subject / "micro" / SMIC_FOLDERS[clip.label] / plan.clip,
        lambda n: f"image{n:06d}.jpg",
    )


def write_samm_sheet(path: Path, clips: list[DevClip]) -> None:
    """SAMM's FACS sheet: a 13-line preamble, then the header on row 14, as the real one."""
    import openpyxl

    from components.datasets.synthetic.generator import FIXED_TIME, _freeze_times

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(("SAMM: Spontaneous Actions and Micro-Movements (synthetic development set)",))
    for _ in range(12):
        sheet.append(())
    sheet.append(SAMM_HEADER)
    for clip in clips:
        p = clip.plan
        last = p.first_frame + p.n_frames - 1
        sheet.append(
            (f"{int(p.subject):03d}", p.clip, "1", p.first_frame, p.first_frame + p.apex, last,
             p.n_frames, "Micro - 1/2", ACTION_UNITS[p.emotion], p.emotion.capitalize(), "", "")
        )  # fmt: skip
    workbook.properties.created = FIXED_TIME
    workbook.save(path)
    _freeze_times(path)


def write_development_set(
    seed: int,
    root: Path,
    progress: Callable[[int, int], None] | None = None,
    subjects: set[tuple[str, str]] | None = None,
) -> SyntheticSummary:
    """Render the development set under ``root`` (three sub-dataset folders): every subject,
    or only ``subjects`` ((dataset, subject) pairs; for tests)."""
    every = plan_clips(seed)
    order = {key: k for k, key in enumerate(sorted(every))}  # looks do not depend on `subjects`
    planned = {k: v for k, v in every.items() if subjects is None or k in subjects}
    n_frames, per_emotion = 0, {}
    for done, (key, clips) in enumerate(sorted(planned.items()), start=1):
        index, profile = order[key], PROFILES[key[0]]
        look = make_subject(index, profile.frame_size, np.random.default_rng([seed, index, 1]))
        style = subject_style(profile, np.random.default_rng([seed, index, 3]))
        for clip in clips:
            folder, name = frame_paths(clip, root)
            folder.mkdir(parents=True)
            for k, frame in enumerate(render(clip, look, style, profile, seed)):
                if not cv2.imwrite(str(folder / name(clip.plan.first_frame + k)), frame):
                    raise OSError(f"could not write a frame to {folder}")
                n_frames += 1
            per_emotion[clip.plan.emotion] = per_emotion.get(clip.plan.emotion, 0) + 1
        if progress:
            progress(done, len(planned))
    by_dataset = {d: [c for (ds, _), cs in sorted(planned.items()) if ds == d for c in cs]
                  for d in PROFILES}  # fmt: skip
    if by_dataset["casme2"]:
        sheet = root / PROFILES["casme2"].folder / SHEET_NAME.replace("synthetic", "dev")
        write_sheet(sheet, [c.plan for c in by_dataset["casme2"]])
    if by_dataset["samm"]:
        write_samm_sheet(root / PROFILES["samm"].folder / SAMM_SHEET, by_dataset["samm"])
    (root / "README.txt").write_text(
        "Synthetic development set shaped like the MEGC 2019 composite (68 subjects, 442 clips;\n"
        "CASME II, SAMM and SMIC-HS layouts), generated by mer-attention from public-domain faces\n"
        "shipped in scikit-image and matplotlib. Not real micro-expressions.\n"
    )
    clips = sum(len(c) for c in planned.values())
    return SyntheticSummary(root, len(planned), clips, n_frames, per_emotion)


__all__ = ["PROFILES", "write_development_set"]
