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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from components.errors import ConfigError
from components.parsing import (
    FormatString,
    OneOf,
    Positive,
    Range,
    UserPath,
    check_unique,
    parse,
    placeholders,
)

__all__ = ["ConfigError", "Params", "load_params", "parse"]


def _readers() -> Iterable[str]:
    from components.datasets.registry import READERS

    return READERS


def _backbones() -> Iterable[str]:
    from components.models.registry import BACKBONES

    return BACKBONES


def _attentions() -> Iterable[str]:
    from components.attention.registry import ATTENTION

    return ATTENTION


NonNegative = Annotated[int, Range(ge=0)]
#: bounded so that no setting can exhaust memory or overflow a seed before any work starts
Seed = Annotated[int, Range(ge=0, le=2**31 - 1)]
Epochs = Annotated[int, Range(ge=1, le=10_000)]
BatchSize = Annotated[int, Range(ge=1, le=65_536)]
PathSetting = Annotated[str, UserPath()]
PositiveFloat = Annotated[float, Range(gt=0)]
Fraction = Annotated[float, Range(gt=0, lt=1)]  # strictly between 0 and 1
ApexPolicy = Literal["quarantine", "middle"]
DatasetName = Annotated[str, OneOf("dataset reader", _readers)]
BackboneName = Annotated[str, OneOf("backbone", _backbones)]
AttentionType = Annotated[str, OneOf("attention type", _attentions)]


#: what a flow_images ``pattern`` may name: the CSV's subject, clip and dataset columns
PATTERN_FIELDS = ("sub", "filename_o", "dataset")


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
    root: PathSetting
    frames_dir: str | None = None
    sheet: str | None = None
    missing_apex: ApexPolicy = "quarantine"
    csv: str | None = None  # flow_images: the label CSV (default: the only *.csv in root)
    images_dir: str | None = None  # flow_images: folder of the flow images (default: root)
    pattern: Annotated[str, FormatString()] = (
        "{sub}_{filename_o} .png"  # flow_images: file name of a sample's image
    )
    channels: Literal["uvs", "vus", "usv", "vsu", "suv", "svu"] = "uvs"  # flow_images: RGB order
    faces_dir: str | None = None  # flow_images: apex faces "{sub}_{filename_o}.jpg" for figures

    def __post_init__(self) -> None:
        unknown = [p for p in placeholders(self.pattern) if p not in PATTERN_FIELDS]
        if unknown:
            raise ConfigError(
                f"pattern: unknown placeholder {{{unknown[0]}}} in {self.pattern!r}; it may "
                f"use {', '.join('{' + f + '}' for f in PATTERN_FIELDS)}"
            )

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

    root: PathSetting = "data/raw/synthetic_casme2"
    #: uniform: ``subjects`` × ``clips_per_class`` × 3 classes; megc2019_composite: 68 subjects
    #: with the per-subject class counts of the real MEGC 2019 composite list (442 clips);
    #: megc2019_dev: the development set like the real composite (three sub-datasets in their
    #: real layouts under root/CASME2, root/SAMM, root/SMIC; components/datasets/synthetic/dev.py)
    clips: Literal["uniform", "megc2019_composite", "megc2019_dev"] = "uniform"
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

    records_dir: PathSetting = "data/records"
    report: PathSetting = "reports/preprocess.json"  # counters (a DVC metric)
    detector: Literal["yuface", "yuface_only", "haar"] = "yuface"
    face_size: Annotated[int, Range(ge=32)] = 128
    face_margin: Annotated[float, Range(ge=0, lt=1)] = 0.15
    flow_size: Annotated[int, Range(ge=8)] = 28
    clip_frames: Annotated[int, Range(ge=2)] = 8
    clip_size: Annotated[int, Range(ge=8)] = 64
    tvl1: TVL1Config = field(default_factory=TVL1Config)
    num_shards: Annotated[int, Range(ge=1, le=1024)] = 4
    max_quarantine_fraction: Annotated[float, Range(ge=0, le=1)] = 0.1
    #: Beam runners that take this pipeline (DaskRunner is refused: it wrote 0 records here)
    runner: Literal[
        "DirectRunner",
        "PrismRunner",
        "PortableRunner",
        "FlinkRunner",
        "SparkRunner",
        "DataflowRunner",
    ] = "DirectRunner"
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


