"""Synchronous successive halving: every trial reaches a rung before any is cut.

ASHA decides at a rung as soon as a trial arrives, against the trials that arrived before it:
the first trial at a rung always goes on. With a handful of trials and fewer slots than
trials (the embedded search: 4 points, 2 slots) the early arrivals go on whatever their
scores, and ASHA cannot save half of the grid's epochs. Here every trial trains
``grace_period`` epochs (a trial that gets there early is paused, its slot given to the next
trial); when all have, the best ``ceil(n / reduction_factor)`` go on to the next rung
(``grace_period × reduction_factor``, ..., capped at ``max_t``) and the rest stop. Trials are
ranked as the search's result ranks them: by their best epoch so far (the metric, then the
lower validation loss), not by the score of the rung's epoch alone. This is one bracket of
Ray's :class:`~ray.tune.schedulers.HyperBandScheduler`, with the rung schedule set from
``grace_period`` instead of Hyperband's bracket formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.schedulers import HyperBandScheduler
from ray.tune.schedulers.hyperband import _Bracket

#: the metric a trial reports with every epoch, counting its epochs across restarts: the
#: schedulers' time axis (Ray's own ``training_iteration`` restarts with a resumed trial)
EPOCHS_DONE = "epochs_done"


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The epochs at which trials are compared: grace, grace·rf, ... below ``max_t``."""
    points, t = [], grace_period
    while t < max_t:
        points.append(t)
        t *= reduction_factor
    return points


def rank_key(uf1: float, val_loss: float) -> tuple[float, float]:
    """How trials are ranked, as the search's result ranks them: the metric, then the lower
    validation loss."""
    return uf1, -val_loss


def best_so_far(
    curve: Sequence[tuple[float, float]], upto: int | None = None
) -> tuple[float, float]:
    """The rank of a trial's best epoch among its first ``upto`` (all by default), per epoch
    ``(val_uf1, val_loss)``."""
    return max(rank_key(*epoch) for epoch in curve[:upto])


def replay(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    grace_period: int,
    reduction_factor: int,
    max_t: int,
) -> dict[str, int]:
    """The epochs each trial would run under synchronous halving, from full-grid curves
    (per trial, ``(val_uf1, val_loss)`` per epoch).

    Exact for this project's trials: a trial's epochs depend only on its point, the seed and
    the data (resumed trials go on exactly: tests/test_tune.py), and the cuts only on the
    scores. So one full grid tells what every halving schedule of it would have cut.
    """
    run = {label: 0 for label in curves}
    alive = list(curves)
    for rung in [*rungs(grace_period, reduction_factor, max_t), max_t]:
        scores = {label: best_so_far(curves[label], rung) for label in alive}
        run.update(dict.fromkeys(alive, rung))
        alive = sorted(alive, key=scores.__getitem__, reverse=True)
        alive = alive[: math.ceil(len(alive) / reduction_factor)]
    return run


class _BestSoFarBracket(_Bracket):
    """A bracket that cuts by each trial's best epoch so far (``best``: trial → score)."""

    def __init__(self, *args: Any, best: dict, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._best = best

    def successive_halving(self, metric: str, metric_op: float):
        good, bad = super().successive_halving(metric, metric_op)  # the rung bookkeeping
        if not bad:
            return good, bad
        ranked = sorted([*good, *bad], key=lambda trial: self._best[trial])
        cut = len(ranked) - len(good)
        return ranked[cut:], ranked[:cut]


class SynchronousHalving(HyperBandScheduler):
    """One synchronous successive-halving bracket over ``trials`` trials (see the module
    docstring). ``time_attr`` counts epochs (the trials' ``epochs_done``)."""

    def __init__(self, *, max_t: int, grace_period: int, reduction_factor: int, trials: int):
        super().__init__(time_attr=EPOCHS_DONE, max_t=max_t, reduction_factor=reduction_factor)
        self._s_max_1 = 1  # one bracket per band: a band is the whole search
        self._trials = trials
        self._grace = min(grace_period, max_t)
        self._halvings = len(rungs(self._grace, reduction_factor, max_t))
        self._best: dict = {}  # trial → (metric·sign, -val_loss) of its best epoch so far

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._metric in result:
            score = rank_key(self._metric_op * result[self._metric], result.get("val_loss", 0.0))
            self._best[trial] = max(self._best.get(trial, score), score)
        return super().on_trial_result(tune_controller, trial, result)

    def _create_bracket(self, s: int) -> _Bracket:
        # _Bracket(time_attr, max_trials, init_t_attr, max_t_attr, eta, s): all the trials, the
        # first rung at grace_period, one halving per rung
        schedule = (self._trials, self._grace, self._max_t_attr, self._eta, self._halvings)
        return _BestSoFarBracket(
            self._time_attr, *schedule, stop_last_trials=self._stop_last_trials, best=self._best
        )

    @staticmethod
    def epochs(n: int, grace_period: int, reduction_factor: int, max_t: int) -> int:
        """Epochs a search of ``n`` trials runs in all (every trial trains to its cut)."""
        total, alive, done = 0, n, 0
        for rung in [*rungs(grace_period, reduction_factor, max_t), max_t]:
            total += alive * (rung - done)
            done, alive = rung, math.ceil(alive / reduction_factor)
        return total
