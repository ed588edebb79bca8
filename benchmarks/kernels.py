"""The stacked path under both CPU kernel sets: TensorFlow's Eigen kernels and oneDNN.

    python -m benchmarks.kernels                       (forms, step rates, ststnet's LOSO)
    python -m benchmarks.kernels --backbones ststnet rcn   (and rcn's LOSO)
    python -m benchmarks.kernels --quick               (forms and step rates only)

Each setting of ``TF_ENABLE_ONEDNN_OPTS`` (``0``: Eigen, as on CPUs without AVX-512 VNNI/BF16
or AMX; ``1``: oneDNN) runs in a process of its own, side by side in one run:

1. every fold-convolution form (:mod:`components.models.fold_conv`) at the geometries the
   stacked backbones use — a training step (forward and both gradients) of 51 members (17 folds
   × 3 seeds, a unit's width), batch 16, one thread — or "no gradient" where the kernel set has
   none;
2. the default model's training step, stacked over 51 members vs the ordinary Keras model
   (model-samples/s), with the form the process chose;
3. without ``--quick``: the embedded default's LOSO (``mer evaluate``, as
   ``benchmarks.backbones``) of each backbone asked for, stacked and fold by fold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MEMBERS, BATCH, REPEATS, EPOCHS = 51, 16, 15, 5
#: (site, map size, cin, cout, kernel, stride, dilation)
GEOMETRIES = (
    ("ststnet streams", 28, 3, 16, 3, 1, 1),
    ("rcn stream1", 28, 3, 16, 3, 3, 1),
    ("rcn stream3 (dilation 3)", 28, 3, 8, 3, 3, 3),
    ("rcn feed-forward 1×1", 10, 32, 32, 1, 1, 1),
    ("rcn recurrent 3×3", 10, 32, 32, 3, 1, 1),
)
SETTINGS = {"0": "Eigen (TF_ENABLE_ONEDNN_OPTS=0)", "1": "oneDNN (TF_ENABLE_ONEDNN_OPTS=1)"}


def form_ms(geometry, form: str) -> float | None:
    """Median ms of a training step of one fold convolution, or None without a gradient."""
    import numpy as np
    import tensorflow as tf

    from benchmarks.stacking import median_ms
    from components.models.fold_conv import fold_conv2d

    _, size, cin, cout, k, stride, dilation = geometry
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, size, size, MEMBERS * cin)), tf.float32)
    kernel = tf.Variable(rng.normal(size=(k, k, cin, MEMBERS * cout)).astype("float32"))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fold_conv2d(x, kernel, MEMBERS, stride, dilation, form)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, kernel])

    try:
        step(x)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return None
    return median_ms(step, x, REPEATS)


def step_rates() -> tuple[float, float]:
    """Model-samples/s of the default model's training step: ordinary, stacked ×MEMBERS."""
    import keras
    import numpy as np
    import tensorflow as tf

    from components.config import load_params
    from components.models import build_model
    from components.models.patch_stats import patch_stats_table
    from components.models.stacked import ststnet
    from components.training.fold_models import FoldAdam

    params = load_params("params.yaml")
    sizes = params.preprocess.input_sizes()
    size = sizes["flow_size"]
    rng = np.random.default_rng(0)
    n = 160
    xs = rng.normal(size=(n, size, size, 3)).astype("float32")
    ys = rng.integers(0, 3, n)
    steps = n // BATCH

    def rate(members: int | None) -> float:
        if members is None:
            model = build_model(params.model, **sizes)
            data = tf.data.Dataset.from_tensor_slices((xs, ys))
            model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                          steps_per_execution=steps)  # fmt: skip
        else:
            model = ststnet(params.model, members, sizes, 3)
            model.initialise(list(range(members)))
            order = np.stack([rng.permutation(n) for _ in range(members)], 1)
            stats = patch_stats_table(xs, "flow", False, 0)[:, 0]
            data = tf.data.Dataset.from_tensor_slices(
                ((xs[order], np.ones(order.shape, "float32"), stats[order]), ys[order])
            )
            model.compile(
                optimizer=FoldAdam(members, learning_rate=1e-3), steps_per_execution=steps
            )
        data = data.batch(BATCH).cache()
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False)
        return EPOCHS * n * (members or 1) / (time.perf_counter() - start)

    return rate(None), rate(MEMBERS)


