"""``mer inspect``: read the configured datasets and say what was found and what was rejected:
per dataset (a released-features CSV can hold several) the samples per composite class and the
subjects, native emotions, and every quarantined row with its file, row and reason."""

from __future__ import annotations

import argparse
from collections import Counter

from components.config import load_params
from pipelines.arguments import non_negative_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--show",
        type=non_negative_int,
        default=20,
        help="how many rejected rows to list (default 20)",
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    from components.datasets import read_dataset
    from components.datasets.labels import COMPOSITE_CLASSES
    from components.preprocessing.extract import label_sample

    for cfg in params.datasets:
        result = read_dataset(cfg)
        labelled = [(s, label_sample(s)) for s in result.samples]
        print(f"{cfg.name} at {cfg.root}:")
        print(
            f"  {len(result.samples)} samples from {len({s.subject_id for s in result.samples})} subjects"
        )
        for dataset in sorted({s.dataset for s in result.samples}):
            mine = [(s, item) for s, item in labelled if s.dataset == dataset]
            classes = Counter(item.label if item else None for _, item in mine)
            composite = ", ".join(
                f"{name} {classes[i]}" for i, name in enumerate(COMPOSITE_CLASSES)
            )
            outside = f"; outside the composite task {classes[None]}" if classes[None] else ""
            print(
                f"  {dataset}: {len(mine)} samples, {len({s.subject for s, _ in mine})} subjects; {composite}{outside}"
            )
            if all(s.kind == "frames" for s, _ in mine):
                emotions = Counter(s.emotion for s, _ in mine)
                print(f"    native: {', '.join(f'{k} {v}' for k, v in sorted(emotions.items()))}")
        reasons = Counter(r.code or "invalid_annotation" for r in result.rejections)
        summary = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
        print(
            f"  quarantined: {len(result.rejections)} ({summary}); excluded: {len(result.excluded)}"
        )
        for rejection in result.rejections[: args.show]:
            print(f"    {rejection}")
        if len(result.rejections) > args.show:
            print(f"    ... and {len(result.rejections) - args.show} more (--show N)")
    return 0
