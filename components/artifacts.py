"""Each stage's outputs as a typed object: where they live (from ``Params``), one writer, one
reader. The producing stage writes through it and every consumer reads through it, so a
hand-off cannot drift (a renamed report folder moves for both sides at once).

- :class:`Records` — ``preprocess``: shards, manifest, quarantine, index, its report.
- :class:`TuneResult` — ``tune``: the best configuration **and** training values.
- :class:`Evaluation` — ``evaluate``: metrics (numbers only, for ``dvc metrics``), the
  evaluation record, predictions, figures, plot data.
- :class:`Registration` — ``register``: the registered version and the alias decision.
- :class:`Comparison` — ``mer compare``: the side-by-side table, JSON and figure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd

from components.config import (
    BatchSize,
    Epochs,
    ModelConfig,
    Params,
    PositiveFloat,
    TrainConfig,
    model_dict,
    model_from_dict,
)
from components.errors import ArtifactError, ConfigError
from components.outputs import write_json
from components.parsing import Range, parse


def _read_json(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: run `mer {stage}` (or `dvc repro`) first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}): run `mer {stage}` again") from None


def read_artifact(cls: type, path: Path, stage: str, prepare=None):
    """A stage's JSON output parsed through the typed schema, like ``params.yaml``: a missing,
    damaged or edited file (a key, a type, a value out of range) is one line naming the file,
    the key and the stage that writes it."""
    raw = _read_json(path, stage)
    try:
        return parse(cls, prepare(raw) if prepare else raw, str(path))
    except ConfigError as exc:
        raise ArtifactError(f"{exc}: run `mer {stage}` again") from None


@dataclass(frozen=True)
class Records:
    """The ``preprocess`` outputs."""

    folder: Path
    report: Path

    SHARDS = "records-*-of-*.tfrecord.gz"
    MANIFEST = "manifest.parquet"
    QUARANTINE = "quarantine.parquet"
    QUARANTINE_CSV = "quarantine.csv"
    EXCLUDED = "excluded.parquet"
    INDEX = "records.json"
    #: everything preprocess writes into its folder (anything else there is refused)
    OWNED = (SHARDS, MANIFEST, QUARANTINE, QUARANTINE_CSV, EXCLUDED, INDEX)

    @classmethod
    def of(cls, params: Params) -> Records:
        return cls(Path(params.preprocess.records_dir), Path(params.preprocess.report))

    def read(self):
        """The validated records in memory (:func:`components.records.store.load_records`)."""
        from components.records.store import load_records

        return load_records(self.folder)

    def data_version(self) -> str:
        from components.provenance import data_version

        return data_version(self.folder)

    def write_report(self, report: dict) -> None:
        write_json(self.report, report)


@dataclass(frozen=True)
class TuneResult:
    """The best point of the search: the model and the training values evaluate and register
    apply (typed like ``params.yaml``'s ``train``: read back through the same checks)."""

    model: ModelConfig
    learning_rate: PositiveFloat
    batch_size: BatchSize
    epochs: Epochs
    best_epoch: Annotated[int, Range(ge=0)]
    score: Annotated[float, Range(ge=0)]  # the metric at the best epoch (validation subjects)
    objective: Literal["holdout", "kfold"]
    label: str
    search: dict[str, Any]
    holdout_subjects: list[str]
    search_subjects: list[str]
    metric: Literal["val_uf1", "val_uar", "val_loss"] = "val_uf1"  # what ``score`` is

    FILES = ("best_config.json", "trials.parquet", "search.png")

    def __post_init__(self) -> None:
        if self.best_epoch >= self.epochs:
            raise ConfigError(f"best_epoch {self.best_epoch} is not below epochs {self.epochs}")
        if self.metric != "val_loss" and self.score > 1:
            raise ConfigError(f"score: {self.metric} {self.score} is above 1")
        if set(self.holdout_subjects) & set(self.search_subjects):
            raise ConfigError("holdout_subjects and search_subjects overlap")

    @staticmethod
    def folder(params: Params) -> Path:
        return Path(params.tune.reports_dir)

    @staticmethod
    def metrics_path(params: Params) -> Path:
        return TuneResult.folder(params) / "metrics.json"

    def apply(self, train: TrainConfig) -> TrainConfig:
        """``train`` with the searched values of this point."""
        return replace(
            train, learning_rate=self.learning_rate, batch_size=self.batch_size, epochs=self.epochs
        )

    def write(self, folder: Path) -> None:
        """``best_config.json`` into ``folder`` (the stage's staging folder)."""
        payload = {**asdict(self), "model": self.model.as_dict()}
        write_json(folder / "best_config.json", payload)

    @classmethod
    def read(cls, params: Params) -> TuneResult | None:
        """The tune stage's result, or None when it has not run (no ``best_config.json``)."""
        path = cls.folder(params) / "best_config.json"
        if not path.exists():
            return None
        return read_artifact(cls, path, "tune", _older_attention_options)


def _older_attention_options(raw: dict) -> dict:
    """Older artifacts stored every attention option; the type's own are kept."""
    if isinstance(raw.get("model"), dict):
        raw = {**raw, "model": model_dict(raw["model"])}
    return raw


@dataclass(frozen=True)
class Chosen:
    """The configuration evaluate and register train: the tune stage's best point (model and
    training values) when it has run, else ``params.yaml``'s ``model`` and ``train``."""

    model: ModelConfig
    train: TrainConfig
    tune: TuneResult | None

    @property
    def source(self) -> str:
        return "tune" if self.tune else "params"

    def describe(self, params: Params) -> str:
        if self.tune is None:
            return "params.yaml model and train"
        return f"the tune stage ({TuneResult.folder(params) / 'best_config.json'})"

    @classmethod
    def of(cls, params: Params) -> Chosen:
        tuned = TuneResult.read(params)
        if tuned is None:
            return cls(params.model, params.train, None)
        return cls(tuned.model, tuned.apply(params.train), tuned)


@dataclass
class Evaluation:
    """The ``evaluate`` record: protocol, selection, the configuration and training values,
    metrics (with CIs, per seed), per-fold choices."""

    protocol: Literal["loso", "kfold", "lodo"]
    complete: bool
    selection: Literal["given", "nested"]
    selection_statement: str
    model: dict[str, Any]
    train: dict[str, Any]
    seeds: list[Annotated[int, Range(ge=0)]]
    summary: dict[str, dict[str, Any]]
    folds: list[dict[str, Any]]
    units: dict[str, Any] = field(default_factory=dict)
    folds_still_improving: Annotated[int, Range(ge=0)] = 0  # still improving when epochs ran out

    def __post_init__(self) -> None:
        composite = self.summary.get("composite")
        if not isinstance(composite, dict):
            raise ConfigError("summary: has no composite block")
        for metric in ("uf1", "uar"):
            value = composite.get(metric)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"summary:composite:{metric}: {value!r} is not in [0, 1]")
        trained = sorted({f.get("seed") for f in self.folds if isinstance(f, dict)}, key=str)
        if self.folds and trained != sorted(self.seeds, key=str):
            raise ConfigError(
                f"seeds: {list(self.seeds)} is not what its folds were trained with "
                f"({trained}); the record was edited or damaged"
            )

    OUTPUTS = (
        "metrics.json",
        "evaluation.json",
        "predictions.parquet",
        "results.csv",
        "results.tex",
        "figures",
        "plots/confusion.csv",
        "plots/f1_per_class.csv",
    )
    METRIC_KEYS = (
        "uf1",
        "uf1_ci_low",
        "uf1_ci_high",
        "uar",
        "uar_ci_low",
        "uar_ci_high",
        "accuracy",
        "samples",
    )

    @staticmethod
    def folder(params: Params) -> Path:
        return Path(params.evaluate.reports_dir)

    def metrics(self) -> dict[str, Any]:
        """Numbers only (``dvc metrics show``): per subset the pooled UF1/UAR with CIs (none
        where there are too few subjects for one)."""
        out: dict[str, Any] = {
            subset: {k: block[k] for k in self.METRIC_KEYS if block.get(k) is not None}
            for subset, block in self.summary.items()
        }
        out["folds_run"] = len({f["fold"] for f in self.folds})
        out["seeds"] = len(self.seeds)
        out["folds_still_improving"] = self.folds_still_improving
        return out

    def write(self, folder: Path, predictions: pd.DataFrame) -> None:
        """``metrics.json``, ``evaluation.json``, ``predictions.parquet`` into ``folder``."""
        write_json(folder / "metrics.json", self.metrics())
        write_json(folder / "evaluation.json", asdict(self))
        from components.datasets.labels import COMPOSITE_CLASSES

        names = pd.Series(COMPOSITE_CLASSES)
        named = predictions.assign(  # the class names beside their indices (p_0.. follow them)
            true_class=names[predictions.true].to_numpy(),
            predicted_class=names[predictions.predicted].to_numpy(),
        )
        named.to_parquet(folder / "predictions.parquet", index=False)

    @classmethod
    def read(cls, params: Params) -> Evaluation:
        evaluation = read_artifact(cls, cls.folder(params) / "evaluation.json", "evaluate")
        try:
            evaluation.model_config()
            parse(TrainConfig, evaluation.train, "evaluation.json train")
        except ConfigError as exc:
            raise ArtifactError(f"{exc}: run `mer evaluate` again") from None
        return evaluation

    @classmethod
    def predictions(cls, params: Params) -> pd.DataFrame:
        path = cls.folder(params) / "predictions.parquet"
        if not path.is_file():
            raise ArtifactError(f"{path} is missing: run `mer evaluate` first")
        return pd.read_parquet(path)

    def composite(self) -> dict[str, Any]:
        return self.summary["composite"]

    def model_config(self) -> ModelConfig:
        return model_from_dict(self.model, "evaluation.json model")


