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
        self._sums: dict[Hashable, tuple[float, float]] = {}  # a model's cost and seconds done
        self._rates: dict[Hashable, float] = {}  # a model's seconds per unit of cost

    def __len__(self) -> int:
        return len(self._pending)

    def expected(self, index: int) -> float:
        """The expected seconds of unit ``index`` (an unmeasured model at the slowest rate)."""
        slowest = max(self._rates.values(), default=1.0)
        return self._costs[index] * self._rates.get(self._models[index], slowest)

    def pop(self) -> int:
        """The next unit to start: the longest expected; among equals an unmeasured model's,
        then the earliest given."""
        rank = {index: k for k, index in enumerate(self._pending)}
        chosen = min(
            self._pending,
            key=lambda i: (-self.expected(i), self._models[i] in self._rates, rank[i]),
        )
        self._pending.remove(chosen)
        return chosen

    def finished(self, index: int, seconds: float) -> None:
        """Unit ``index`` took ``seconds``: its model's rate is the mean over its finished
        units (seconds over cost)."""
        model, cost = self._models[index], self._costs[index]
        if cost <= 0:
            return
        done, total = self._sums.get(model, (0.0, 0.0))
        self._sums[model] = (done + cost, total + seconds)
        self._rates[model] = (total + seconds) / (done + cost)
