"""One sample in, one record out: face, alignment, flow, strain and clip. Pure and picklable, so
Beam workers (or anything else) can call it; failures raise :class:`SampleError` with a reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from components.config import PreprocessConfig
from components.datasets.labels import composite_label, native_label
from components.datasets.sample import Sample
from components.faces import Face, NoFaceError, alignment_matrix, crop, detect_face
from components.features import flow_stack, flow_statistics, optical_flow, sample_indices
from components.records.schema import MerRecord

#: Reasons a sample is quarantined (counters and the quarantine report use these codes).
REASONS = ("unreadable_frame", "no_face", "flow_failed", "error")


class SampleError(Exception):
    """A sample that cannot be preprocessed; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LabelledSample:
    """A sample with its task labels (composite 3-class; native, -1 if excluded)."""

    sample: Sample
    label: int
    native_label: int


def label_sample(sample: Sample) -> LabelledSample | None:
    """Attach labels; None when the MEGC composite task excludes the emotion."""
    label = composite_label(sample.dataset, sample.emotion)
    if label is None:
        return None
    native = native_label(sample.dataset, sample.emotion)
    return LabelledSample(sample, label, -1 if native is None else native)


def read_frame(path: str) -> np.ndarray:
    """A frame as BGR uint8; an unreadable or corrupt file is a :class:`SampleError`."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise SampleError("unreadable_frame", f"frame {path} cannot be read or decoded")
    return image


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@dataclass(frozen=True)
class ClipFeatures:
    """What the model and the figures need from one clip."""

    face: Face  # detected on the onset frame
    matrix: np.ndarray  # onset-frame alignment (2x3), applied to every frame
    flow: np.ndarray  # (S, S, 3) u, v, strain, normalised: the flow models' input
    clip: np.ndarray  # (T, C, C, 1) uint8 aligned grey frames: the sequence models' input
    apex_face: np.ndarray  # (face_size, face_size) aligned grey apex frame
    statistics: dict[str, float]


def detect(onset: np.ndarray, cfg: PreprocessConfig, where: str) -> tuple[Face, np.ndarray]:
    """The onset face and its alignment matrix; no face is a ``no_face`` :class:`SampleError`."""
    try:
        face = detect_face(onset, cfg.detector)
    except NoFaceError as exc:
        raise SampleError("no_face", f"{where}: {exc}") from exc
    return face, alignment_matrix(face.landmarks, cfg.face_size, cfg.face_margin)


def clip_features(
    onset: np.ndarray,
    apex: np.ndarray,
    clip_frames: Sequence[np.ndarray],
    cfg: PreprocessConfig,
    where: str,
    located: tuple[Face, np.ndarray] | None = None,
) -> ClipFeatures:
    """Face, flow and clip from BGR frames: the one computation behind the records and
    ``mer predict``.

    The face is detected on the onset frame (or ``located`` is reused); the same alignment crop
    is applied to every frame. Flow is TV-L1 onset → apex on the aligned grey crops
    (gain-matched), then u, v and strain are resized to ``flow_size`` and min-max normalised.
    ``clip_frames`` are the frames already resampled onset..offset.
    """
    face, matrix = located or detect(onset, cfg, where)
    onset_crop = grey(crop(onset, matrix, cfg.face_size))
    apex_crop = grey(crop(apex, matrix, cfg.face_size))
    try:
        flow = optical_flow(onset_crop, apex_crop, cfg.tvl1)
    except (cv2.error, FloatingPointError, ValueError) as exc:
        raise SampleError("flow_failed", f"{where}: {exc}") from exc
    clip = np.stack(
        [
            cv2.resize(
                grey(crop(frame, matrix, cfg.face_size)),
                (cfg.clip_size, cfg.clip_size),
                interpolation=cv2.INTER_AREA,
            )
            for frame in clip_frames
        ]
    )[..., None]
    return ClipFeatures(
        face, matrix, flow_stack(flow, cfg.flow_size), clip, apex_crop, flow_statistics(flow)
    )


def extract(item: LabelledSample, cfg: PreprocessConfig) -> MerRecord:
    """Preprocess one labelled sample into a :class:`MerRecord` (see :func:`clip_features`;
    the clip holds ``clip_frames`` frames resampled evenly from onset to offset)."""
    sample = item.sample
    onset = read_frame(sample.onset_path)
    located = detect(onset, cfg, sample.onset_path)
    indices = sample_indices(len(sample.frames), cfg.clip_frames)
    features = clip_features(
        onset,
        read_frame(sample.apex_path),
        [read_frame(sample.frames[i]) for i in indices],
        cfg,
        sample.uid,
        located,
    )
    numbers = sample.frame_numbers
    return MerRecord(
        uid=sample.uid,
        dataset=sample.dataset,
        subject=sample.subject,
        subject_id=sample.subject_id,
        clip_id=sample.clip,
        emotion=sample.emotion,
        label=item.label,
        native_label=item.native_label,
        frames=(numbers[0], numbers[sample.apex], numbers[-1]),
        clip_frames=tuple(numbers[i] for i in indices),
        face_box=features.face.box,
        alignment=features.matrix.astype(np.float32),
        detector=features.face.detector,
        flow=features.flow,
        clip=features.clip,
        extra=features.statistics,
    )
