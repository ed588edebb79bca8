"""Typed view of ``params.yaml``: the one module that knows its keys.

Every stage reads its section through :func:`load_params`. Unknown keys are rejected with a
message naming the key, where it is, and the valid keys, so a typo never silently falls back
to a default. Every number carries its range (``Annotated[int, Range(ge=1)]``), and names that
select a building block (dataset reader, backbone, attention type) are checked against that
block's registry, whose entries also say which options each one takes: an option the chosen
type does not take is an error naming the ones it does.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from components.errors import ConfigError

__all__ = ["ConfigError", "Params", "load_params", "parse"]


@dataclass(frozen=True)
class Range:
    """Allowed interval of a number: ``ge``/``gt`` below, ``le``/``lt`` above."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: float, where: str) -> None:
        bad = (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
            or (isinstance(value, float) and not math.isfinite(value))
        )
        if bad:
            raise ConfigError(f"{where}: {value!r} is out of range; it must be {self}")

    def __str__(self) -> str:
        parts = [
            f"{symbol} {value:g}"
            for symbol, value in (("≥", self.ge), (">", self.gt), ("≤", self.le), ("<", self.lt))
            if value is not None
        ]
        return " and ".join(parts) or "finite"


@dataclass(frozen=True)
class OneOf:
    """A name that must be a key of a registry (looked up lazily: registries import late)."""

    registry: str  # what the names are, for the message
    names: Callable[[], Iterable[str]]

    def check(self, value: str, where: str) -> None:
        valid = list(self.names())
        if value not in valid:
            raise ConfigError(
                f"{where}: {value!r} is not a known {self.registry}; valid: {', '.join(valid)}"
            )


def _readers() -> Iterable[str]:
    from components.datasets.registry import READERS

    return READERS


def _backbones() -> Iterable[str]:
    from components.models.registry import BACKBONES

    return BACKBONES


def _attentions() -> Iterable[str]:
    from components.attention.registry import ATTENTION

    return ATTENTION


Positive = Annotated[int, Range(ge=1)]
NonNegative = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
Fraction = Annotated[float, Range(gt=0, lt=1)]  # strictly between 0 and 1
ApexPolicy = Literal["quarantine", "middle"]
DatasetName = Annotated[str, OneOf("dataset reader", _readers)]
BackboneName = Annotated[str, OneOf("backbone", _backbones)]
AttentionType = Annotated[str, OneOf("attention type", _attentions)]