@dataclass(frozen=True)
class Registration:
    """What ``register`` did: the version, and whether the alias moved and why."""

    model_name: str
    version: Annotated[int, Range(ge=1)]
    model_uri: str
    alias: str
    alias_moved: bool
    reason: str
    previous_alias_holder: str | None
    data_version: str
    uf1: Annotated[float, Range(ge=0, le=1)]
    protocol: Literal["loso", "kfold", "lodo"]

    FILES = ("registration.json", "metrics.json", "model_card.md", "attention_maps.png")

    @staticmethod
    def folder(params: Params) -> Path:
        return Path(params.register.reports_dir)

    def write(self, folder: Path) -> None:
        write_json(folder / "registration.json", asdict(self))
        write_json(
            folder / "metrics.json",
            {"uf1": self.uf1},  # the registered configuration's evaluated UF1
        )

    @classmethod
    def read(cls, params: Params) -> Registration:
        return read_artifact(cls, cls.folder(params) / "registration.json", "register")


def verdict_kind(call: str) -> str:
    """A recorded call's kind (``equivalent within ±0.03`` → ``equivalent``): what the metrics
    count and the figures colour."""
    return call.split()[0]


@dataclass(frozen=True)
class Comparison:
    """The ``compare`` stage's outputs: a row per model (mean ± CI, Δ vs its baseline, verdicts
    unadjusted and adjusted), the main effects, tables and figures."""

    header: str
    correction: str
    seeds: list[int]
    rows: list[dict[str, Any]]
    effects: list[dict[str, Any]]

    FILES = (
        "comparison.json",
        "comparison.md",
        "comparison.csv",
        "comparison.tex",
        "main_effects.csv",
        "forest.png",
        "heatmap.png",
        "metrics.json",
    )

    @staticmethod
    def folder(params: Params) -> Path:
        return Path(params.compare.reports_dir)

    def metrics(self) -> dict[str, Any]:
        """Numbers only (``dvc metrics show``): how many variants, how many calls each way."""
        compared = [r for r in self.rows if r["verdict"] != "baseline"]

        def count(key: str, value: str) -> int:
            return sum(verdict_kind(r[key]) == value for r in compared)

        return {
            "variants": len(compared),
            "seeds": len(self.seeds),
            "better": count("verdict", "better"),
            "worse": count("verdict", "worse"),
            f"better_{self.correction}": count("verdict_adjusted", "better"),
            f"worse_{self.correction}": count("verdict_adjusted", "worse"),
            "equivalent": count("verdict", "equivalent"),
            "inconclusive": count("verdict", "inconclusive"),
            "max_mde_uf1": max((r["mde_uf1"] for r in compared), default=0.0),
            "max_delta_uf1": max((r["delta_uf1"] for r in compared), default=0.0),
            "min_delta_uf1": min((r["delta_uf1"] for r in compared), default=0.0),
        }

    def write(self, folder: Path) -> None:
        """The record and its metrics into ``folder`` (the stage's staging folder; the tables
        and figures are the report's: :func:`components.evaluation.comparison.publish`)."""
        write_json(folder / "comparison.json", asdict(self))
        write_json(folder / "metrics.json", self.metrics())

    @classmethod
    def read(cls, params: Params) -> Comparison:
        return read_artifact(cls, cls.folder(params) / "comparison.json", "compare")