class _AttentionMethods:
    """What :data:`AttentionConfig` does beyond its fields."""

    type: str

    def __post_init__(self) -> None:
        """Options the type does not take are reset to their defaults, so two configurations
        that differ only in an ignored option are equal (and hash alike)."""
        taken = attention_options(self.type)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name != "type" and f.name not in taken:
                object.__setattr__(self, f.name, f.default)

    @classmethod
    def check_keys(cls, raw: Mapping, where: str) -> None:
        """A set option the type does not take is an error; a null one is "the module's
        default" for any type (``-S model.attention.type=none`` over a params.yaml that holds
        spatial's ``kernel_size: null`` just works)."""
        kind = raw.get("type", "none")
        if kind in _attentions():
            given = {k: v for k, v in raw.items() if k != "type" and v is not None}
            _check_options(given, where, "attention type", kind, attention_options(kind))

    def as_dict(self) -> dict[str, Any]:
        """``type`` and the options it takes: what artifacts store and :func:`parse` reads."""
        taken = attention_options(self.type)
        return {"type": self.type, **{k: getattr(self, k) for k in taken}}


def _declared(name: str, fields: list, base: type, doc: str) -> type:
    """A frozen dataclass of this module whose fields include the declared attention options."""
    cls = dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True)
    cls.__module__, cls.__doc__ = __name__, doc
    return cls


def _attention_config() -> type:
    from components.attention.registry import OPTIONS

    fields = [("type", AttentionType, field(default="none"))]
    fields += [(name, o.kind, field(default=o.default)) for name, o in OPTIONS.items()]
    doc = """Which attention module and its options (``OneOfConfig`` style: each type takes only
    the options its registry entry lists; ``None`` keeps the layer's own default, e.g. kernel 7
    for spatial, ECA's adaptive size, ``key_dim`` = channels // heads). Its option fields are
    :data:`components.attention.registry.OPTIONS`."""
    return _declared("AttentionConfig", fields, _AttentionMethods, doc)


AttentionConfig = _attention_config()


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

    def __post_init__(self) -> None:
        """A point the backbone does not have is an error before anything starts (the
        attention type ``none`` places nothing: its placement is not used)."""
        if self.attention.type == "none":
            return
        from components.models.registry import backbone

        points = backbone(self.backbone).points
        unknown = [p for p in self.placement if p not in points]
        if unknown:
            raise ConfigError(
                f"placement: backbone {self.backbone!r} has no placement point {unknown[0]!r}; "
                f"its points are: {', '.join(points)}"
            )

    @property
    def label(self) -> str:
        """``ststnet/mhsa@fused h=2``."""
        return model_label(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "attention": self.attention.as_dict(),
            "placement": list(self.placement),
            "dropout": self.dropout,
        }


def model_label(model: Mapping[str, Any]) -> str:
    """Short label of a model configuration (as a dict): ``ststnet/mhsa@fused h=2``; an option
    shows where its declaration has a label and the type takes it and it is set."""
    from components.attention.registry import OPTIONS

    attention = model["attention"]
    extra = "".join(
        " " + OPTIONS[name].label.format(value)
        for name, value in attention.items()
        if name in OPTIONS and OPTIONS[name].label and value is not None
    )
    where = "+".join(model["placement"]) or "-"
    return f"{model['backbone']}/{attention['type']}@{where}{extra}"


def model_dict(raw: Mapping) -> dict:
    """A stored model configuration with only the options its attention type takes (older
    artifacts stored every option)."""
    raw = dict(raw)
    attention = raw.get("attention") or {}
    if isinstance(attention, Mapping):
        kind = attention.get("type", "none")
        raw["attention"] = {
            k: v for k, v in attention.items() if k == "type" or k in attention_options(kind)
        }
    return raw


