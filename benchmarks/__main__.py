"""Run every benchmark in turn (``python -m benchmarks`` or ``make bench``); each writes its
section of benchmarks/RESULTS.md. ``train`` and ``tune`` need ``dvc repro`` to have run."""

import importlib
import sys

NAMES = ("models", "stacking", "preprocess", "train", "tune", "predict")

if __name__ == "__main__":
    for name in sys.argv[1:] or NAMES:
        print(f"== benchmarks.{name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()
