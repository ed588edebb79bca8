"""The ``mer`` command: one subcommand per pipeline stage and user-facing tool.

Errors the user can fix (:class:`~components.errors.MerError`: a setting, a file, a missing
stage output) print one line on stderr and exit with code 2; ``--debug`` shows the traceback.
Ctrl-C and SIGTERM stop a command with exit code 130, after it has closed its runs.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

#: subcommand -> (module, one-line help). Each module has add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "synthesize": ("pipelines.synthesize", "write the embedded synthetic CASME II-layout dataset"),
    "preprocess": ("pipelines.preprocess", "faces, flow, strain, clips → sharded TFRecords (Beam)"),
    "tune": (
        "pipelines.tune",
        "Ray Tune search over attention type × heads × placement (× training values)",
    ),
    "evaluate": ("pipelines.evaluate", "MEGC protocol (LOSO): UF1/UAR with CIs, plots, MLflow"),
    "compare": (
        "pipelines.compare",
        "every model of compare.space vs its baseline over seeds: paired Δ, verdicts, main effects",
    ),
    "register": (
        "pipelines.register",
        "retrain on all subjects, register in MLflow, move the champion alias if it wins",
    ),
    "registry": ("pipelines.registry", "registered versions: metrics, aliases, data versions"),
    "predict": ("pipelines.predict", "classify a clip (frames folder or video) with a model"),
    "inspect": ("pipelines.inspect_data", "read the configured datasets and report what was found"),
}
#: commands that run TensorFlow (its start-up noise is silenced unless --verbose)
TENSORFLOW_COMMANDS = {"tune", "evaluate", "compare", "register", "predict"}
TRAINING_COMMANDS = {"tune", "evaluate", "compare", "register"}
#: commands whose training runs in Ray's workers (unless --local): this process never loads
#: TensorFlow (≈ 5 s of CPU and wall time a stage saves)
RAY_COMMANDS = {"tune", "evaluate", "compare"}


def global_flags(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The flags every command takes, before or after its name (``mer evaluate --debug``):
    the main parser sets the defaults, a subcommand only what is given after its name."""

    def default(value):
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--params", default=default("params.yaml"), help="parameters file (params.yaml)"
    )
    parser.add_argument(
        "-S",
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=default([]),
        help="override a parameter, as `dvc exp run -S` does: -S train.epochs=3 (repeatable)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=default(False), help="show tracebacks"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="keep TensorFlow's, Ray's and Beam's own log lines",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress (bars, lines): results, warnings and errors only",
    )


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("mer-attention")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout without installing
        return "unknown"


def platform() -> str:
    """What decides how training runs here: TensorFlow and Keras, the CPU kernels (oneDNN or
    Eigen), the devices seen, and the form of the fold-stacked convolution."""
    from components.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    from components.models.fold_conv import describe, onednn_enabled

    devices = ", ".join(
        d.name.removeprefix("/physical_device:") for d in tf.config.list_physical_devices()
    )
    return (
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; oneDNN "
        f"{'on' if onednn_enabled() else 'off'}; devices: {devices}\n{describe()}"
    )


class VersionAction(argparse.Action):
    """``--version``: the package's version and the training platform (TensorFlow loads only
    when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"mer-attention {version()}\n{platform()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mer",
        description="mer-attention: micro-expression recognition experiments with attention.",
    )
    parser.add_argument(
        "--version", action=VersionAction, help="the version, TensorFlow's kernels and devices"
    )
    global_flags(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        global_flags(command, defaults=False)
        importlib.import_module(module).add_arguments(command)
    return parser


def _terminate(signum, frame) -> None:
    from components.errors import note_signal

    raise note_signal("terminated (SIGTERM)")


def _interrupt(signum, frame) -> None:
    from components.errors import note_signal

    note_signal("interrupted (Ctrl-C)")
    raise KeyboardInterrupt


def note_stopping_signals() -> None:
    """SIGTERM and Ctrl-C raise as they are noted: a library that swallows their exception (a
    finalizer it interrupted, a TensorFlow callback wrapping it in an error that is retried)
    cannot keep the run going (:func:`components.errors.raise_if_signalled`). Where SIGINT is
    ignored (a command started in the background) it stays ignored."""
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)


def main(argv: list[str] | None = None) -> int:
    from components.errors import Interrupted, redact, user_message

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose cannot be used together")
    from components.progress import set_level

    set_level("quiet" if args.quiet else "verbose" if args.verbose else "normal")
    note_stopping_signals()
    if not args.verbose:
        from components.quiet import quiet_libraries, quiet_tensorflow

        quiet_libraries()
        if args.command in TENSORFLOW_COMMANDS:
            on_ray = args.command in RAY_COMMANDS and not getattr(args, "local", False)
            quiet_tensorflow(load=not on_ray)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        if args.command in TRAINING_COMMANDS:
            from components.models.pinned_form import check_pinned_form

            check_pinned_form()
        return int(module.run(args) or 0)
    except (KeyboardInterrupt, Interrupted) as exc:
        if args.debug:
            raise
        reason = str(exc) or "interrupted (Ctrl-C)"
        print(f"mer {args.command}: {reason}; nothing was published", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_message(exc)  # None for a bug: it keeps its traceback
        if message is None or args.debug:
            raise
        print(f"mer {args.command}: {redact(message)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