def model_from_dict(raw: Mapping, where: str) -> ModelConfig:
    """A model configuration stored by a stage (artifact, registry metadata)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping for the model, got {raw!r}")
    return parse(ModelConfig, model_dict(raw), where)


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained (used by evaluate, tune and register alike)."""

    epochs: Epochs = 60
    batch_size: BatchSize = 16  # per replica; the global batch is batch_size × replicas
    learning_rate: PositiveFloat = 0.001
    patience: Epochs = 12  # early stopping on validation UF1 (validation subjects only)
    min_epochs: Epochs = 20  # early stopping never stops before this (warm-up of tiny nets)
    validation_fraction: Fraction = 0.2  # of the training subjects, by subject
    class_weighting: Literal["balanced", "none"] = "balanced"
    augment_flip: bool = True  # horizontal mirror (u changes sign)
    augment_shift_px: NonNegative = 2  # random translation up to this many pixels (0 = off)
    devices: Annotated[int, Range(ge=1, le=256)] = (
        1  # CPU: split into N logical devices (MirroredStrategy); GPUs: all visible
    )
    threads: NonNegative = 0  # TF intra-op threads per process (0 = TF default)
    deterministic: bool = True  # tf.config.experimental.enable_op_determinism
    #: train the folds of one unit of work as one stacked model (each fold's copy sees every
    #: batch, learns only from its own training subjects) when the backbone has a stacked form
    stack_folds: bool = True
    #: decoupled weight decay (AdamW): each step, weights shrink by rate × weight_decay
    weight_decay: Annotated[float, Range(ge=0, lt=1)] = 0.0
    #: learning rate per epoch: constant | cosine (from the rate down to 0 at ``epochs``) |
    #: one_cycle (linear warm-up from rate/25 over the first 30% of epochs, then cosine to
    #: rate/10⁴: PyTorch's OneCycleLR defaults)
    lr_schedule: Literal["constant", "cosine", "one_cycle"] = "constant"
    #: targets (1 − ε)·one-hot + ε/K in the cross-entropy
    label_smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.0
    #: mixup (Zhang et al. 2018) of each training row with another row of its step: samples
    #: and one-hot labels mixed with weight λ ~ Beta(α, α) (0 = off)
    mixup_alpha: Annotated[float, Range(ge=0, le=10)] = 0.0
    #: test-time flip: a sample's probabilities are the mean over it and its mirror image
    test_flip: bool = False
    #: dataset-balanced epochs: each dataset (CASME II, SAMM, SMIC, ...) of a fold's training
    #: subjects is drawn as often as the largest (a smaller one topped up with its own samples
    #: drawn without replacement, anew each epoch); class weights follow the balanced counts
    balance_datasets: bool = False


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: the embedded default is SQLite; ``MLFLOW_TRACKING_URI`` overrides the URI."""

    uri: str = "sqlite:///mlflow.db"
    artifact_location: PathSetting = "mlartifacts"
    experiment: str = "mer-attention"

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", self.uri):
            hint = f"; did you mean sqlite:///{self.uri}?" if self.uri.endswith(".db") else ""
            raise ConfigError(
                f"tracking.uri: {self.uri!r} has no scheme (sqlite:///, postgresql://, "
                f"http://, ...){hint}"
            )
        if not self.experiment.strip():
            raise ConfigError("tracking.experiment: the name is empty")


@dataclass(frozen=True)
class RegisterConfig:
    """The ``register`` stage: retrain the chosen configuration on every subject, register it."""

    model_name: str = "mer-attention"  # the registered model in the MLflow registry
    alias: str = "champion"  # moves only to a version that beats it on the same protocol/data
    epochs: Epochs | None = None  # None = median best epoch of the evaluate folds
    #: with evaluate.seeds ≥ 2, register the seeds' probability ensemble (one model averaging
    #: a final model per evaluated seed: what evaluate's ``ensemble`` row measured)
    ensemble: bool = True
    reports_dir: PathSetting = "reports/register"

    def __post_init__(self) -> None:
        """MLflow's own rules for registered model and alias names, checked before training
        (MLflow would refuse them only when the trained model is registered)."""
        name, alias = self.model_name, self.alias
        if not name.strip() or "/" in name or ":" in name or name != name.strip():
            raise ConfigError(
                f"register.model_name: {name!r} is not a registered-model name (non-empty, "
                "no '/' or ':', no surrounding spaces)"
            )
        if not re.fullmatch(r"[\w\-]{1,255}", alias):
            raise ConfigError(
                f"register.alias: {alias!r} is not an alias (1-255 letters, digits, _ or -)"
            )
        if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise ConfigError(
                f"register.alias: {alias!r} is reserved by MLflow ('latest' and 'v<number>' "
                "name versions); choose another, e.g. champion"
            )


@dataclass(frozen=True)
class EvaluateConfig:
    """The MEGC protocol run by the ``evaluate`` stage, as (variant, seed, fold) units of work."""

    protocol: Literal["loso", "kfold", "lodo"] = "loso"
    folds: Annotated[int, Range(ge=2)] = 5  # for kfold
    selection: Literal["given", "nested"] = "given"
    candidates: tuple[ModelConfig, ...] = ()  # for nested selection (in addition to `model`)
    inner_folds: Annotated[int, Range(ge=2)] = 3  # nested: grouped folds over training subjects
    #: training seeds per variant (seed, seed+1, ...); the metrics are their mean, and with 2 or
    #: more the ``ensemble`` row is their probability ensemble (what register registers)
    seeds: Annotated[int, Range(ge=1, le=1000)] = 3
    bootstrap: Annotated[int, Range(ge=100, le=100_000)] = 2000  # subject-bootstrap resamples
    confidence: Fraction = 0.95
    attention_examples: NonNegative = 2  # samples per class drawn as attention-map overlays
    folds_per_unit: Annotated[int, Range(ge=1, le=1000)] = (
        17  # folds trained together (stacked) in one unit of work
    )
    #: seeds trained together with those folds in one unit (a stack of folds × seeds; 1 =
    #: a unit per seed); only where the folds stack
    seeds_per_unit: Annotated[int, Range(ge=1, le=1000)] = 3
    #: the fewest units a run is cut into (fold blocks shrink to reach it): a small dataset's
    #: single stack would leave every core but one idle; a function of the params, not the
    #: machine, so results do not depend on where they ran
    min_units: Annotated[int, Range(ge=1, le=1000)] = 4
    max_failures: NonNegative = 2  # retries of a crashed unit
    units_dir: PathSetting = ".mer/units"  # finished units (predictions, epochs): re-runs resume
    reports_dir: PathSetting = "reports"

    def __post_init__(self) -> None:
        check_unique(self.candidates, "evaluate.candidates")


class _SpaceChecks:
    """What :data:`ModelSpaceConfig` checks: every axis has values, none twice."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not getattr(self, f.name):
                raise ConfigError(f"{f.name}: the list is empty; give at least one value")
            check_unique(getattr(self, f.name), f.name)


