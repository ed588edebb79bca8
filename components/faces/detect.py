"""Face detection with offline models only: ``yuface`` (box + 5 landmarks), with OpenCV's Haar
cascade as a fallback (box only; landmarks then placed at the mean positions of a frontal face
inside the box)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

#: Five landmarks as fractions of a Haar face box (image-left eye, right eye, nose, mouth
#: corners): the mean of yuface's landmarks inside the Haar box, measured on the 81 frames of
#: the embedded dataset where both detectors fire (per-point std 0.01-0.03 of the box).
HAAR_LANDMARKS = np.array(
    [[0.285, 0.360], [0.711, 0.373], [0.486, 0.601], [0.298, 0.777], [0.669, 0.787]]
)


class NoFaceError(ValueError):
    """No face was found in an image."""


@dataclass(frozen=True)
class Face:
    """A detected face: box (x, y, w, h), 5 landmarks (image-left eye first), score, detector."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float
    detector: str


@functools.cache
def _haar() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV Haar cascade not loadable from {path}")
    return cascade


def detect_yuface(image: np.ndarray, min_score: float) -> Face | None:
    import yuface

    scores, boxes, landmarks = yuface.detect(image, conf=min_score)
    if len(scores) == 0:
        return None
    best = int(np.argmax(np.asarray(boxes)[:, 2] * np.asarray(boxes)[:, 3]))  # the largest face
    points = np.asarray(landmarks[best], dtype=np.float64).reshape(5, 2)
    return Face(tuple(int(v) for v in boxes[best]), points, float(scores[best]) / 100, "yuface")


def detect_haar(image: np.ndarray) -> Face | None:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    boxes = _haar().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
    if len(boxes) == 0:
        return None
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    points = np.array([x, y]) + HAAR_LANDMARKS * np.array([w, h])
    return Face((int(x), int(y), int(w), int(h)), points, 1.0, "haar")


def detect_face(image: np.ndarray, detector: str = "yuface", min_score: float = 0.5) -> Face:
    """The largest face in a BGR image; yuface first, then the Haar cascade unless
    ``detector='yuface_only'``. Raises :class:`NoFaceError`."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    face = None
    if detector in ("yuface", "yuface_only"):
        face = detect_yuface(image, min_score)
    if face is None and detector in ("yuface", "haar"):
        face = detect_haar(image)
    if face is None:
        raise NoFaceError(f"no face found by {detector}")
    return face
