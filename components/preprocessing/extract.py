"""One sample in, one record out: face, alignment, flow, strain and clip. Pure and picklable, so
Beam workers (or anything else) can call it; failures raise :class:`SampleError` with a reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from components.config import PreprocessConfig
from components.datasets.labels import COMPOSITE_CLASSES, composite_label, native_label
from components.datasets.sample import Sample
from components.faces import Face, NoFaceError, alignment_matrix, crop, detect_face
from components.features import flow_stack, flow_statistics, optical_flow, sample_indices
from components.preprocessing.frames import FrameError, decode_image, read_image, read_image_bytes
from components.records.schema import MerRecord

#: Reasons a sample is quarantined (counters and the quarantine report use these codes).
REASONS = (
    "unreadable_frame",
    "corrupt_frame",
    "wrong_channels",
    "not_square",
    "no_face",
    "flow_failed",
    "error",
)


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
    """Attach labels; None when the MEGC composite task excludes the emotion. Released flow
    images carry the composite class itself (no native label)."""
    if sample.kind == "flow_image":
        return LabelledSample(sample, COMPOSITE_CLASSES.index(sample.emotion), -1)
    label = composite_label(sample.dataset, sample.emotion)
    if label is None:
        return None
    native = native_label(sample.dataset, sample.emotion)
    return LabelledSample(sample, label, -1 if native is None else native)


def read_frame(path: str, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A complete frame as BGR uint8 (of ``expected_shape`` when given); an unreadable,
    truncated or differently sized file is a :class:`SampleError`."""
    try:
        return read_image(path, expected_shape)
    except FrameError as exc:
        raise SampleError(exc.reason, str(exc)) from exc


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
        return face, alignment_matrix(face.landmarks, cfg.face_size, cfg.face_margin)
    except NoFaceError as exc:
        raise SampleError("no_face", f"{where}: {exc}") from exc


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
    the clip holds ``clip_frames`` frames resampled evenly from onset to offset). Released
    flow images go through :func:`extract_flow_image` instead."""
    sample = item.sample
    if sample.kind == "flow_image":
        return extract_flow_image(item, cfg)
    onset = read_frame(sample.onset_path)
    located = detect(onset, cfg, sample.onset_path)
    indices = sample_indices(len(sample.frames), cfg.clip_frames)
    features = clip_features(
        onset,
        read_frame(sample.apex_path, onset.shape),
        [read_frame(sample.frames[i], onset.shape) for i in indices],
        cfg,
        sample.uid,
        located,
    )
    numbers = sample.frame_numbers
    return sample_record(
        item,
        frames=(numbers[0], numbers[sample.apex], numbers[-1]),
        clip_frames=tuple(numbers[i] for i in indices),
        face_box=features.face.box,
        alignment=features.matrix.astype(np.float32),
        detector=features.face.detector,
        flow=features.flow,
        clip=features.clip,
        extra=features.statistics,
    )


def sample_record(item: LabelledSample, **features) -> MerRecord:
    """A record of ``item``: its ids and labels, and the ``features`` computed for it."""
    sample = item.sample
    return MerRecord(
        uid=sample.uid,
        dataset=sample.dataset,
        subject=sample.subject,
        subject_id=sample.subject_id,
        clip_id=sample.clip,
        emotion=sample.emotion,
        label=item.label,
        native_label=item.native_label,
        **features,
    )


def read_flow_image(path: str, channels: str) -> np.ndarray:
    """A released flow image as float32 (H, W, 3) u, v, strain in [0, 1]: 8-bit RGB ÷ 255,
    the channels reordered from ``channels`` (what R, G, B hold, e.g. ``uvs``)."""
    try:
        image = decode_image(read_image_bytes(path), path, cv2.IMREAD_UNCHANGED)
    except FrameError as exc:
        raise SampleError(exc.reason, f"flow image: {exc}") from exc
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        depth = image.shape[2] if image.ndim == 3 else 1
        raise SampleError(
            "wrong_channels",
            f"flow image {path} has {depth} channel(s) of {image.dtype}; expected 8-bit RGB "
            "(u, v, strain)",
        )
    if image.shape[0] != image.shape[1]:
        raise SampleError("not_square", f"flow image {path} is {image.shape[1]}x{image.shape[0]}")
    rgb = image[..., ::-1]  # OpenCV decodes BGR
    order = [channels.index(c) for c in "uvs"]
    return rgb[..., order].astype(np.float32) / 255.0


def extract_flow_image(item: LabelledSample, cfg: PreprocessConfig) -> MerRecord:
    """A released flow image as a record: resized to ``flow_size`` (area interpolation, the
    same for every sample; none when it already has that size); the clip (for figures only)
    holds the apex face when one was given, else the flow magnitude."""
    sample = item.sample
    flow = read_flow_image(sample.frames[0], sample.channels)
    if flow.shape[0] != cfg.flow_size:
        flow = cv2.resize(flow, (cfg.flow_size, cfg.flow_size), interpolation=cv2.INTER_AREA)
    if sample.face:
        face = grey(read_frame(sample.face))
    else:
        magnitude = np.hypot(flow[..., 0] - 0.5, flow[..., 1] - 0.5)
        face = (255 * magnitude / max(float(magnitude.max()), 1e-6)).astype(np.uint8)
    still = cv2.resize(face, (cfg.clip_size, cfg.clip_size), interpolation=cv2.INTER_AREA)
    nan = float("nan")
    return sample_record(
        item,
        frames=(0, 0, 0),
        clip_frames=(0,) * cfg.clip_frames,
        face_box=(0, 0, 0, 0),
        alignment=np.zeros(6, np.float32),
        detector=PRECOMPUTED,
        flow=flow.astype(np.float32),
        clip=np.repeat(still[None, ..., None], cfg.clip_frames, axis=0),
        extra=dict.fromkeys(("flow_mean_px", "flow_p99_px", "flow_max_px", "strain_mean"), nan),
    )


#: the ``detector`` of records made from released flow images (no face or flow step)
PRECOMPUTED = "precomputed"