def _model_space_config() -> type:
    from components.attention.registry import OPTIONS

    fields = [
        ("backbone", tuple[BackboneName, ...], field(default=("ststnet",))),
        ("attention", tuple[AttentionType, ...], field(default=("spatial", "mhsa"))),
        *((name, tuple[o.kind, ...], field(default=(o.default,))) for name, o in OPTIONS.items()),
        ("placement", tuple[tuple[str, ...], ...], field(default=(("fused",),))),
    ]
    doc = """Model axes to search or compare: backbones, attention types, every declared option
    (:data:`components.attention.registry.OPTIONS`) and placements. Options apply only to the
    attention types that take them, and placements only where the backbone has them, so no two
    variants differ only in an option their model ignores."""
    return _declared("ModelSpaceConfig", fields, _SpaceChecks, doc)


ModelSpaceConfig = _model_space_config()


@dataclass(frozen=True)
class TuneSpaceConfig(ModelSpaceConfig):
    """The search space of ``tune``: the model axes and the training values."""

    learning_rate: tuple[PositiveFloat, ...] = (0.001,)
    batch_size: tuple[BatchSize, ...] = (16,)
    epochs: tuple[Epochs, ...] = (40,)


def _tune_space() -> TuneSpaceConfig:
    """The mission's search (params.yaml's): attention type × heads × placement."""
    return TuneSpaceConfig(
        attention=("none", "se", "channel", "spatial", "cbam", "mhsa"),
        heads=(1, 2),
        placement=(("fused",), ("pre_head",)),
    )


def _compare_space() -> ModelSpaceConfig:
    return ModelSpaceConfig(
        attention=("none", "se", "eca", "channel", "spatial", "cbam", "mhsa"),
        placement=(("fused",), ("pre_head",)),
    )


@dataclass(frozen=True)
class CompareConfig:
    """The ``compare`` stage: every model of ``space`` against its backbone's ``baseline``,
    each over ``seeds`` seeds, on the same folds (the protocol of ``evaluate``)."""

    space: ModelSpaceConfig = field(default_factory=_compare_space)
    baseline: AttentionType = "none"  # each variant against its backbone with this attention
    #: seeds per model, or auto: 3, then as many more as bring every comparison's MDE down
    #: to ``resolution`` (components/evaluation/seed_plan.py), at most ``max_seeds``
    seeds: Annotated[int, Range(ge=1, le=1000)] | Literal["auto"] = 10
    resolution: Fraction = 0.05  # auto: the minimum detectable ΔUF1 (80% power) wanted
    max_seeds: Annotated[int, Range(ge=2, le=1000)] = 10  # auto: the cap
    #: multiple-comparison adjustment across the sweep, beside the unadjusted verdicts:
    #: holm (family-wise error; any dependence) | bh (Benjamini-Hochberg false discovery rate)
    correction: Literal["holm", "bh"] = "holm"
    #: the ΔUF1 that matters: a comparison whose (1 − 2α) interval lies inside ±margin is
    #: "equivalent" (two one-sided tests); every comparison states its MDE beside it
    margin: Fraction = 0.03
    reports_dir: PathSetting = "reports/compare"

    @property
    def most_seeds(self) -> int:
        """The most seeds a model may be trained with."""
        return self.max_seeds if self.seeds == "auto" else self.seeds


