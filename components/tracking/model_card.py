"""The model card registered with every version: data, protocol, metrics, intended use, limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from components.config import ModelConfig, Params, TrainConfig
from components.datasets.labels import COMPOSITE_CLASSES
from components.evaluation.report import with_ci
from components.training.budget import folds_budget_warning


@dataclass(frozen=True)
class CardFacts:
    """What the card states; everything comes from the run that registers the model."""

    name: str
    params: Params
    model_cfg: ModelConfig
    config_source: str  # where the configuration and training values came from
    evaluation: Any  # components.artifacts.Evaluation: the protocol's estimate, with CIs
    train: TrainConfig  # the training values of the final model
    manifest: pd.DataFrame  # the records the final model was trained on
    epochs: int
    epochs_source: str
    parameters: int  # trainable + non-trainable weights
    input_kind: str  # "flow" | "clip"
    data_version: str
    code_version: str  # hash of the project's code (the git commit is on the MLflow version)
    synthetic: bool  # trained on the embedded synthetic dataset
    seeds: list[int]  # one final model per seed; several: their probability ensemble


def _recipe_text(train: TrainConfig) -> str:
    """The recipe options that are on, as words (empty when none is)."""
    parts = [
        f"AdamW weight decay {train.weight_decay}" if train.weight_decay else "",
        f"{train.lr_schedule.replace('_', '-')} learning-rate schedule"
        if train.lr_schedule != "constant"
        else "",
        f"label smoothing {train.label_smoothing}" if train.label_smoothing else "",
        f"mixup α {train.mixup_alpha}" if train.mixup_alpha else "",
        "test-time flip (mean over the sample and its mirror)" if train.test_flip else "",
        "dataset-balanced epochs" if train.balance_datasets else "",
    ]
    return "".join(f", {part}" for part in parts if part)


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return (
        f"seeds {', '.join(map(str, seeds))}: the registered model is their probability "
        f"ensemble (the mean of {len(seeds)} final models' probabilities; evaluate's "
        f"`ensemble` row)"
    )


def _metric_rows(summary: dict) -> list[str]:
    rows = []
    for subset, block in summary.items():
        label = {
            "composite": "composite (all datasets pooled)",
            "untuned_subjects": "subjects the tune stage never saw",
        }.get(subset, subset)
        rows.append(
            f"| {label} | {with_ci(block, 'uf1')} | {with_ci(block, 'uar')} "
            f"| {block['samples']} | {block['subjects']} |"
        )
    return rows


def model_card(facts: CardFacts) -> str:
    """The card as Markdown."""
    return (
        f"# Model card: {facts.name}\n{_synthetic_warning(facts)}\n"
        + _model_section(facts)
        + _data_section(facts)
        + _training_section(facts)
        + _evaluation_section(facts)
        + USE_AND_LIMITS
    )


def _synthetic_warning(facts: CardFacts) -> str:
    if not facts.synthetic:
        return ""
    return (
        "\n> **Trained on the embedded synthetic dataset.** The clips are real public-domain "
        "faces with planted, class-dependent motion; the numbers below say that the pipeline "
        "works, not how the model does on real micro-expressions. Point `params.yaml` "
        "`datasets` at a licensed dataset for a real model.\n"
    )


def _model_section(facts: CardFacts) -> str:
    m, p = facts.model_cfg, facts.params
    attention = m.attention
    attention_text = attention.type + (
        f" ({attention.heads} heads)" if attention.type in {"mhsa", "temporal_mhsa"} else ""
    )
    size = p.preprocess.flow_size
    input_text = (
        f"onset→apex TV-L1 optical flow (u, v) and optical strain of the aligned face, "
        f"{size}×{size}×3, each channel min-max normalised"
        if facts.input_kind == "flow"
        else f"{p.preprocess.clip_frames} aligned grey face frames from onset to offset, "
        f"{p.preprocess.clip_size}×{p.preprocess.clip_size}, scaled to [0, 1]"
    )
    return f"""## Model
