"""The Ray cluster every distributed stage uses: ``RAY_ADDRESS`` (or the ``tune.address``
setting) attaches to a running cluster; otherwise a local Ray over every core of this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def cluster_address(configured: str | None) -> str | None:
    """The cluster to attach to: ``RAY_ADDRESS`` wins over the configured address."""
    return os.environ.get("RAY_ADDRESS") or configured


@contextmanager
def ray_session(configured_address: str | None) -> Iterator:
    """Yield the ``ray`` module, connected; disconnect (and stop a local Ray) at the end, also
    when interrupted, so no worker outlives the stage."""
    import logging

    import ray

    # a local cluster keeps Ray's token authentication; its notice says nothing to act on
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    # keep stage logs readable: no driver-side copies of worker logs, no sync warnings
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    owned = not ray.is_initialized()
    if owned:
        address = cluster_address(configured_address)
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # a new local instance even when another cluster runs on this machine
            ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False)
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


def describe_cluster(ray) -> str:
    resources = ray.cluster_resources()
    return (
        f"Ray cluster with {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs "
        f"on {len(ray.nodes())} node(s)"
    )
