"""Protocol predictions simulated with a known truth, to check the uncertainty procedures without
training: do the subject-bootstrap intervals cover the true UF1 / UAR at their nominal rate, and
does the paired comparison call "better" or "worse" no more often than it should when nothing
differs?

The model: each subject has an ability (its clips are easier or harder for every variant:
subjects differ far more than clips), each variant an effect on the log-odds of a correct
prediction, and each (variant, subject) pair a small interaction; a clip of class ``c`` is
predicted correctly with probability ``sigmoid(base + class_offset[c] + ability + effect +
interaction)``, else as one of the other classes at random. The truth is the metric of the
expected pooled confusion matrix over the subject population (estimated once from a very large
number of simulated subjects).

Training seeds (:meth:`World.seeded_confusions`): each trained model of a variant shifts the
log-odds of every subject by one draw (``seed_sd``: a seed makes the whole model a little
better or worse, what a subject bootstrap cannot see) and of each subject by another
(``seed_subject_sd``), and draws its clips' outcomes anew.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.statistics import uf1_uar

CLASSES = 3
#: clips per class of a subject: the real composite's 68 subjects cycled (250/109/83 in all)
COMPOSITE_MEAN_COUNTS = (250 / 68, 109 / 68, 83 / 68)


@dataclass(frozen=True)
class World:
    """A population of subjects and how a variant does on them."""

    base: float = 1.2  # log-odds of a correct prediction for an average subject and class
    class_offsets: tuple[float, float, float] = (0.4, -0.2, -0.4)
    subject_sd: float = 1.0  # subject ability
    interaction_sd: float = 0.15  # variant × subject
    seed_sd: float = 0.0  # a trained model's shift on every subject
    seed_subject_sd: float = 0.1  # and on each subject
    #: the share of those shifts' variance that every variant trained with the same seed has
    #: in common (common random numbers: batch order, augmentation, shared initial weights)
    seed_shared: float = 0.0
    counts: tuple[float, float, float] = COMPOSITE_MEAN_COUNTS  # mean clips per class

    def confusions(
        self, rng: np.random.Generator, subjects: int, effects: tuple[float, ...]
    ) -> np.ndarray:
        """Per variant and subject, the confusion matrix of its clips: ``(V, n, K, K)``; all
        variants are scored on the same subjects and clips (a paired design)."""
        ability = rng.normal(0, self.subject_sd, size=subjects)
        clips = rng.poisson(np.asarray(self.counts), size=(subjects, CLASSES))
        out = np.zeros((len(effects), subjects, CLASSES, CLASSES), np.int64)
        for v, effect in enumerate(effects):
            logit = self._logit(ability, effect) + rng.normal(
                0, self.interaction_sd, size=(subjects, 1)
            )
            out[v] = _outcomes(rng, clips, logit)
        return out

    def seeded_confusions(
        self, rng: np.random.Generator, subjects: int, effects: tuple[float, ...], seeds: int
    ) -> np.ndarray:
        """:meth:`confusions` with ``seeds`` trained models per variant: ``(V, S, n, K, K)``."""
        ability = rng.normal(0, self.subject_sd, size=subjects)
        clips = rng.poisson(np.asarray(self.counts), size=(subjects, CLASSES))
        out = np.zeros((len(effects), seeds, subjects, CLASSES, CLASSES), np.int64)
        # drawn only when shared (the draws of a world without it stay as they were)
        shared = [
            self._seed_shift(rng, subjects) if self.seed_shared else 0.0 for _ in range(seeds)
        ]
        for v, effect in enumerate(effects):
            logit = self._logit(ability, effect) + rng.normal(
                0, self.interaction_sd, size=(subjects, 1)
            )
            for s in range(seeds):
                shift = self._seed_shift(rng, subjects)
                if self.seed_shared:
                    shift = (
                        np.sqrt(self.seed_shared) * shared[s]
                        + np.sqrt(1 - self.seed_shared) * shift
                    )
                out[v, s] = _outcomes(rng, clips, logit + shift)
        return out

    def _seed_shift(self, rng: np.random.Generator, subjects: int) -> np.ndarray:
        """A trained model's log-odds shift: one for every subject plus one per subject."""
        return rng.normal(0, self.seed_sd) + rng.normal(0, self.seed_subject_sd, (subjects, 1))

    def _logit(self, ability: np.ndarray, effect: float) -> np.ndarray:
        return self.base + np.asarray(self.class_offsets)[None] + ability[:, None] + effect

    @functools.cache  # noqa: B019 - a World is frozen and few are made
    def truth(self, effect: float, population: int = 400_000) -> tuple[float, float]:
        """UF1 and UAR of the expected pooled confusion of a variant with ``effect``."""
        rng = np.random.default_rng(2024)
        pooled = self.confusions(rng, population, (effect,))[0].sum(axis=0)
        uf1, uar = uf1_uar(pooled)
        return float(uf1), float(uar)


def _outcomes(rng: np.random.Generator, clips: np.ndarray, logit: np.ndarray) -> np.ndarray:
    """Per-subject confusions ``(n, K, K)`` of ``clips`` ``(n, K)`` predicted correctly with
    probability ``sigmoid(logit)``, the wrong ones split at random between the other classes."""
    p = 1 / (1 + np.exp(-logit))
    correct = rng.binomial(clips, p)
    wrong = clips - correct
    first = rng.binomial(wrong, 0.5)
    out = np.zeros((len(clips), CLASSES, CLASSES), np.int64)
    for c in range(CLASSES):
        others = [k for k in range(CLASSES) if k != c]
        out[:, c, c] = correct[:, c]
        out[:, c, others[0]] = first[:, c]
        out[:, c, others[1]] = wrong[:, c] - first[:, c]
    return out


def seeded_frame(confusions: np.ndarray) -> pd.DataFrame:
    """The predictions table of one variant's ``(S, n, K, K)`` seeded confusions."""
    return pd.concat([predictions_frame(c, seed=s) for s, c in enumerate(confusions)])


def predictions_frame(confusion: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """A protocol predictions table (one row per clip) for per-subject confusions
    ``(n, K, K)``, subjects named ``s0``, ``s1``, ... (what the statistics functions read)."""
    rows = []
    for s, matrix in enumerate(confusion):
        for true in range(CLASSES):
            for predicted in range(CLASSES):
                rows += [(seed, f"s{s}", true, predicted)] * int(matrix[true, predicted])
    frame = pd.DataFrame(rows, columns=["seed", "subject_id", "true", "predicted"])
    frame["uid"] = [f"{s}/{k}" for k, s in enumerate(frame.subject_id)]
    return frame
