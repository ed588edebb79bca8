"""Argument types shared by the ``mer`` subcommands."""

from __future__ import annotations

import argparse


def whole_number(minimum: int):
    """An argparse type: a whole number ≥ ``minimum`` (so ``--folds 0`` or ``-1`` is refused
    by argparse, before anything runs)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not ≥ {minimum}")
        return value

    return convert


positive_int = whole_number(1)
non_negative_int = whole_number(0)
