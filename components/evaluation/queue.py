"""The order units start in: the longest expected first, by what the run has measured so far.

A unit's static cost (rows per epoch: seeds × folds × the largest fold's training samples) says
how its time compares with another unit's of the same model, not across models: an ``mhsa``
unit at ``fused`` takes about 2.8 times a ``spatial`` unit of the same folds and seeds (on the
development set, benchmarks/RESULTS.md "sweep"). So the queue learns each
model's seconds per unit of cost from its finished units and starts the unit with the longest
expected time next (longest-processing-time-first). A model not measured yet counts as the
slowest measured one and goes before the measured ones of that expected time, so the first
units of every model run early and measure it, and the costly models' remaining units are not
left for the end while the other workers idle.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class UnitQueue:
    """Pending units (their indices), handed out longest expected first."""

    def __init__(
        self,
        pending: Sequence[int],
        costs: Sequence[float],
        models: Sequence[Hashable],
    ):
        self._pending = list(pending)  # in the given order: ties keep it
        self._costs, self._models = costs, models
        self._done: dict[Hashable, tuple[float, float]] = {}  # a model's cost and seconds done

    def __len__(self) -> int:
        return len(self._pending)

    def rate(self, model: Hashable) -> float | None:
        """``model``'s seconds per unit of cost over its finished units (None: none yet)."""
        if model not in self._done:
            return None
        cost, seconds = self._done[model]
        return seconds / cost

    def expected(self, index: int) -> float:
        """The expected seconds of unit ``index`` (an unmeasured model at the slowest rate)."""
        slowest = max((self.rate(m) for m in self._done), default=1.0)
        rate = self.rate(self._models[index])
        return self._costs[index] * (slowest if rate is None else rate)

    def pop(self) -> int:
        """The next unit to start: the longest expected; among equals an unmeasured model's,
        then the earliest given."""
        pending = self._pending
        position = min(
            range(len(pending)),
            key=lambda k: (-self.expected(pending[k]), self._models[pending[k]] in self._done, k),
        )
        return pending.pop(position)

    def finished(self, index: int, seconds: float) -> None:
        """Unit ``index`` took ``seconds``: its model's rate is the mean over its finished
        units (seconds over cost)."""
        model, cost = self._models[index], self._costs[index]
        if cost <= 0:
            return
        done, total = self._done.get(model, (0.0, 0.0))
        self._done[model] = (done + cost, total + seconds)