- Backbone `{m.backbone}`, attention **{attention_text}** at `{", ".join(m.placement) or "-"}`,
  dropout {m.dropout}; {facts.parameters:,} weights.
- Configuration from {facts.config_source}.
- Input (`mer predict` and the serving input): {input_text}; output:
  probabilities of the MEGC composite classes negative / positive / surprise.

"""


def _data_section(facts: CardFacts) -> str:
    manifest = facts.manifest
    datasets = ", ".join(f"`{d.name}` ({d.root})" for d in facts.params.datasets)
    counts = manifest.groupby("emotion").size().to_dict() if "emotion" in manifest else {}
    classes = manifest.groupby("label").size().to_dict()
    balance = ", ".join(f"{COMPOSITE_CLASSES[k]} {v}" for k, v in sorted(classes.items()))
    return f"""## Data
- Datasets: {datasets}; data version (DVC hash of the records) `{facts.data_version}`.
- {len(manifest)} clips of {manifest.subject_id.nunique()} subjects; classes: {balance}.
- Native emotions: {", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"}.

"""


def _training_section(facts: CardFacts) -> str:
    evaluation, train = facts.evaluation, facts.train
    budget = folds_budget_warning(
        evaluation.folds, evaluation.train["epochs"], evaluation.train["patience"]
    )
    budget_text = f"\n- **Training budget:** {budget}.\n" if budget else "\n"
    units = evaluation.units or {}
    if units.get("stacked") is False:
        budget_text += (
            f"- The evaluation trained its folds one by one, not stacked "
            f"({units.get('not_stacked_because', '')}): the same results, many times slower.\n"
        )
    return f"""## Training
- The final model is trained on every subject for {facts.epochs} epochs ({facts.epochs_source}),
  learning rate {train.learning_rate}, batch {train.batch_size} per replica,
  class weighting `{train.class_weighting}`{_recipe_text(train)}, {_seeds_text(facts.seeds)}; code version `{facts.code_version}`.{budget_text}
"""


def _evaluation_section(facts: CardFacts) -> str:
    evaluation = facts.evaluation
    complete = "" if evaluation.complete else ", INCOMPLETE"
    metric_table = "\n".join(_metric_rows(evaluation.summary))
    return f"""## Evaluation (MEGC protocol, `{evaluation.protocol}`{complete}, {len(evaluation.seeds)} seed(s))
{evaluation.selection_statement}.

| subset | UF1 [95% CI] | UAR [95% CI] | clips | subjects |
|---|---|---|---|---|
{metric_table}

"""


USE_AND_LIMITS = """UF1 is the unweighted mean of per-class F1 over the pooled predictions of all folds, UAR the
unweighted mean of per-class recall (MEGC 2019 definitions); with several seeds, the mean of
each seed's value. The intervals come from a subject-level bootstrap (subjects resampled with
replacement, metrics recomputed, seeds folded in): on tens of subjects they are wide, and two
configurations whose intervals overlap may not differ at all. These numbers are the protocol's
estimate for this configuration; the registered model itself is trained on all subjects and has
no held-out score.

Reproducibility: the same params, data, package versions and machine give this model bit for
bit; another CPU instruction set (AVX-512 or AVX2, TensorFlow's oneDNN or Eigen kernels) or a GPU
gives a statistically equivalent model, not an identical one.

## Intended use
Research on micro-expression recognition: comparing attention modules, reproducing results,
inspecting what the model attends to (`mer predict` writes the attention map over the face).

## Limits
- Not for decisions about people: micro-expression datasets are small (tens of subjects),
  lab-recorded, posed-suppression elicited and demographically narrow; emotions are inferred
  labels, not ground truth of what someone feels.
- Input must match the preprocessing above: a frontal face, onset first, one clip of a single
  expression; `mer predict` spots the apex when it is not given, which can fail on clips with
  large head motion or several movements.
- Three composite classes only; other emotions are outside the model's vocabulary.
"""
