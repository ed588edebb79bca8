"""A search's progress: one bar of trial-epochs with an ETA (on a terminal; Ray Tune's own
status tables are off) and one line per finished trial."""

from __future__ import annotations

from ray.tune import Callback

from components.progress import Bar, say
from components.tuning.halving import EPOCHS_DONE
from components.tuning.search import trial_identity


class SearchProgress(Callback):
    """Counts the epochs the trials report; a trial stopped early by the scheduler (or
    failed) takes its remaining epochs off the total."""

    def __init__(self, points: list[dict], slots, labels: list[str], expected: int):
        self.points, self.slots, self.labels = points, slots, labels
        planned = (
            sum(points[s.index]["epochs"] for s in slots)
            if slots is not None
            else expected * max(p["epochs"] for p in points)
        )
        self.planned = planned
        self.done: dict[str, int] = {}
        self._bar: Bar | None = None

    @property
    def bar(self) -> Bar:
        if self._bar is None:
            self._bar = Bar("tune", self.planned, "trial-epoch")
        return self._bar

    def __getstate__(self) -> dict:
        """Ray Tune pickles its callbacks with the experiment state: everything but the bar
        (a terminal stream cannot be pickled)."""
        return {**self.__dict__, "_bar": None}

    def _planned(self, trial) -> tuple[str, int]:
        key, index = trial_identity(trial.config, self.slots, trial.trial_id)
        return key, self.points[index]["epochs"]

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        key, _ = self._planned(trial)
        self.done[key] = max(self.done.get(key, 0), int(result.get(EPOCHS_DONE, 0)))
        self.bar.to(sum(self.done.values()))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial, "FAILED")

    def _ended(self, trial, how: str) -> None:
        key, planned = self._planned(trial)
        index = trial_identity(trial.config, self.slots, trial.trial_id)[1]
        epochs = self.done.get(key, 0)
        self.bar.drop(max(planned - epochs, 0))
        say(f"tune: trial {key} {self.labels[index]} {how} after {epochs} of {planned} epochs")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
