"""A clip from disk (a folder of frames or a video file) and its apex frame."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from components.errors import MerError
from components.preprocessing.frames import FrameError, read_image

#: Frame files a folder clip may hold (CASME II/SAMM/SMIC/CAS(ME)^3 use .jpg, .bmp or .png).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
#: Onset, apex and at least one frame between: fewer cannot hold a micro-expression.
MIN_FRAMES = 3


class ClipInputError(MerError, ValueError):
    """A clip that cannot be used, with what is wrong and where."""


def _natural_key(path: Path) -> list:
    """``img2.jpg`` before ``img10.jpg``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_frames_folder(folder: Path) -> tuple[list[np.ndarray], list[str]]:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
    )
    frames: list[np.ndarray] = []
    for path in files:
        try:
            frames.append(read_image(path, frames[0].shape if frames else None))
        except FrameError as exc:
            raise ClipInputError(str(exc)) from exc
    return frames, [p.name for p in files]


def read_video(path: Path) -> tuple[list[np.ndarray], list[str]]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        if not capture.isOpened():
            raise ClipInputError(f"video {path} cannot be opened (not a video, or no decoder)")
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise ClipInputError(f"video {path} has no decodable frames")
    return frames, [f"frame {k}" for k in range(len(frames))]


def read_clip(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """All frames (BGR uint8) of a clip, onset first, and their names.

    ``path`` is a folder of frame images (ordered by the numbers in their names) or a video file.
    Raises :class:`ClipInputError` naming the file for a missing path, an unreadable frame or
    video, and a clip of fewer than :data:`MIN_FRAMES` frames.
    """
    path = Path(path)
    if not path.exists():
        raise ClipInputError(f"{path} does not exist")
    frames, names = read_frames_folder(path) if path.is_dir() else read_video(path)
    if len(frames) < MIN_FRAMES:
        what = f"frame images ({', '.join(sorted(IMAGE_SUFFIXES))})" if path.is_dir() else "frames"
        raise ClipInputError(
            f"{path} holds {len(frames)} {what}; a clip needs at least {MIN_FRAMES} "
            "(onset, apex and the motion between)"
        )
    return frames, names


class RigidShift:
    """Undo a frame's global sub-pixel translation against ``reference`` (Lucas-Kanade on the
    whole image: a 2x2 least-squares solve per iteration). The reference's gradients and
    normal matrix are computed once, for every frame compared with it."""

    def __init__(self, reference: np.ndarray, iterations: int = 3):
        self.reference = reference
        self.iterations = iterations
        self.gy, self.gx = np.gradient(reference)
        gx, gy = self.gx, self.gy
        self.system = np.array(
            [[np.sum(gx * gx), np.sum(gx * gy)], [np.sum(gx * gy), np.sum(gy * gy)]]
        )

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` moved back onto the reference."""
        height, width = self.reference.shape
        shift = np.zeros(2)
        moved = frame
        for _ in range(self.iterations):
            residual = moved - self.reference
            rhs = -np.array([np.sum(self.gx * residual), np.sum(self.gy * residual)])
            shift += np.linalg.lstsq(self.system, rhs, rcond=None)[0]  # flat: no unique shift
            matrix = np.float32([[1, 0, -shift[0]], [0, 1, -shift[1]]])
            moved = cv2.warpAffine(
                frame,
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT,
            )
        return moved


def spot_apex(faces: Sequence[np.ndarray], sigma: float = 2.0) -> int:
    """The apex: the frame between onset (first) and offset (last) whose aligned face differs
    most from both.

    Each grey face crop is smoothed (sensor noise), gain-matched (brightness changes, flicker)
    and shifted back by its global translation (:class:`RigidShift`, head motion); what remains
    is non-rigid facial motion. A frame's score is the smaller of its mean absolute difference
    to the onset and to the offset, so slow drift that builds up over the clip does not win.
    """
    if len(faces) < 3:
        raise ValueError("apex spotting needs onset, offset and at least one frame between")

    def smooth(face: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(face.astype(np.float32), (0, 0), sigma)

    def difference(to: RigidShift, frame: np.ndarray) -> float:
        frame = frame * (to.reference.mean() / max(float(frame.mean()), 1e-6))
        return float(np.abs(to(frame) - to.reference)[inner].mean())

    smoothed = [smooth(face) for face in faces]
    height, width = smoothed[0].shape
    inner = (slice(height // 10, height - height // 10), slice(width // 10, width - width // 10))
    onset, offset = RigidShift(smoothed[0]), RigidShift(smoothed[-1])
    scores = [min(difference(onset, frame), difference(offset, frame)) for frame in smoothed[1:-1]]
    return 1 + int(np.argmax(scores))
