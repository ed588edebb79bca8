"""TV-L1 optical flow between two aligned grey face crops."""

from __future__ import annotations

import cv2
import numpy as np

from components.config import TVL1Config


def tvl1(cfg: TVL1Config) -> cv2.optflow.DualTVL1OpticalFlow:
    """An OpenCV Dual TV-L1 solver configured from ``params.yaml``."""
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    solver.setTau(cfg.tau)
    solver.setLambda(cfg.data_weight)
    solver.setTheta(cfg.theta)
    solver.setScalesNumber(cfg.scales)
    solver.setScaleStep(cfg.scale_step)
    solver.setWarpingsNumber(cfg.warps)
    solver.setEpsilon(cfg.epsilon)
    solver.setInnerIterations(cfg.inner_iterations)
    solver.setOuterIterations(cfg.outer_iterations)
    solver.setMedianFiltering(cfg.median_filtering)
    return solver


def match_gain(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``image`` scaled so its mean brightness equals ``reference``'s (removes flicker that TV-L1
    would otherwise read as motion)."""
    image = image.astype(np.float32)
    scale = float(reference.mean()) / max(float(image.mean()), 1e-6)
    return np.clip(image * scale, 0, 255).astype(np.uint8)


def optical_flow(onset: np.ndarray, apex: np.ndarray, cfg: TVL1Config) -> np.ndarray:
    """Flow (u, v) in pixels from ``onset`` to ``apex`` (uint8 grey, same size): (H, W, 2)."""
    if onset.shape != apex.shape:
        raise ValueError(f"frame sizes differ: {onset.shape} vs {apex.shape}")
    flow = tvl1(cfg).calc(onset, match_gain(onset, apex), None)
    if not np.isfinite(flow).all():
        raise FloatingPointError("TV-L1 returned non-finite flow")
    return flow
