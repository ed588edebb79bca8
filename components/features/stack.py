"""Model inputs from a flow field: the (u, v, strain) stack and the resampled clip."""

from __future__ import annotations

import cv2
import numpy as np

from components.features.strain import optical_strain


def resize_flow(flow: np.ndarray, size: int) -> np.ndarray:
    """Area-resample a flow field to ``size``×``size``, scaling vectors to the new pixel size."""
    height, width = flow.shape[:2]
    resized = cv2.resize(flow, (size, size), interpolation=cv2.INTER_AREA)
    return resized * np.array([size / width, size / height], dtype=np.float32)


def minmax(channel: np.ndarray, percentile: float = 1.0) -> np.ndarray:
    """Scale to [0, 1] between the ``percentile`` and ``100 - percentile`` values (values outside
    are clipped), so a few border pixels of TV-L1 or strain cannot set the scale; a constant
    channel becomes 0. ``percentile=0`` is plain min-max."""
    low, high = np.percentile(channel, [percentile, 100 - percentile])
    if high - low < 1e-12:
        return np.zeros_like(channel, dtype=np.float32)
    return np.clip((channel - low) / (high - low), 0, 1).astype(np.float32)


def flow_stack(flow: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) float32: u, v and optical strain, each normalised to [0, 1] by a robust
    min-max (1st to 99th percentile, see :func:`minmax`).

    Strain is computed at the face resolution (before resizing) so that resampling does not
    blur the gradients; u and v are resized with their vectors scaled.
    """
    strain = cv2.resize(
        optical_strain(flow).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA
    )
    small = resize_flow(flow, size)
    return np.stack([minmax(small[..., 0]), minmax(small[..., 1]), minmax(strain)], axis=-1)


def flow_statistics(flow: np.ndarray) -> dict[str, float]:
    """Raw motion statistics at face resolution (kept in the manifest, before normalisation)."""
    magnitude = np.linalg.norm(flow, axis=-1)
    return {
        "flow_mean_px": float(magnitude.mean()),
        "flow_p99_px": float(np.percentile(magnitude, 99)),
        "flow_max_px": float(magnitude.max()),
        "strain_mean": float(optical_strain(flow).mean()),
    }


def sample_indices(n_frames: int, count: int) -> np.ndarray:
    """``count`` frame indices evenly spread from the first to the last frame (repeats when the
    clip is shorter than ``count``)."""
    if n_frames < 1:
        raise ValueError("a clip needs at least one frame")
    return np.rint(np.linspace(0, n_frames - 1, count)).astype(int)
