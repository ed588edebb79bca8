"""Strict parsing of plain YAML/JSON data into typed, frozen dataclasses.

One parser for everything the project reads: ``params.yaml`` and every file a stage reads
back (``best_config.json``, evaluation and registration records, stored units, trial
checkpoints). Unknown keys are refused naming the valid ones; every value is checked against
its type hint, and ``Annotated`` hints add checks (:class:`Range`, :class:`OneOf`) or
normalisations (:class:`UserPath`). Every error is one :class:`~components.errors.ConfigError`
line naming the file and the key (``where``).

Why not pydantic: its messages are several lines per error and name neither the file nor the
fix in our words; this parser is 200 lines, has no dependency, and its messages are tested.
"""

from __future__ import annotations

import dataclasses
import math
import os
import string
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from components.errors import ConfigError

__all__ = ["ConfigError", "FormatString", "OneOf", "Positive", "Range", "UserPath", "parse"]


@dataclass(frozen=True)
class Range:
    """Allowed interval of a number: ``ge``/``gt`` below, ``le``/``lt`` above."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __call__(self, value: float, where: str) -> float:
        bad = (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
            or (isinstance(value, float) and not math.isfinite(value))
        )
        if bad:
            raise ConfigError(f"{where}: {value!r} is out of range; it must be {self}")
        return value

    def __str__(self) -> str:
        parts = [
            f"{symbol} {value:g}"
            for symbol, value in (("≥", self.ge), (">", self.gt), ("≤", self.le), ("<", self.lt))
            if value is not None
        ]
        return " and ".join(parts) or "finite"


Positive = Annotated[int, Range(ge=1)]


@dataclass(frozen=True)
class OneOf:
    """A name that must be a key of a registry (looked up lazily: registries import late)."""

    registry: str  # what the names are, for the message
    names: Callable[[], Iterable[str]]

    def __call__(self, value: str, where: str) -> str:
        valid = list(self.names())
        if value not in valid:
            raise ConfigError(
                f"{where}: {value!r} is not a known {self.registry}; valid: {', '.join(valid)}"
            )
        return value


@dataclass(frozen=True)
class UserPath:
    """A path setting: ``~`` means the home folder (as in a shell), never a folder named ``~``;
    an empty path is refused."""

    def __call__(self, value: str, where: str) -> str:
        if not value.strip():
            raise ConfigError(f"{where}: the path is empty")
        return os.path.expanduser(value) if value.startswith("~") else value


@dataclass(frozen=True)
class FormatString:
    """A ``str.format`` pattern whose placeholders are plain names (checked for syntax here;
    the names themselves by whoever knows them, e.g. a reader knows its CSV's columns)."""

    def __call__(self, value: str, where: str) -> str:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ConfigError(f"{where}: {value!r} is not a valid pattern ({exc})") from None
        for name in fields:
            if not name.isidentifier():
                raise ConfigError(
                    f"{where}: placeholder {{{name}}} in {value!r} is not a column name"
                )
        return value


def placeholders(pattern: str) -> list[str]:
    """The ``{name}`` placeholders of a :class:`FormatString` pattern, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(pattern) if f]


def check_unique(values: Iterable[Any], where: str) -> None:
    """Refuse a list that names the same value twice (a search or sweep would run it twice)."""
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise ConfigError(f"{where}: {value!r} is listed twice; list each value once")
        seen.append(value)


def parse(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from plain YAML/JSON data, strictly (``where`` names the file
    and the key in every message)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}"
            + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
            + f"; valid keys are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {name: _coerce(hints[name], value, f"{where}:{name}") for name, value in raw.items()}
    missing = [
        f.name
        for f in fields.values()
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    check_keys = getattr(cls, "check_keys", None)
    if check_keys is not None:
        check_keys(raw, where)
    try:
        return cls(**values)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        result = _coerce(args[0], value, where)
        for check in args[1:]:
            if result is not None:
                result = check(result, where)
        return result
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {args}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
            return items if origin is list else tuple(items)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _coerce(args[0], k, f"{where}.{k}"): _coerce(args[1], v, f"{where}.{k}")
            for k, v in value.items()
        }
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover - programming error
