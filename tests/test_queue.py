"""The order units start in: longest expected first, learnt from the finished units."""

import pytest

from components.evaluation.queue import UnitQueue


def drain(queue: UnitQueue, seconds_per_cost: dict[str, float], costs, models) -> list[int]:
    """Start units one at a time (one worker), each finishing before the next starts."""
    order = []
    while queue:
        index = queue.pop()
        order.append(index)
        queue.finished(index, costs[index] * seconds_per_cost[models[index]])
    return order


def test_a_slow_model_measured_on_its_first_unit_goes_first_after_it() -> None:
    """Equal static costs; mhsa units take 4× as long. Each model's first unit runs first (to
    measure it), then mhsa's remaining units, then the cheap ones."""
    models = ["spatial"] * 3 + ["mhsa"] * 3
    costs = [10.0] * 6
    queue = UnitQueue(range(6), costs, models)
    order = drain(queue, {"spatial": 1.0, "mhsa": 4.0}, costs, models)
    assert order == [0, 3, 4, 5, 1, 2]


def test_expected_times_are_cost_times_the_models_mean_rate() -> None:
    models = ["a", "a", "b", "b"]
    costs = [2.0, 6.0, 5.0, 1.0]
    queue = UnitQueue([1, 2, 0, 3], costs, models)
    assert queue.expected(0) == 2.0  # nothing measured: the cost itself
    queue.finished(1, 30.0)  # a: 5 s per cost
    assert queue.expected(0) == pytest.approx(10.0)
    assert queue.expected(3) == pytest.approx(5.0)  # b unmeasured: the slowest measured rate
    queue.finished(2, 5.0)  # b: 1 s per cost
    assert queue.expected(3) == pytest.approx(1.0)
    queue.finished(0, 2.0)  # a: (30 + 2) s over (6 + 2) cost
    assert queue.expected(0) == pytest.approx(32 / 8 * 2)


def simulate(order, costs, models, rate: dict[str, float], workers: int = 2) -> float:
    """When the last unit ends if ``workers`` take units as they free up (``order``: a
    queue-like object with ``pop`` / ``finished`` / ``len``), each unit reported finished
    at its end, before the freed worker takes the next."""
    import heapq

    running: list = []  # (end time, index)
    now = 0.0
    while order or running:
        while order and len(running) < workers:
            index = order.pop()
            heapq.heappush(running, (now + costs[index] * rate[models[index]], index))
        now, index = heapq.heappop(running)
        order.finished(index, costs[index] * rate[models[index]])
    return now


class StaticOrder:
    """The units in a fixed order (what a submit-everything-at-once run does)."""

    def __init__(self, order):
        self.order = list(order)

    def __len__(self) -> int:
        return len(self.order)

    def pop(self) -> int:
        return self.order.pop(0)

    def finished(self, index: int, seconds: float) -> None:
        pass


def test_longest_processing_time_first_packs_near_ideal() -> None:
    """On two workers, the learnt order ends within 5% of ideal packing for a sweep-like mix
    (7 models × 4 units of similar cost, mhsa's 4× slower), where the static order by cost
    leaves mhsa units for the end (9% over ideal)."""
    names = ("none", "se", "eca", "channel", "spatial", "cbam", "mhsa")
    models = [m for m in names for _ in range(4)]
    costs = [float(c) for _ in names for c in (40, 42, 44, 46)]
    rate = {m: 4.0 if m == "mhsa" else 1.0 for m in names}
    times = [c * rate[m] for c, m in zip(costs, models, strict=True)]
    ideal = max(sum(times) / 2, max(times))
    static = sorted(range(len(costs)), key=lambda i: -costs[i])
    learnt = simulate(UnitQueue(static, costs, models), costs, models, rate)
    plain = simulate(StaticOrder(static), costs, models, rate)
    assert learnt <= 1.05 * ideal, (learnt, ideal)
    assert plain > 1.05 * ideal, (plain, ideal)


@pytest.mark.parametrize("workers", [2, 8])
def test_splitting_a_costly_variant_keeps_packing_near_ideal(workers: int) -> None:
    """A sweep of 6 cheap models and one costing 20× per sample (3 seeds, 68 folds): in units
    of 17 folds × 3 seeds its 4 units, 20× the others, end the run late on 8 workers (the
    work spread evenly would end at 0.65 of such a unit); cut as unit_shape cuts them, the run
    ends within 10% of the work spread evenly, on 2 and on 8 workers."""
    from components.evaluation.protocol import unit_shape

    def sweep(split: bool):
        costs, models = [], []
        for name, weight in [*((f"cheap{k}", 1.0) for k in range(6)), ("costly", 20.0)]:
            folds, seeds = unit_shape(weight, 17, 3) if split else (17, 3)
            units = -(-68 // folds) * -(-3 // seeds)
            costs += [folds * seeds * weight] * units
            models += [name] * units
        rate = dict.fromkeys(models, 1.0)
        even = sum(costs) / workers
        pending = sorted(range(len(costs)), key=lambda i: -costs[i])
        return simulate(UnitQueue(pending, costs, models), costs, models, rate, workers) / even

    assert sweep(split=True) <= 1.10
    if workers == 8:
        assert sweep(split=False) > 1.5
