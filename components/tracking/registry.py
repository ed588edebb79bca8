"""The MLflow model registry: versions with their evaluation, and the champion-alias rule.

Every registered version carries tags that say how it was evaluated (``protocol``, ``complete``,
``data_version``, ``uf1``, ``uar``, per-dataset ``uf1.<dataset>``) so that versions are compared
only on the same protocol and data. Versions are never deleted or overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

#: Version tags written by :func:`evaluation_tags` and read by the rule and ``mer registry``;
#: metrics are named ``<subset>.<metric>`` as in ``dvc metrics show`` and the MLflow runs
PROTOCOL, COMPLETE, DATA_VERSION = "protocol", "complete", "data_version"
UF1, UAR = "composite.uf1", "composite.uar"
#: the evaluated UF1 of what the version holds: the composite's, or for a registered seed
#: ensemble the ``ensemble`` subset's (what the champion rule compares)
REGISTERED_UF1 = "registered.uf1"
#: how versions registered before read them
OLDER_NAMES = {REGISTERED_UF1: UF1, UF1: "uf1", UAR: "uar"}


def tag(tags: dict[str, str], name: str, default: str = "-") -> str:
    """A version's tag, also under the names older versions gave it."""
    while name not in tags and name in OLDER_NAMES:
        name = OLDER_NAMES[name]
    return tags.get(name, default)


@dataclass(frozen=True)
class Decision:
    """Whether the alias moves to the candidate, and why (printed by the stage, tagged)."""

    promote: bool
    reason: str
    previous: str | None = None  # the version that held the alias


def evaluation_tags(evaluation, data_version: str, ensemble: bool = False) -> dict[str, str]:
    """Version tags from the evaluate stage's record (:class:`components.artifacts.Evaluation`):
    protocol, completeness, seeds, pooled UF1/UAR with their CIs, per subset, and the UF1 of
    what is registered (``ensemble``: the seeds' probability ensemble)."""
    from components.evaluation.report import with_ci

    composite = evaluation.summary["composite"]
    tags = {
        PROTOCOL: str(evaluation.protocol),
        COMPLETE: str(bool(evaluation.complete)).lower(),
        DATA_VERSION: data_version,
        "composite.uf1_ci": with_ci(composite, "uf1").split(" ", 1)[1],
        "seeds": str(len(evaluation.seeds)),
    }
    for subset, block in evaluation.summary.items():
        tags[f"{subset}.uf1"] = f"{block['uf1']:.6f}"
        tags[f"{subset}.uar"] = f"{block['uar']:.6f}"
    tags[REGISTERED_UF1] = tags["ensemble.uf1" if ensemble else UF1]
    return tags


def alias_holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version that holds ``alias``, or None (also when the model does not exist yet)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def decide(candidate: dict[str, str], holder: ModelVersion | None, alias: str) -> Decision:
    """The champion rule: the alias moves only to a completely evaluated candidate whose UF1
    strictly beats the holder's on the same protocol and the same data version."""
    if candidate.get(COMPLETE) != "true":
        return Decision(False, "its evaluation did not run every fold (evaluate --folds)")
    if holder is None:
        return Decision(True, f"no version holds '{alias}' yet")
    previous = holder.version
    theirs = holder.tags
    for key, what in ((PROTOCOL, "protocol"), (DATA_VERSION, "data version")):
        if theirs.get(key) != candidate.get(key):
            return Decision(
                False,
                f"not comparable with '{alias}' v{previous}: {what} {candidate.get(key)} here, "
                f"{theirs.get(key)} there (promote by hand with `mer registry --promote`)",
                previous,
            )
    mine, best = float(tag(candidate, REGISTERED_UF1)), float(tag(theirs, REGISTERED_UF1, "-inf"))
    if mine > best:
        return Decision(True, f"UF1 {mine:.4f} beats v{previous}'s {best:.4f}", previous)
    return Decision(
        False, f"UF1 {mine:.4f} does not beat '{alias}' v{previous}'s {best:.4f}", previous
    )


def apply_decision(
    client: MlflowClient, name: str, version: str, alias: str, decision: Decision
) -> None:
    """Record the decision on the version (tag) and move the alias if it says so."""
    client.set_model_version_tag(name, version, f"{alias}_decision", decision.reason)
    if decision.promote:
        client.set_registered_model_alias(name, alias, version)


def promote(client: MlflowClient, name: str, version: str, alias: str, reason: str) -> None:
    """Move ``alias`` to ``version`` by hand (e.g. the first model on a new dataset)."""
    try:
        client.get_model_version(name, version)
    except MlflowException:
        from components.errors import ArtifactError

        raise ArtifactError(
            f"model {name!r} has no version {version} (see `mer registry`)"
        ) from None
    apply_decision(client, name, version, alias, Decision(True, f"promoted by hand: {reason}"))


@dataclass(frozen=True)
class VersionRow:
    """One line of ``mer registry``."""

    version: int
    aliases: tuple[str, ...]
    uf1: str
    uar: str
    protocol: str
    data_version: str
    model: str
    created: str
    run_id: str


def list_versions(client: MlflowClient, name: str) -> list[VersionRow]:
    """Every version of ``name``, newest first."""
    import datetime

    rows = []
    for v in client.search_model_versions(f"name = '{name}'"):
        full = client.get_model_version(name, v.version)  # search results omit aliases
        created = datetime.datetime.fromtimestamp(full.creation_timestamp / 1000, datetime.UTC)
        rows.append(
            VersionRow(
                version=int(full.version),
                aliases=tuple(sorted(full.aliases)),
                uf1=tag(full.tags, REGISTERED_UF1),
                uar=tag(full.tags, UAR),
                protocol=full.tags.get(PROTOCOL, "-")
                + ("" if full.tags.get(COMPLETE, "true") == "true" else " (partial)"),
                data_version=full.tags.get(DATA_VERSION, "-"),
                model=full.tags.get("model", "-"),
                created=created.strftime("%Y-%m-%d %H:%M"),
                run_id=full.run_id or "-",
            )
        )
    return sorted(rows, key=lambda r: -r.version)
