"""Connecting to Ray: the cluster named by ``RAY_ADDRESS``, or a local Ray started for the run."""

from __future__ import annotations

import os


def ensure_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Start or join Ray once per process; a no-op when Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": always a new Ray of the run's own, never a stray cluster this machine once started
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
