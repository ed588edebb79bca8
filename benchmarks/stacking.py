"""Stacked attention: the hand-written fold-stacked forms against the form derived from the layer.

    python -m benchmarks.stacking

Every attention type trains stacked through :class:`~components.attention.stacked.FoldVectorized`
(the ordinary layer's stateless call vectorised over the folds); a hand-written form is kept only
where it is measurably faster. In one run, for each type: a training step (forward, loss,
gradients) of the attention layer alone at a unit's shape — 17 folds, batch 16, the 10×10×16 map
of ``ststnet``'s ``fused`` point — with each form, one thread, median of repeated timings.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FOLDS, BATCH, SIZE, CHANNELS, REPEATS = 17, 16, 10, 16, 60


def step_ms(layer, x) -> float:
    import tensorflow as tf

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y, _ = layer(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_variables)

    step(x)
    return median_ms(step, x, REPEATS)


def median_ms(step, x, repeats: int) -> float:
    """Median wall milliseconds of ``step(x)`` over ``repeats`` calls (after the caller's
    warm-up call)."""
    import numpy as np

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from benchmarks.results import write_section
    from components.attention.factory import attention_class, make_attention
    from components.attention.registry import ATTENTION
    from components.attention.stacked import FoldVectorized
    from components.imports import load_target

    x = tf.constant(
        np.random.default_rng(0).normal(size=(BATCH, SIZE, SIZE, FOLDS, CHANNELS)), tf.float32
    )
    rows = []
    for name, entry in ATTENTION.items():
        if attention_class(name).input_rank != 4 or name == "none":
            continue
        derived = FoldVectorized(FOLDS, lambda n=name: make_attention(n, "inner"), name="d")
        derived.build(x.shape)
        derived_ms = step_ms(derived, x)
        hand_ms = None
        if entry.stacked:
            hand = load_target(entry.stacked)(FOLDS, name="h")
            hand.build(x.shape)
            hand_ms = step_ms(hand, x)
        used = "hand-written" if entry.stacked else "derived"
        rows.append((name, hand_ms, derived_ms, used))
        hand_text = f"{hand_ms:.2f}" if hand_ms is not None else "—"
        print(
            f"{name:8s} hand-written {hand_text:>6} ms   derived {derived_ms:6.2f} ms   uses {used}"
        )
    table = "\n".join(
        f"| `{name}` | {f'{hand:.2f}' if hand is not None else '—'} | {derived:.2f} | "
        f"{f'{derived / hand:.1f}×' if hand else '—'} | {used} |"
        for name, hand, derived, used in rows
    )
    body = f"""A training step (forward, loss, gradients) of the attention layer alone, stacked over
{FOLDS} folds, batch {BATCH}, a {SIZE}×{SIZE}×{CHANNELS} map (`ststnet`'s `fused` point), one
TensorFlow thread, median of {REPEATS}.

| type | hand-written, ms | derived (`FoldVectorized`), ms | derived / hand-written | stacked form used |
| --- | ---: | ---: | ---: | --- |
{table}

The derived form is exact by construction (tests/test_stacked.py checks every registered type's
forms against its layer, fold by fold); a hand-written form is kept where it is faster, and any
new type trains stacked through the derived one."""
    write_section("stacking", "python -m benchmarks.stacking", body)


if __name__ == "__main__":
    main()
