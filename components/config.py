"""Typed view of ``params.yaml``: the one module that knows its keys.

Every stage reads its section through :func:`load_params`. Unknown keys are rejected with a
message naming the key, where it is, and the valid keys, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A ``params.yaml`` value or key is invalid."""


DatasetName = Literal["casme2", "samm", "smic", "casme3"]
ApexPolicy = Literal["quarantine", "middle"]


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset to read: which reader, where its root is, and layout overrides.

    ``frames_dir`` and ``sheet`` default to each dataset's published layout; set them only when
    your copy differs (e.g. CASME II ``Cropped`` instead of ``CASME2_RAW_selected``).
    """

    name: DatasetName
    root: str
    frames_dir: str | None = None
    sheet: str | None = None
    missing_apex: ApexPolicy = "quarantine"


@dataclass(frozen=True)
class SynthesizeConfig:
    """The embedded synthetic dataset, written in the CASME II layout."""

    root: str = "data/raw/synthetic_casme2"
    subjects: int = 10
    clips_per_class: int = 3
    frames_min: int = 20
    frames_max: int = 32
    frame_size: int = 224
    amplitude_px: tuple[float, float] = (1.0, 2.0)
    head_motion_px: float = 0.3
    noise_sigma: float = 1.5
    flicker: float = 0.015
    jpeg_quality: int = 95


@dataclass(frozen=True)
class TVL1Config:
    """OpenCV Dual TV-L1 optical flow parameters (set through its setters)."""

    tau: float = 0.25
    data_weight: float = 0.15  # OpenCV's lambda: weight of the data term (higher = less smooth)
    theta: float = 0.3
    scales: int = 5
    scale_step: float = 0.8
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    median_filtering: int = 5


@dataclass(frozen=True)
class PreprocessConfig:
    """The Beam preprocessing stage: faces, flow, strain, clips, records."""

    records_dir: str = "data/records"
    detector: Literal["yuface", "yuface_only", "haar"] = "yuface"
    face_size: int = 128
    face_margin: float = 0.15
    flow_size: int = 28
    clip_frames: int = 8
    clip_size: int = 64
    tvl1: TVL1Config = field(default_factory=TVL1Config)
    num_shards: int = 4
    max_quarantine_fraction: float = 0.1
    runner: str = "DirectRunner"
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = (
        "multi_processing"
    )
    direct_num_workers: int = 0  # 0 = one per core
    beam_args: tuple[str, ...] = ()  # extra pipeline flags, e.g. for Flink/Spark/Dataflow


AttentionType = Literal["none", "se", "eca", "channel", "spatial", "cbam", "mhsa", "temporal_mhsa"]
BackboneName = Literal["ststnet", "off_apexnet", "resnet_small", "clip_net"]


@dataclass(frozen=True)
class AttentionConfig:
    """Which attention module and its options; each type uses only the options it has.

    ``None`` leaves a layer's own default (e.g. ``kernel_size``: 7 for spatial, ECA's adaptive
    size for eca; ``key_dim``: channels // heads).
    """

    type: AttentionType = "none"
    heads: int = 2
    key_dim: int | None = None
    reduction: int = 4
    kernel_size: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, attention and where it goes (one or several named placement points)."""

    backbone: BackboneName = "ststnet"
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    placement: tuple[str, ...] = ("fused",)
    dropout: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained (used by evaluate, tune and register alike)."""

    epochs: int = 60
    batch_size: int = 16  # per replica; the global batch is batch_size × replicas
    learning_rate: float = 0.001
    patience: int = 12  # early stopping on validation UF1 (validation subjects only)
    min_epochs: int = 5  # early stopping never stops before this
    validation_fraction: float = 0.2  # of the training subjects, by subject
    class_weighting: Literal["balanced", "none"] = "balanced"
    augment_flip: bool = True  # horizontal mirror (u changes sign)
    augment_shift_px: int = 2  # random translation up to this many pixels (0 = off)
    devices: int = 1  # CPU: split into N logical devices (MirroredStrategy); GPUs: all visible
    threads: int = 0  # TF intra-op threads per process (0 = TF default)
    deterministic: bool = True  # tf.config.experimental.enable_op_determinism


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
    epochs: int | None = None  # None = median best epoch of the evaluate folds
    reports_dir: str = "reports/register"


@dataclass(frozen=True)
class EvaluateConfig:
    """The MEGC protocol run by the ``evaluate`` stage."""

    protocol: Literal["loso", "kfold"] = "loso"
    folds: int = 5  # for kfold
    selection: Literal["given", "nested"] = "given"
    candidates: tuple[ModelConfig, ...] = ()  # for nested selection (in addition to `model`)
    inner_folds: int = 3  # nested: grouped folds over each outer fold's training subjects
    attention_examples: int = 2  # samples per class drawn as attention-map overlays
    reports_dir: str = "reports"


@dataclass(frozen=True)
class TuneSpaceConfig:
    """Values to search. Options apply only to the attention types that use them (``heads``
    and ``key_dim`` to mhsa/temporal_mhsa, ``reduction`` to se/channel/cbam, ``kernel_size`` to
    eca/spatial/cbam), and placements only where the backbone has them, so no two trials
    differ only in an option their model ignores."""

    backbone: tuple[BackboneName, ...] = ("ststnet",)
    attention: tuple[AttentionType, ...] = ("none", "se", "cbam", "mhsa")
    heads: tuple[int, ...] = (2,)
    key_dim: tuple[int | None, ...] = (None,)
    reduction: tuple[int, ...] = (4,)
    kernel_size: tuple[int | None, ...] = (None,)
    placement: tuple[tuple[str, ...], ...] = (("fused",),)
    learning_rate: tuple[float, ...] = (0.001,)
    batch_size: tuple[int, ...] = (16,)
    epochs: tuple[int, ...] = (30,)


@dataclass(frozen=True)
class TuneConfig:
    """The Ray Tune search run by the ``tune`` stage."""

    space: TuneSpaceConfig = field(default_factory=TuneSpaceConfig)
    search: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = 1  # grid: repeats of the grid; random/optuna: number of trials
    max_concurrent_trials: int = 2
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = 8  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: int = 3
    metric: str = "val_uf1"
    mode: Literal["max", "min"] = "max"
    holdout_fraction: float = 0.2  # subjects the search never sees (reported apart by evaluate)
    validation_fraction: float = 0.25  # of the remaining subjects: the objective's validation set
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    devices_per_trial: int = 1  # CPU-only trials: logical devices for MirroredStrategy
    address: str | None = None  # Ray cluster to attach to (RAY_ADDRESS wins); None = local
    storage_path: str = ".ray_results"  # shared storage for a multi-node cluster
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    reports_dir: str = "reports/tune"


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    seed: int = 42
    datasets: tuple[DatasetConfig, ...] = field(
        default_factory=lambda: (DatasetConfig(name="casme2", root="data/raw/synthetic_casme2"),)
    )
    synthesize: SynthesizeConfig = field(default_factory=SynthesizeConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)


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
    hints = typing.get_type_hints(cls)
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
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
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
