"""DVC stage ``synthesize``: write the embedded default dataset (CASME II layout)."""

from __future__ import annotations

import argparse

from components.config import load_params
from components.datasets.synthetic import write_synthetic_casme2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # everything comes from params.yaml


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    cfg = params.synthesize

    from components.datasets.synthetic import dev, generator
    from components.outputs import Protected, staged_folder
    from components.progress import Bar

    bars: list[Bar] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(Bar("synthesize", total, "subject"))
        bars[0].to(done)

    development = cfg.clips == "megc2019_dev"
    owned = dev.OWNED if development else generator.OWNED
    with staged_folder(
        cfg.root, "synthesize.root", Protected.of(params, writing=cfg.root), owned
    ) as staging:
        if development:
            summary = dev.write_development_set(params.seed, staging, progress)
        else:
            summary = write_synthetic_casme2(cfg, params.seed, progress, root=staging)
        for bar in bars:
            bar.close()
    emotions = ", ".join(f"{k} {v}" for k, v in sorted(summary.per_emotion.items()))
    print(
        f"synthesize: wrote {summary.clips} clips ({summary.frames} frames) of "
        f"{summary.subjects} subjects to {cfg.root} [{emotions}]"
    )
    return 0
