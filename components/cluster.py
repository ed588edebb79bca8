"""The Ray cluster every distributed stage uses: ``RAY_ADDRESS`` (or the ``tune.address``
setting) attaches to a running cluster; otherwise a local Ray over every core of this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    auth_mode = os.environ.get(AUTH_MODE)
    if owned:
        address = cluster_address(configured_address)
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            start_local_ray(ray)
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()
            restore_auth_mode(auth_mode)


AUTH_MODE = "RAY_AUTH_MODE"


def restore_auth_mode(previous: str | None) -> None:
    """Undo what starting a local Ray does to this process: it sets ``RAY_AUTH_MODE=token`` in
    the environment for good, so every later connection and child process (a ``mer`` stage
    attached to a cluster started without tokens) would demand a token the cluster never
    issued, and the cluster's workers could not reach the objects that process owns."""
    if os.environ.get(AUTH_MODE) == previous:
        return
    if previous is None:
        del os.environ[AUTH_MODE]
    else:
        os.environ[AUTH_MODE] = previous
    from ray._raylet import Config

    Config.initialize("")  # Ray caches the mode in its config: read it again


def start_local_ray(ray) -> None:
    """A new local Ray over every core (even when another cluster runs on this machine) that
    listens on the loopback interface only, and whose authentication token only its owner can
    read. Ray turns a node address of 127.0.0.1 into the machine's external address
    (``services.resolve_ip_for_localhost``), so its servers would listen on every interface:
    for a single-machine cluster that resolution is switched off while it starts."""
    import ray._private.services as services

    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        ray.init(
            address="local",
            num_cpus=os.cpu_count(),
            log_to_driver=False,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
        )
    finally:
        services.resolve_ip_for_localhost = resolve
    private_token()


def private_token(path: Path | None = None) -> None:
    """Ray writes its token (``~/.ray/auth_token``) readable by every user: make it the
    owner's alone (a token lets whoever holds it run code on the cluster)."""
    path = path or Path.home() / ".ray" / "auth_token"
    if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
        path.chmod(0o600)


def describe_cluster(ray) -> str:
    resources = ray.cluster_resources()
    return (
        f"Ray cluster with {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs "
        f"on {len(ray.nodes())} node(s)"
    )
