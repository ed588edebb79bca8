"""The ``mer`` command: one subcommand per pipeline stage and user-facing tool."""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help). Each module has add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "synthesize": ("pipelines.synthesize", "write the embedded synthetic CASME II-layout dataset"),
    "preprocess": ("pipelines.preprocess", "faces, flow, strain, clips → sharded TFRecords (Beam)"),
    "tune": ("pipelines.tune", "Ray Tune search over attention type × heads × placement (ASHA)"),
    "evaluate": ("pipelines.evaluate", "MEGC protocol (LOSO): UF1/UAR, predictions, plots, MLflow"),
    "compare": (
        "pipelines.compare",
        "the evaluate protocol for several attention types, side by side",
    ),
    "register": (
        "pipelines.register",
        "retrain on all subjects, register in MLflow, move the champion alias if it wins",
    ),
    "registry": ("pipelines.registry", "registered versions: metrics, aliases, data versions"),
    "predict": ("pipelines.predict", "classify a clip (frames folder or video) with a model"),
    "inspect": ("pipelines.inspect_data", "read the configured datasets and report what was found"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mer",
        description="mer-attention: micro-expression recognition experiments with attention.",
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
