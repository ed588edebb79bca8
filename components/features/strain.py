"""Optical strain from a flow field.

The strain tensor is ε = ½(∇w + ∇wᵀ) for the flow w = (u, v). We use its magnitude

    |ε| = sqrt(ε_xx² + ε_yy² + 2 ε_xy²) = sqrt(u_x² + v_y² + ½(u_y + v_x)²)

(the common form in STSTNet and successors), with gradients by central differences
(``np.gradient``, one-sided at the borders), in units of pixels per pixel.
"""

from __future__ import annotations

import numpy as np


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Strain magnitude (H, W) of a flow field (H, W, 2)."""
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    u_y, u_x = np.gradient(u)
    v_y, v_x = np.gradient(v)
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2)