def _check_options(raw: Mapping, where: str, kind: str, name: str, taken: Iterable[str]) -> None:
    """Raise if ``raw`` sets an option that ``kind`` ``name`` does not take."""
    taken = tuple(taken)
    for key in raw:
        if key not in taken:
            raise ConfigError(
                f"{where}: {key!r} is not an option of {kind} {name!r}; it takes: "
                f"{', '.join(taken) or 'no options'}"
            )


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset to read: which reader, where its root is, and the reader's own options.

    Sheet-based readers (casme2, samm, smic, casme3) take ``frames_dir``, ``sheet`` and
    ``missing_apex``; ``flow_images`` (released pre-computed flow) takes ``csv``,
    ``images_dir``, ``pattern``, ``channels`` and ``faces_dir``. Unset options follow each
    dataset's published layout.
    """

    name: DatasetName
    root: str
    frames_dir: str | None = None
    sheet: str | None = None
    missing_apex: ApexPolicy = "quarantine"
    csv: str | None = None  # flow_images: the label CSV (default: the only *.csv in root)
    images_dir: str | None = None  # flow_images: folder of the flow images (default: root)
    pattern: str = "{sub}_{filename_o} .png"  # flow_images: file name of a sample's image
    channels: Literal["uvs", "vus", "usv", "vsu", "suv", "svu"] = "uvs"  # flow_images: RGB order
    faces_dir: str | None = None  # flow_images: apex faces "{sub}_{filename_o}.jpg" for figures

    @classmethod
    def check_keys(cls, raw: Mapping, where: str) -> None:
        from components.datasets.registry import READERS

        name = raw.get("name")
        if name in READERS:
            given = {k: v for k, v in raw.items() if k not in ("name", "root")}
            _check_options(given, where, "dataset reader", name, READERS[name].options)


@dataclass(frozen=True)
class SynthesizeConfig:
    """The embedded synthetic dataset, written in the CASME II layout."""

    root: str = "data/raw/synthetic_casme2"
    #: uniform: ``subjects`` × ``clips_per_class`` × 3 classes; megc2019_composite: 68 subjects
    #: with the per-subject class counts of the real MEGC 2019 composite list (442 clips)
    clips: Literal["uniform", "megc2019_composite"] = "uniform"
    subjects: Annotated[int, Range(ge=2)] = 10
    clips_per_class: Positive = 3
    frames_min: Annotated[int, Range(ge=5)] = 20
    frames_max: Annotated[int, Range(ge=5)] = 32
    frame_size: Annotated[int, Range(ge=96)] = 224
    amplitude_px: tuple[PositiveFloat, PositiveFloat] = (1.0, 2.0)
    head_motion_px: Annotated[float, Range(ge=0)] = 0.3
    noise_sigma: Annotated[float, Range(ge=0)] = 1.5
    flicker: Annotated[float, Range(ge=0, lt=1)] = 0.015
    jpeg_quality: Annotated[int, Range(ge=1, le=100)] = 95

    def __post_init__(self) -> None:
        if self.frames_min > self.frames_max:
            raise ConfigError(
                f"synthesize: frames_min {self.frames_min} is above frames_max {self.frames_max}"
            )


@dataclass(frozen=True)
class TVL1Config:
    """OpenCV Dual TV-L1 optical flow parameters (set through its setters)."""

    tau: PositiveFloat = 0.25
    data_weight: PositiveFloat = 0.15  # OpenCV's lambda: weight of the data term
    theta: PositiveFloat = 0.3
    scales: Positive = 5
    scale_step: Fraction = 0.8
    warps: Positive = 5
    epsilon: PositiveFloat = 0.01
    inner_iterations: Positive = 30
    outer_iterations: Positive = 10
    median_filtering: Positive = 5


@dataclass(frozen=True)
class PreprocessConfig:
    """The Beam preprocessing stage: faces, flow, strain, clips, records."""

    records_dir: str = "data/records"
    report: str = "reports/preprocess.json"  # counters and timing (a DVC metric)
    detector: Literal["yuface", "yuface_only", "haar"] = "yuface"
    face_size: Annotated[int, Range(ge=32)] = 128
    face_margin: Annotated[float, Range(ge=0, lt=1)] = 0.15
    flow_size: Annotated[int, Range(ge=8)] = 28
    clip_frames: Annotated[int, Range(ge=2)] = 8
    clip_size: Annotated[int, Range(ge=8)] = 64
    tvl1: TVL1Config = field(default_factory=TVL1Config)
    num_shards: Positive = 4
    max_quarantine_fraction: Annotated[float, Range(ge=0, le=1)] = 0.1
    runner: str = "DirectRunner"
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = (
        "multi_processing"
    )
    direct_num_workers: NonNegative = 0  # 0 = one per core
    beam_args: tuple[str, ...] = ()  # extra pipeline flags, e.g. for Flink/Spark/Dataflow

    def input_sizes(self) -> dict[str, int]:
        """The model input sizes these records hold (the model builders' keyword arguments)."""
        return {
            "flow_size": self.flow_size,
            "clip_frames": self.clip_frames,
            "clip_size": self.clip_size,
        }


@dataclass(frozen=True)
class AttentionConfig:
    """Which attention module and its options (``OneOfConfig`` style: each type takes only the
    options its registry entry lists; ``None`` keeps the layer's own default, e.g. kernel 7 for
    spatial, ECA's adaptive size, ``key_dim`` = channels // heads)."""

    type: AttentionType = "none"
    heads: Positive = 2
    key_dim: Positive | None = None
    reduction: Positive = 4
    kernel_size: Positive | None = None

    def __post_init__(self) -> None:
        """Options the type does not take are reset to their defaults, so two configurations
        that differ only in an ignored option are equal (and hash alike)."""
        taken = attention_options(self.type)
        for f in dataclasses.fields(self):
            if f.name != "type" and f.name not in taken:
                object.__setattr__(self, f.name, f.default)

    @classmethod
    def check_keys(cls, raw: Mapping, where: str) -> None:
        kind = raw.get("type", "none")
        if kind in _attentions():
            given = {k: v for k, v in raw.items() if k != "type"}
            _check_options(given, where, "attention type", kind, attention_options(kind))

    def as_dict(self) -> dict[str, Any]:
        """``type`` and the options it takes: what artifacts store and :func:`parse` reads."""
        taken = attention_options(self.type)
        return {"type": self.type, **{k: getattr(self, k) for k in taken}}


def attention_options(kind: str) -> tuple[str, ...]:
    from components.attention.registry import used_options

    return used_options(kind) if kind in _attentions() else ()


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, attention and where it goes (one or several named placement points)."""

    backbone: BackboneName = "ststnet"
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    placement: tuple[str, ...] = ("fused",)
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5

    def as_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "attention": self.attention.as_dict(),
            "placement": list(self.placement),
            "dropout": self.dropout,
        }


def model_from_dict(raw: Mapping, where: str) -> ModelConfig:
    """A model configuration stored by a stage (artifact, registry metadata). Options the
    attention type does not take are dropped first: older artifacts stored every option."""
    raw = dict(raw)
    attention = dict(raw.get("attention") or {})
    kind = attention.get("type", "none")
    raw["attention"] = {
        k: v for k, v in attention.items() if k == "type" or k in attention_options(kind)
    }
    return parse(ModelConfig, raw, where)


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained (used by evaluate, tune and register alike)."""

    epochs: Positive = 60
    batch_size: Positive = 16  # per replica; the global batch is batch_size × replicas
    learning_rate: PositiveFloat = 0.001
    patience: Positive = 12  # early stopping on validation UF1 (validation subjects only)
    min_epochs: Positive = 20  # early stopping never stops before this (warm-up of tiny nets)
    validation_fraction: Fraction = 0.2  # of the training subjects, by subject
    class_weighting: Literal["balanced", "none"] = "balanced"
    augment_flip: bool = True  # horizontal mirror (u changes sign)
    augment_shift_px: NonNegative = 2  # random translation up to this many pixels (0 = off)
    devices: Positive = 1  # CPU: split into N logical devices (MirroredStrategy); GPUs: all visible
    threads: NonNegative = 0  # TF intra-op threads per process (0 = TF default)
    deterministic: bool = True  # tf.config.experimental.enable_op_determinism
    #: train the folds of one unit of work as one stacked model (each fold's copy sees every
    #: batch, learns only from its own training subjects) when the backbone has a stacked form
    stack_folds: bool = True


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: the embedded default is SQLite; ``MLFLOW_TRACKING_URI`` overrides the URI."""

    uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    experiment: str = "mer-attention"


@dataclass(frozen=True)
class RegisterConfig:
    """The ``register`` stage: retrain the chosen configuration on every subject, register it."""

    model_name: str = "mer-attention"  # the registered model in the MLflow registry
    alias: str = "champion"  # moves only to a version that beats it on the same protocol/data
    epochs: Positive | None = None  # None = median best epoch of the evaluate folds
    reports_dir: str = "reports/register"


@dataclass(frozen=True)
class EvaluateConfig:
    """The MEGC protocol run by the ``evaluate`` stage, as (variant, seed, fold) units of work."""

    protocol: Literal["loso", "kfold", "lodo"] = "loso"
    folds: Annotated[int, Range(ge=2)] = 5  # for kfold
    selection: Literal["given", "nested"] = "given"
    candidates: tuple[ModelConfig, ...] = ()  # for nested selection (in addition to `model`)
    inner_folds: Annotated[int, Range(ge=2)] = 3  # nested: grouped folds over training subjects
    seeds: Positive = 1  # training seeds per variant (seed, seed+1, ...); reports pool them
    bootstrap: Annotated[int, Range(ge=100)] = 2000  # subject-level bootstrap resamples for CIs
    confidence: Fraction = 0.95
    attention_examples: NonNegative = 2  # samples per class drawn as attention-map overlays
    folds_per_unit: Positive = 17  # folds trained together (stacked) in one unit of work
    max_failures: NonNegative = 2  # retries of a crashed unit
    units_dir: str = ".mer/units"  # finished units (predictions, epochs), so a re-run resumes
    reports_dir: str = "reports"


@dataclass(frozen=True)
class CompareConfig:
    """``mer compare``: attention types side by side against a baseline, over several seeds."""

    types: tuple[AttentionType, ...] = ("none", "se", "eca", "channel", "spatial", "cbam", "mhsa")
    baseline: AttentionType = "none"
    seeds: Positive = 3
    reports_dir: str = "reports/compare"

    def __post_init__(self) -> None:
        if self.baseline not in self.types:
            raise ConfigError(
                f"compare: baseline {self.baseline!r} is not among types {list(self.types)}"
            )


@dataclass(frozen=True)
class TuneSpaceConfig:
    """Values to search. Options apply only to the attention types that use them (``heads``
    and ``key_dim`` to mhsa/temporal_mhsa, ``reduction`` to se/channel/cbam, ``kernel_size`` to
    eca/spatial/cbam), and placements only where the backbone has them, so no two trials
    differ only in an option their model ignores."""

    backbone: tuple[BackboneName, ...] = ("ststnet",)
    attention: tuple[AttentionType, ...] = ("none", "se", "cbam", "mhsa")
    heads: tuple[Positive, ...] = (2,)
    key_dim: tuple[Positive | None, ...] = (None,)
    reduction: tuple[Positive, ...] = (4,)
    kernel_size: tuple[Positive | None, ...] = (None,)
    placement: tuple[tuple[str, ...], ...] = (("fused",),)
    learning_rate: tuple[PositiveFloat, ...] = (0.001,)
    batch_size: tuple[Positive, ...] = (16,)
    epochs: tuple[Positive, ...] = (40,)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not getattr(self, f.name):
                raise ConfigError(
                    f"tune.space.{f.name}: the list is empty; give at least one value"
                )


@dataclass(frozen=True)
class TuneConfig:
    """The Ray Tune search run by the ``tune`` stage."""

    space: TuneSpaceConfig = field(default_factory=TuneSpaceConfig)
    search: Literal["grid", "random", "optuna"] = "grid"
    num_samples: Positive = 1  # grid: repeats of the grid; random/optuna: number of trials
    max_concurrent_trials: Positive = 2
    #: holdout: validation UF1 on one subject split; kfold: pooled UF1 over k grouped folds of
    #: the search subjects (the protocol's kind of estimate), the folds stacked in each trial
    objective: Literal["holdout", "kfold"] = "kfold"
    kfold: Annotated[int, Range(ge=2)] = 3
    #: asha: asynchronous successive halving; halving: synchronous (every trial reaches a rung
    #: before any is cut, components/tuning/halving.py); fifo: every trial runs every epoch
    scheduler: Literal["asha", "halving", "fifo"] = "fifo"
    grace_period: Positive = 15  # asha/halving: epochs every trial gets before it can be stopped
    reduction_factor: Annotated[int, Range(ge=2)] = 3
    brackets: Positive = 1  # ASHA brackets
    metric: str = "val_uf1"
    mode: Literal["max", "min"] = "max"
    holdout_fraction: Annotated[float, Range(ge=0, lt=1)] = 0.2  # subjects the search never sees
    validation_fraction: Fraction = 0.25  # holdout objective: the validation subjects
    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: Annotated[float, Range(ge=0)] = 0.0
    devices_per_trial: Positive = 1  # CPU-only trials: logical devices for MirroredStrategy
    address: str | None = None  # Ray cluster to attach to (RAY_ADDRESS wins); None = local
    storage_path: str = ".ray_results"  # shared storage for a multi-node cluster
    max_failures: NonNegative = 2  # retries of a crashed trial, from its last checkpoint
    reports_dir: str = "reports/tune"


def _default_datasets() -> tuple[DatasetConfig, ...]:
    return (DatasetConfig(name="casme2", root="data/raw/synthetic_casme2"),)


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    seed: NonNegative = 42
    datasets: tuple[DatasetConfig, ...] = field(default_factory=_default_datasets)
    synthesize: SynthesizeConfig = field(default_factory=SynthesizeConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigError("datasets: the list is empty; name at least one dataset to read")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise :class:`ConfigError` naming any bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse(Params, raw, where=str(path))


def parse(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from plain YAML data, strictly."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
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
                check.check(result, where)
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
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
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
