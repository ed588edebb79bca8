"""The final model of the register stage: the evaluated configuration trained on every
subject for a fixed number of epochs, as an ordinary Keras model, with its figure and card."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.config import Params, TrainConfig


def train_final(
    records,
    chosen,
    train: TrainConfig,
    params: Params,
    evaluation,
    epochs_source: str,
    tags: dict[str, str],
    synthetic: bool,
    folder: Path,
):
    """Train ``chosen.model`` on all of ``records`` (no validation subjects: ``train.epochs``
    epochs); draw the example attention maps into ``folder/attention_maps.png``; return the
    :class:`~components.tracking.registration.FinalModel`."""
    from components.datasets.labels import NUM_CLASSES
    from components.evaluation import plots
    from components.evaluation.examples import overlays_for, pick_examples
    from components.models.registry import BACKBONES
    from components.tracking.model_card import CardFacts, model_card
    from components.tracking.registration import FinalModel
    from components.training import runtime
    from components.training.fit import FoldData, fit_folds

    runtime.configure(train, params.seed)
    kind = BACKBONES[chosen.model.backbone].input_kind
    everyone = np.arange(len(records.manifest))
    p = params.preprocess
    (fit,) = fit_folds(
        records.inputs(kind),
        records.labels,
        [FoldData("all", everyone, everyone[:0], everyone[:0], params.seed)],
        chosen.model,
        train,
        kind=kind,
        input_sizes=p.input_sizes(),
        num_classes=NUM_CLASSES,
        seed=params.seed,
        strategy=runtime.make_strategy(train),
    )
    model = fit.export()
    examples = sorted(
        pick_examples(records.manifest, params.evaluate.attention_examples, params.seed)
    )
    title = f"{chosen.model.backbone} / {chosen.model.attention.type}: final model (all subjects)"
    plots.attention_grid_png(
        overlays_for(records, examples, model, kind), folder / "attention_maps.png", title
    )
    card = model_card(
        CardFacts(
            name=params.register.model_name,
            params=params,
            model_cfg=chosen.model,
            config_source=chosen.describe(params),
            evaluation=evaluation,
            train=train,
            manifest=records.manifest,
            epochs=train.epochs,
            epochs_source=epochs_source,
            parameters=int(model.count_params()),
            input_kind=kind,
            data_version=tags["data_version"],
            git_commit=tags["git_commit"],
            synthetic=synthetic,
        )
    )
    return FinalModel(
        model=model,
        model_cfg=chosen.model,
        train=train,
        kind=kind,
        input_example=records.inputs(kind)[:1],
        card=card,
        tags=tags,
        synthetic=synthetic,
    )
