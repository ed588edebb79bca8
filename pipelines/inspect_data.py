"""``mer inspect``: read the configured datasets and say what was found and what was rejected."""

from __future__ import annotations

import argparse
from collections import Counter

from components.config import load_params
from components.datasets import read_dataset
from components.datasets.labels import COMPOSITE_CLASSES, composite_label


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--show", type=int, default=20, help="how many rejected rows to list (default 20)"
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    for cfg in params.datasets:
        result = read_dataset(cfg)
        subjects = {s.subject for s in result.samples}
        classes = Counter(composite_label(s.dataset, s.emotion) for s in result.samples)
        composite = ", ".join(f"{name} {classes[i]}" for i, name in enumerate(COMPOSITE_CLASSES))
        emotions = Counter(s.emotion for s in result.samples)
        print(f"{cfg.name} at {cfg.root}:")
        print(f"  {len(result.samples)} samples from {len(subjects)} subjects")
        print(f"  native: {', '.join(f'{k} {v}' for k, v in sorted(emotions.items()))}")
        print(f"  composite: {composite}; outside the composite task: {classes[None]}")
        print(f"  quarantined: {len(result.rejections)}; excluded: {len(result.excluded)}")
        for rejection in result.rejections[: args.show]:
            print(f"    {rejection}")
    return 0
