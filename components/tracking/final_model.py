"""The model ``register`` trains and logs: the evaluated configuration trained on every subject
for a fixed number of epochs (no validation subjects), with its attention-map figure and its
model card."""

from __future__ import annotations

from pathlib import Path

from components.config import Params, TrainConfig


def final_seeds(params: Params, evaluation) -> list[int]:
    """The seeds of the registered model: every evaluated seed (their probability ensemble)
    with ``register.ensemble`` and several seeds, else ``seed`` alone."""
    evaluated = [int(s) for s in evaluation.seeds]
    if params.register.ensemble and len(evaluated) > 1:
        return evaluated
    return [params.seed]


def train_members(model_cfg, train: TrainConfig, params: Params, seeds: list[int]):
    """A model of ``model_cfg`` per seed trained on every record (with a progress bar), as one
    model (their probability ensemble when several); and the last seed's training job."""
    from components.datasets.labels import NUM_CLASSES
    from components.models.builder import model_name
    from components.models.layers import probability_ensemble
    from components.progress import Bar
    from components.provenance import data_version
    from components.training.job import TrainingJob

    p = params.preprocess
    records_dir, version = str(Path(p.records_dir).resolve()), data_version(p.records_dir)
    members = []
    with Bar("register", train.epochs * len(seeds), "epoch") as bar:
        for seed in seeds:
            job = TrainingJob.open(
                records_dir, version, model_cfg, train, seed, p.input_sizes(), NUM_CLASSES
            )
            (fit,) = job.fit([job.everyone()], bar.advance)
            members.append(fit.export())
    if len(members) == 1:
        return members[0], job
    return probability_ensemble(members, f"{model_name(model_cfg)}_ensemble{len(members)}"), job


def train_final(
    chosen,
    train: TrainConfig,
    params: Params,
    evaluation,
    epochs_source: str,
    tags: dict[str, str],
    synthetic: bool,
    folder: Path,
):
    """Train ``chosen.model`` on every record for ``train.epochs`` epochs; draw the example
    attention maps into ``folder/attention_maps.png``; return the
    :class:`~components.tracking.registration.FinalModel`."""
    from components.evaluation import plots
    from components.evaluation.examples import overlays_for, pick_examples
    from components.provenance import code_version
    from components.tracking.model_card import CardFacts, model_card
    from components.tracking.registration import FinalModel

    seeds = final_seeds(params, evaluation)
    model, job = train_members(chosen.model, train, params, seeds)
    records = job.records
    examples = sorted(
        pick_examples(records.manifest, params.evaluate.attention_examples, params.seed)
    )
    title = f"{chosen.model.backbone} / {chosen.model.attention.type}: final model (all subjects)"
    plots.attention_grid_png(
        overlays_for(records, examples, model, job.kind), folder / "attention_maps.png", title
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
            input_kind=job.kind,
            data_version=tags["data_version"],
            code_version=code_version(),
            synthetic=synthetic,
            seeds=seeds,
        )
    )
    return FinalModel(
        model=model,
        model_cfg=chosen.model,
        train=train,
        kind=job.kind,
        input_example=records.inputs(job.kind)[:1],
        card=card,
        tags=tags,
        synthetic=synthetic,
        seeds=tuple(seeds),
    )
