"""Common random numbers for paired comparisons: the attention a model adds draws its initial
weights from a stream of its own, so every other layer starts from the same weights as in the
same backbone with another attention (or none) trained with the same seed.

Keras draws the default seed of every initializer and seed generator from Python's ``random``
when the layer is made (``keras.src.random.seed_generator.make_default_seed``): a layer made in
the middle of a model moves the draws of every layer after it. :func:`own_random_stream` makes
the layers inside it from a stream seeded by the current state and a name, and puts the state
back as it was afterwards, so the rest of the model draws exactly what it would have drawn
without them. With batch order, augmentation and validation subjects already a function of the
seed and the fold only, the arms of a comparison then share all the seed noise they can: what
a per-seed paired difference cancels (:meth:`components.statistics.TrainingNoise.of_differences`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def own_random_stream(name: str) -> Iterator[None]:
    """Python's ``random`` seeded from its current state and ``name`` inside, restored after."""
    state = random.getstate()
    digest = hashlib.sha256(repr(state).encode() + name.encode()).digest()
    random.seed(int.from_bytes(digest[:8], "little"))
    try:
        yield
    finally:
        random.setstate(state)