@dataclass(frozen=True)
class TuneConfig:
    """The Ray Tune search run by the ``tune`` stage."""

    space: TuneSpaceConfig = field(default_factory=_tune_space)
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
    grace_period: Epochs = 15  # asha/halving: epochs every trial gets before it can be stopped
    reduction_factor: Annotated[int, Range(ge=2)] = 3
    brackets: Positive = 1  # ASHA brackets
    #: what ranks the trials: validation UF1 or UAR (higher is better) or loss (lower is)
    metric: Literal["val_uf1", "val_uar", "val_loss"] = "val_uf1"
    mode: Literal["max", "min"] = "max"  # must agree with the metric (checked)
    holdout_fraction: Annotated[float, Range(ge=0, lt=1)] = 0.2  # subjects the search never sees
    validation_fraction: Fraction = 0.25  # holdout objective: the validation subjects
    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: Annotated[float, Range(ge=0)] = 0.0
    devices_per_trial: Positive = 1  # CPU-only trials: logical devices for MirroredStrategy
    address: str | None = None  # Ray cluster to attach to (RAY_ADDRESS wins); None = local
    storage_path: str = ".ray_results"  # shared storage for a multi-node cluster
    max_failures: NonNegative = 2  # retries of a crashed trial, from its last checkpoint
    reports_dir: PathSetting = "reports/tune"

    def __post_init__(self) -> None:
        wanted = "min" if self.metric == "val_loss" else "max"
        if self.mode != wanted:
            raise ConfigError(
                f"tune.mode: {self.mode!r} would rank {self.metric} from the worst trial; "
                f"{self.metric} needs mode {wanted!r}"
            )
        if "://" not in self.storage_path:
            object.__setattr__(self, "storage_path", UserPath()(self.storage_path, "tune"))


def _default_datasets() -> tuple[DatasetConfig, ...]:
    return (DatasetConfig(name="casme2", root="data/raw/synthetic_casme2"),)


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    seed: Seed = 42
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
        roots = [(d.name, str(Path(d.root).resolve())) for d in self.datasets]
        for index, entry in enumerate(roots):
            if entry in roots[:index]:
                raise ConfigError(
                    f"datasets[{index}]: {entry[0]} at {self.datasets[index].root} is listed "
                    f"twice (also datasets[{roots.index(entry)}]); its samples would be read twice"
                )
        last = self.seed + max(self.evaluate.seeds, self.compare.most_seeds) - 1
        if last > 2**31 - 1:
            raise ConfigError(
                f"seed: {self.seed} + seeds - 1 = {last} is above 2**31 - 1, the largest seed"
            )


def load_params(path: str | Path = "params.yaml", overrides: Iterable[str] = ()) -> Params:
    """Read and validate ``params.yaml`` with ``overrides`` (``key.sub=value``, the value read
    as YAML, as ``dvc exp run -S`` takes them); raise :class:`ConfigError` naming any bad key."""
    path = Path(path)
    try:
        raw = strict_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; --params takes a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}); "
            "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(
            f"{path}: is empty; a params file names at least the datasets it runs on "
            "(the repository's params.yaml is the documented default)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for override in overrides or ():
        raw = apply_override(raw, override)
    where = str(path) + (" with -S " + " -S ".join(overrides) if overrides else "")
    return parse(Params, raw, where=where)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML says keys are
    unique; PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (line {seen[key] + 1} and line "
                    f"{key_node.start_mark.line + 1}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def strict_yaml(text: str):
    """``text`` parsed as YAML, with a key given twice in a mapping an error."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no object tags


def apply_override(raw: dict, override: str) -> dict:
    """``raw`` with ``key.sub=value`` set (the value read as YAML: ``3``, ``[se, cbam]``). A
    mapping given for a section is merged into it key by key (``-S 'train={epochs: 3}'`` sets
    ``train.epochs`` and keeps the other ``train`` keys); any other value replaces."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-S {override!r}: expected KEY=VALUE, e.g. -S train.epochs=3")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"-S {override!r}: the value is not valid YAML ({exc})") from None
    out = dict(raw)
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"-S {override!r}: {part} is not a section")
        node[part] = dict(child)
        node = node[part]
    node[parts[-1]] = _merged(node.get(parts[-1]), value)
    return out


def _merged(current, value):
    """``value`` merged into ``current`` key by key where both are mappings, else ``value``."""
    if isinstance(value, dict) and isinstance(current, dict):
        return {**current, **{k: _merged(current.get(k), v) for k, v in value.items()}}
    return value
