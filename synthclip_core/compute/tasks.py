"""Ray tasks from a stage's :class:`~.resources.PoolSpec`: the same asks, checks and retries as
its declaration says, for work that holds no model (writing shard groups, one evaluation)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .resources import PoolSpec, ensure_room


def map_tasks(stage: str, spec: PoolSpec | None, fn: Callable[..., Any], calls: list[tuple]) -> Iterator[Any]:
    """``fn(*call)`` for each call, yielded as each finishes: in this process, one after the other,
    when ``spec`` is None (the stage asks nothing of Ray); else as Ray tasks asking what ``spec``
    says, once the cluster has room for them."""
    if spec is None:
        for call in calls:
            yield fn(*call)
        return
    import ray

    ensure_room(stage, [spec])
    task = ray.remote(fn).options(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, resources=spec.resources or None,
                                  max_retries=spec.max_retries, runtime_env=spec.runtime_env or None)
    waiting = [task.remote(*call) for call in calls]
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        yield ray.get(ready[0])
