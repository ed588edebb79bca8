"""``mer registry``: the registered versions with their metrics, aliases and data versions;
``--promote`` moves the alias by hand (e.g. to the first model on a new dataset)."""

from __future__ import annotations

import argparse

from components.config import load_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="registered model (default: register.model_name)")
    parser.add_argument("--promote", metavar="VERSION", help="move the alias to this version")
    parser.add_argument("--reason", default="", help="why (recorded on the version)")


def format_table(rows: list) -> str:
    header = ("version", "aliases", "UF1", "UAR", "protocol", "data version", "model", "created")
    lines = [
        (
            str(r.version),
            ",".join(r.aliases) or "-",
            r.uf1[:6],
            r.uar[:6],
            r.protocol,
            r.data_version[:12],
            r.model,
            r.created,
        )
        for r in rows
    ]
    widths = [max(len(x) for x in column) for column in zip(header, *lines, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    import mlflow
    from mlflow.tracking import MlflowClient

    from components.errors import ArtifactError, redact
    from components.tracking import registry as reg
    from components.tracking import resolved_uri
    from components.tracking.mlflow_runs import check_reachable, sqlite_path

    uri = resolved_uri(params.tracking)
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        raise ArtifactError(
            f"no MLflow store at {database}: run `dvc repro` (or `mer register`) first"
        )
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    name = args.name or params.register.model_name
    alias = params.register.alias
    if args.promote:
        if not args.reason:
            from components.errors import ConfigError

            raise ConfigError("--promote needs --reason (it is recorded on the version)")
        reg.promote(client, name, args.promote, alias, args.reason)
        print(f"registry: {name} version {args.promote} now holds '{alias}'")
    rows = reg.list_versions(client, name)
    if not rows:
        print(
            f"registry: no versions of '{name}' in {redact(uri)} (run `dvc repro` or "
            "`mer register`)"
        )
        return 1
    print(f"registry: {name} in {redact(uri)}")
    print(format_table(rows))
    return 0
