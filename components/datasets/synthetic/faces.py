"""Real face images that ship inside installed packages, and per-subject looks derived from them.

Both sources are public domain: ``skimage.data.astronaut()`` (Eileen Collins, NASA) and
matplotlib's ``sample_data/grace_hopper.jpg`` (US Navy). Their five landmarks (eyes, nose tip,
mouth corners; image-left first) were measured once with ``yuface`` and are fixed here so the
generator does not depend on a detector.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: name -> 5 landmarks (x, y) in the source image: eye, eye, nose, mouth corner, mouth corner.
SOURCE_LANDMARKS: dict[str, np.ndarray] = {
    "astronaut": np.array(
        [[200, 101], [247, 102], [220, 124], [198, 142], [239, 143]], dtype=np.float64
    ),
    "grace_hopper": np.array(
        [[227, 193], [307, 195], [266, 240], [228, 267], [302, 269]], dtype=np.float64
    ),
}
IDENTITIES: tuple[str, ...] = tuple(SOURCE_LANDMARKS)


@functools.cache
def source_image(name: str) -> np.ndarray:
    """The source face as a BGR uint8 image."""
    if name == "astronaut":
        import skimage.data

        return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    if name == "grace_hopper":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"matplotlib sample image not readable: {path}")
        return image
    raise ValueError(f"unknown source face {name!r}; known: {', '.join(IDENTITIES)}")


@dataclass(frozen=True)
class SubjectLook:
    """How one synthetic subject is rendered from a source face.

    ``to_frame`` is the 2×3 affine from source pixels to frame pixels (includes any mirroring);
    ``landmarks`` are the five landmarks in frame pixels, image-left eye and mouth corner first.
    """

    identity: str
    to_frame: np.ndarray
    landmarks: np.ndarray
    gains: np.ndarray
    gamma: float
    gradient: np.ndarray


def make_subject(index: int, frame_size: int, rng: np.random.Generator) -> SubjectLook:
    """An identity-preserving variation of a source face: crop, scale, rotation, mirror, light."""
    identity = IDENTITIES[index % len(IDENTITIES)]
    mirror = (index // len(IDENTITIES)) % 2 == 1
    points = SOURCE_LANDMARKS[identity]
    eyes = points[:2].mean(axis=0)
    mouth = points[3:].mean(axis=0)
    interocular = float(np.linalg.norm(points[1] - points[0]))
    side = interocular * 3.0 * rng.uniform(0.92, 1.08)
    centre = (eyes + mouth) / 2 + rng.uniform(-0.05, 0.05, size=2) * interocular
    angle = rng.uniform(-6.0, 6.0)
    scale = frame_size / side
    to_frame = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    to_frame[:, 2] += frame_size / 2 - centre
    if mirror:
        to_frame = np.array([[-1.0, 0, frame_size - 1], [0, 1.0, 0]]) @ np.vstack(
            [to_frame, [0, 0, 1]]
        )
    landmarks = np.c_[points, np.ones(len(points))] @ to_frame.T
    # image-left first for the eye and mouth pairs, whatever the mirroring
    for pair in ((0, 1), (3, 4)):
        if landmarks[pair[0], 0] > landmarks[pair[1], 0]:
            landmarks[list(pair)] = landmarks[list(pair[::-1])]
    return SubjectLook(
        identity=identity,
        to_frame=to_frame,
        landmarks=landmarks,
        gains=rng.uniform(0.88, 1.12, size=3),
        gamma=float(rng.uniform(0.8, 1.25)),
        gradient=rng.uniform(-0.15, 0.15, size=2),
    )


def photometric(image: np.ndarray, look: SubjectLook) -> np.ndarray:
    """Apply a subject's lighting (gamma, colour gains, linear illumination gradient); float32."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = 1 + look.gradient[0] * (xs / w - 0.5) + look.gradient[1] * (ys / h - 0.5)
    out = (image.astype(np.float32) / 255.0) ** look.gamma
    return out * look.gains.astype(np.float32) * ramp[..., None] * 255.0
