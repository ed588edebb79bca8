"""The model card registered with every version: data, protocol, metrics, intended use, limits."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from components.config import ModelConfig, Params
from components.datasets.labels import COMPOSITE_CLASSES


@dataclass(frozen=True)
class CardFacts:
    """What the card states; everything comes from the run that registers the model."""

    name: str
    params: Params
    model_cfg: ModelConfig
    config_source: str  # "tune: reports/tune/best_config.json" | "params.yaml model"
    metrics: dict  # reports/metrics.json
    selection_statement: str
    manifest: pd.DataFrame  # the records the final model was trained on
    epochs: int
    epochs_source: str
    parameters: int  # trainable + non-trainable weights
    input_kind: str  # "flow" | "clip"
    data_version: str
    git_commit: str
    synthetic: bool  # trained on the embedded synthetic dataset


def _metric_rows(metrics: dict) -> list[str]:
    rows = []
    for subset, block in metrics.items():
        if isinstance(block, dict) and "uf1" in block:
            label = {
                "composite": "composite (all datasets pooled)",
                "untuned_subjects": "subjects the tune stage never saw",
            }.get(subset, subset)
            rows.append(
                f"| {label} | {block['uf1']:.4f} | {block['uar']:.4f} | {block['samples']} |"
            )
    return rows


def model_card(facts: CardFacts) -> str:
    """The card as Markdown."""
    p, m, manifest = facts.params, facts.model_cfg, facts.manifest
    datasets = ", ".join(f"`{d.name}` ({d.root})" for d in p.datasets)
    counts = manifest.groupby("emotion").size().to_dict() if "emotion" in manifest else {}
    classes = manifest.groupby("label").size().to_dict()
    balance = ", ".join(f"{COMPOSITE_CLASSES[k]} {v}" for k, v in sorted(classes.items()))
    attention = m.attention
    attention_text = attention.type + (
        f" ({attention.heads} heads)" if attention.type in {"mhsa", "temporal_mhsa"} else ""
    )
    metric_table = "\n".join(_metric_rows(facts.metrics))
    size = p.preprocess.flow_size
    input_text = (
        f"onset→apex TV-L1 optical flow (u, v) and optical strain of the aligned face, "
        f"{size}×{size}×3, each channel min-max normalised"
        if facts.input_kind == "flow"
        else f"{p.preprocess.clip_frames} aligned grey face frames from onset to offset, "
        f"{p.preprocess.clip_size}×{p.preprocess.clip_size}, scaled to [0, 1]"
    )
    complete = facts.metrics.get("complete", True)
    synthetic_warning = (
        "\n> **Trained on the embedded synthetic dataset.** The clips are real public-domain "
        "faces with planted, class-dependent motion; the numbers below say that the pipeline "
        "works, not how the model does on real micro-expressions. Point `params.yaml` "
        "`datasets` at a licensed dataset for a real model.\n"
        if facts.synthetic
        else ""
    )
    return f"""# Model card: {facts.name}
{synthetic_warning}
## Model
- Backbone `{m.backbone}`, attention **{attention_text}** at `{", ".join(m.placement) or "-"}`,
  dropout {m.dropout}; {facts.parameters:,} weights.
- Configuration from {facts.config_source}.
- Input (`mer predict` and the serving input): {input_text}; output:
  probabilities of the MEGC composite classes negative / positive / surprise.

## Data
- Datasets: {datasets}; data version (DVC hash of the records) `{facts.data_version}`.
- {len(manifest)} clips of {manifest.subject_id.nunique()} subjects; classes: {balance}.
- Native emotions: {", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"}.

## Training
- The final model is trained on every subject for {facts.epochs} epochs ({facts.epochs_source}),
  learning rate {p.train.learning_rate}, batch {p.train.batch_size} per replica,
  class weighting `{p.train.class_weighting}`, seed {p.seed}; code `{facts.git_commit}`.

## Evaluation (MEGC protocol, `{facts.metrics["protocol"]}`{"" if complete else ", INCOMPLETE"})
{facts.selection_statement}.

| subset | UF1 | UAR | clips |
|---|---|---|---|
{metric_table}

UF1 is the unweighted mean of per-class F1 over the pooled predictions of all folds, UAR the
unweighted mean of per-class recall (MEGC 2019 definitions). These numbers are the protocol's
estimate for this configuration; the registered model itself is trained on all subjects and has
no held-out score.

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
