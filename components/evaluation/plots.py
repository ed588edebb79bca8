"""Pictures of results: confusion matrices, per-class F1, attention maps over faces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def confusion_png(
    matrix: np.ndarray, class_names: Sequence[str], title: str, path: str | Path
) -> None:
    """Counts and row-normalised recall in each cell."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=120)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{count}\n{share[i, j]:.0%}",
            ha="center",
            va="center",
            color="white" if share[i, j] > 0.6 else "black",
            fontsize=9,
        )
    ax.set_xticks(range(len(class_names)), class_names, rotation=30)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def f1_bars_png(
    per_subset: dict[str, dict[str, float | None]], path: str | Path, title: str
) -> None:
    """Grouped bars: F1 per class for each subset (composite, each dataset)."""
    subsets = list(per_subset)
    classes = list(next(iter(per_subset.values())))
    width = 0.8 / len(subsets)
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=120)
    for k, subset in enumerate(subsets):
        values = [per_subset[subset][c] or 0.0 for c in classes]
        ax.bar(np.arange(len(classes)) + k * width, values, width, label=subset)
    ax.set_xticks(np.arange(len(classes)) + width * (len(subsets) - 1) / 2, classes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def spatial_map(attention: np.ndarray) -> np.ndarray | None:
    """One sample's attention as an (h, w) map, or None when the module has none.

    Spatial/CBAM maps (h, w, 1) are used as they are; self-attention (N, M) from a square grid
    of N queries to a square grid of M keys (M = N, or fewer when the keys are pooled) becomes
    the attention each key position receives (mean over queries); channel weights (C,) and
    frame attention have no spatial layout.
    """
    if attention.ndim == 3 and attention.shape[-1] == 1:
        return attention[..., 0]
    if attention.ndim == 2 and all(_square(n) for n in attention.shape):
        side = math.isqrt(attention.shape[1])
        return attention.mean(axis=0).reshape(side, side)
    return None


def _square(n: int) -> bool:
    return math.isqrt(n) ** 2 == n


HEAT = "inferno"  # perceptually uniform; every heat panel has a colour bar


def overlay(face: np.ndarray, heat: np.ndarray, size: int = 160) -> np.ndarray:
    """A grey face with a heat map (min-max scaled to 0-1) blended over it in :data:`HEAT`,
    RGB uint8."""
    face = cv2.resize(face.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    face = (face - face.min()) / max(np.ptp(face), 1e-6)
    heat = cv2.resize(heat.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    heat = (heat - heat.min()) / max(np.ptp(heat), 1e-6)
    colour = plt.get_cmap(HEAT)(heat)[..., :3]
    blended = 0.55 * face[..., None] + 0.45 * colour
    return (255 * np.clip(blended, 0, 1)).astype(np.uint8)


def attention_grid_png(examples: list[dict], path: str | Path, title: str) -> None:
    """One column per example: the face at apex, the motion (flow magnitude) over it, and the
    model's attention over it (or a note when the attention has no spatial map).

    Each example: {"face": (H, W) grey, "flow": (S, S, 3), "attention": array | None,
    "caption": str}.
    """
    if not examples:
        return
    width = max(5.0, 1.9 * len(examples))  # room for the title with few examples
    fig, axes = plt.subplots(3, len(examples), figsize=(width, 6.0), dpi=110, squeeze=False)
    for column, example in enumerate(examples):
        face = example["face"]
        motion = np.hypot(
            example["flow"][..., 0] - np.median(example["flow"][..., 0]),
            example["flow"][..., 1] - np.median(example["flow"][..., 1]),
        )
        heat = spatial_map(example["attention"]) if example["attention"] is not None else None
        axes[0, column].imshow(cv2.resize(face, (160, 160)), cmap="gray")
        axes[0, column].set_title(example["caption"], fontsize=7)
        axes[1, column].imshow(overlay(face, motion))
        if heat is not None:
            axes[2, column].imshow(overlay(face, heat))
        else:
            axes[2, column].text(
                0.5, 0.5, "no spatial\nattention map", ha="center", va="center", fontsize=8
            )
        for row in range(3):
            axes[row, column].axis("off")
    axes[1, 0].text(-0.15, 0.5, "motion", transform=axes[1, 0].transAxes, rotation=90, va="center")
    axes[2, 0].text(
        -0.15, 0.5, "attention", transform=axes[2, 0].transAxes, rotation=90, va="center"
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    scale = plt.cm.ScalarMappable(cmap=HEAT, norm=plt.Normalize(0, 1))
    fig.colorbar(scale, ax=axes[1:, :].ravel().tolist(), shrink=0.7, label="min → max per map")
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