def measure() -> dict:
    """This process's kernel set: the forms' step times and the default model's step rates."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from components.models.fold_conv import FORMS, chosen_form, onednn_enabled, process_form

    forms = {
        g[0]: {"chosen": chosen_form(g[4], g[6]), **{f: form_ms(g, f) for f in FORMS}}
        for g in GEOMETRIES
    }
    ordinary, stacked = step_rates()
    return {
        "onednn": onednn_enabled(),
        "process_form": process_form(),
        "forms": forms,
        "ordinary": ordinary,
        "stacked": stacked,
    }


def in_setting(setting: str) -> dict:
    environment = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
    environment.pop("MER_FOLD_CONV", None)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.kernels", "--measure"],
        env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def loso(setting: str, backbone_names: list[str]) -> list[dict]:
    """The embedded LOSO of each backbone, stacked and fold by fold, under ``setting``."""
    from benchmarks import backbones, composite

    os.environ["TF_ENABLE_ONEDNN_OPTS"] = setting
    base = composite.ensure(composite.EMBEDDED)
    runs = []
    for backbone in backbone_names:
        stacked = backbones.measure(base, backbone, True)
        alone = backbones.measure(base, backbone, False)
        runs.append({"backbone": backbone, "stacked": stacked, "alone": alone})
        print(
            f"{SETTINGS[setting]} {backbone}: stacked {stacked['wall']:.0f} s, fold by fold "
            f"{alone['wall']:.0f} s ({alone['wall'] / stacked['wall']:.1f}×)",
            flush=True,
        )
    return runs


def ms(value: float | None) -> str:
    return "no gradient" if value is None else f"{value:.1f}"


def forms_table(results: dict) -> str:
    from components.models.fold_conv import FORMS

    rows = []
    for site, *_ in GEOMETRIES:
        for setting, result in results.items():
            timing = result["forms"][site]
            cells = " | ".join(ms(timing[f]) for f in FORMS)
            rows.append(f"| {site} | {SETTINGS[setting]} | {cells} | `{timing['chosen']}` |")
    head = " | ".join(f"`{f}`, ms" for f in FORMS)
    rule = " | ".join("---:" for _ in FORMS)
    return (
        f"| geometry | kernels | {head} | form used |\n| --- | --- | {rule} | --- |\n"
        + "\n".join(rows)
    )


def rates_table(results: dict) -> str:
    rows = [
        f"| {SETTINGS[s]} | `{r['process_form']}` | {r['ordinary']:.0f} | {r['stacked']:.0f} | "
        f"{r['stacked'] / r['ordinary']:.1f}× |"
        for s, r in results.items()
    ]
    return (
        "| kernels | stacked form | ordinary, samples/s | stacked ×51, model-samples/s | "
        "stacked / ordinary |\n| --- | --- | ---: | ---: | ---: |\n" + "\n".join(rows)
    )


def loso_table(runs: dict) -> str:
    rows = []
    for setting, entries in runs.items():
        for entry in entries:
            stacked, alone = entry["stacked"], entry["alone"]
            rows.append(
                f"| {SETTINGS[setting]} | `{entry['backbone']}` | {stacked['wall']:.0f} s | "
                f"{alone['wall']:.0f} s | **{alone['wall'] / stacked['wall']:.1f}×** | "
                f"{stacked['uf1']:.3f} / {alone['uf1']:.3f} |"
            )
    return (
        "| kernels | backbone | LOSO stacked | LOSO fold by fold | speed-up | UF1 stacked / alone |\n"
        "| --- | --- | ---: | ---: | ---: | ---: |\n" + "\n".join(rows)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="forms and step rates only")
    parser.add_argument("--backbones", nargs="+", choices=("ststnet", "rcn"), default=["ststnet"])
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure()))
        return
    from benchmarks.results import write_section

    results = {}
    for setting in SETTINGS:
        print(f"{SETTINGS[setting]}: forms and step rates...", flush=True)
        results[setting] = in_setting(setting)
    body = (
        f"Each kernel set in a process of its own, one TensorFlow thread. Forms: a training step "
        f"(forward, both gradients) of one fold convolution over {MEMBERS} members (17 folds × 3 "
        f"seeds), batch {BATCH}, median of {REPEATS}.\n\n{forms_table(results)}\n\n"
        f"The default model's training step (params.yaml's model, random 28×28×3 inputs, batch "
        f"{BATCH}, {EPOCHS} timed epochs):\n\n{rates_table(results)}\n"
    )
    command = "python -m benchmarks.kernels"
    if args.backbones != ["ststnet"]:
        command += " --backbones " + " ".join(args.backbones)
    if not args.quick:
        runs = {setting: loso(setting, args.backbones) for setting in SETTINGS}
        body += (
            "\nThe embedded default's LOSO (`mer evaluate`, params.yaml's seeds and training, "
            f"as `benchmarks.backbones`), stacked and fold by fold:\n\n{loso_table(runs)}\n"
        )
    else:
        command += " --quick"
    print(body)
    write_section("kernels", command, body)


if __name__ == "__main__":
    main()
