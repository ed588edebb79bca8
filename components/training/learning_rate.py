"""The learning rate of each epoch (``train.lr_schedule``), the same for every fold and path.

A rate is a function of the epoch only, set before the epoch starts, so a resumed run and a
fold trained stacked or alone step with the same rates. ``one_cycle`` follows PyTorch's
``OneCycleLR`` defaults at epoch granularity: a linear warm-up from ``rate / 25`` over the first
30% of the epochs, then a cosine anneal to ``rate / 10⁴`` at the last.
"""

from __future__ import annotations

import math

import keras

from components.config import TrainConfig

WARM_UP_FRACTION = 0.3
START_DIVISOR = 25.0
FINAL_DIVISOR = 1e4


def _cosine(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The rate of 0-based ``epoch`` of a ``cfg.epochs``-epoch run."""
    rate, total = cfg.learning_rate, cfg.epochs
    if cfg.lr_schedule == "constant":
        return rate
    if cfg.lr_schedule == "cosine":
        return _cosine(rate, 0.0, epoch / total)
    warm = max(1, round(WARM_UP_FRACTION * total))
    if epoch < warm:
        low = rate / START_DIVISOR
        return low + (rate - low) * epoch / warm
    return _cosine(rate, rate / FINAL_DIVISOR, (epoch - warm) / max(1, total - 1 - warm))


def schedule_callback(cfg: TrainConfig) -> keras.callbacks.Callback | None:
    """A callback that sets each epoch's rate before it starts (None for a constant rate)."""
    if cfg.lr_schedule == "constant":
        return None
    return keras.callbacks.LearningRateScheduler(lambda epoch, _: learning_rate(cfg, epoch))
