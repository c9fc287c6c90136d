"""A fixed pool of Ray actors that streams a stage's pending partitions through one model load each.

A pool is three things, as in Ray Data's LLM stages: the class its actors hold, its constructor
arguments (which name the model), and where and how much to run it (:class:`PoolSpec`). The class
is built once per actor and called once per work item (anything with an ``output``: the stage
executor's ``WorkItem``), returning the item's commit record; the books around the work (reading
inputs, lineage, the commit) are the stage executor's, so this module knows of none of them.

Model start-up is slow, so the pool is fixed-size and each actor keeps two partitions in flight
(one running, one queued) to hide the round trip. An actor that dies is replaced and its
partitions are retried; a partition that fails more than ``max_retries`` times is recorded as
failed and the rest of the stage goes on. An error no retry can fix (access denied, no such bucket,
a backend that breaks its contract) stops the stage at once instead: every partition would fail;
so does one error that the first partitions all meet before any succeeds (a setting every
partition trips over), said once.
"""

from __future__ import annotations

import os
import socket
from collections import Counter, deque
from dataclasses import dataclass, field

from ..errors import BackendError, StorageError
from ..storage.store import RunRef
from . import progress
from .resources import PoolSpec, ensure_room


class PoolActor:
    """Holds one instance of the pool's class (and its model); makes one item per call, telling
    the pool's :class:`Tally` how far it is within it."""

    def __init__(self, held: type, args: tuple, threads: int = 1, tally=None):
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:  # a backend environment without torch
            pass
        self.tally, self.output = tally, None
        progress.send_within_to(self._within if tally is not None else None)
        self.held = held(*args)

    def _within(self, done: int, total: int) -> None:
        self.tally.set.remote(self.output, done / total)  # fire and forget: never waits on the driver

    def process(self, item) -> dict:
        self.output = item.output
        return self.held(item)

    def info(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid()}


class Tally:
    """A pool's record of how far each partition in flight is (0..1), read by the driver."""

    def __init__(self):
        self.fractions: dict[str, float] = {}

    def set(self, output: str, fraction: float) -> None:
        self.fractions[output] = fraction

    def read(self) -> dict[str, float]:
        return self.fractions


@dataclass
class PoolResult:
    records: dict[str, dict] = field(default_factory=dict)  # output -> commit record
    failures: dict[str, str] = field(default_factory=dict)  # output -> last error
    actor_restarts: int = 0


WITHIN_POLL_S = 1.0  # how often the driver asks how far the partitions in flight are
SAME_ERROR_STOPS = 3  # distinct partitions failing with one error, before any succeeds, stop the stage


class RepeatedFailure(BackendError):
    """The first partitions of a stage all failed with the same error: every one would."""


def run_pool(stage: str, ref: RunRef, spec: PoolSpec, held: type, args: tuple, items: list) -> PoolResult:
    """Make ``items`` (each with an ``output`` of ``stage`` and its ``inputs``) on actors holding
    ``held(*args)``; outputs that keep failing are recorded in the store's failures."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    result = PoolResult()
    if not items:
        return result
    ensure_room(stage, [spec])
    store = ref.store()
    actor_cls = ray.remote(PoolActor).options(  # spread over the nodes, as Ray Data places its pools
        num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, resources=spec.resources or None, max_restarts=0,
        runtime_env=spec.runtime_env or None, scheduling_strategy="SPREAD",
    )
    threads = max(1, int(spec.num_cpus))
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    tally = ray.remote(num_cpus=0)(Tally).options(scheduling_strategy=here).remote()  # lives as long as this driver's node

    def new_actor():
        return actor_cls.remote(held, args, threads, tally)

    actors = [new_actor() for _ in range(min(spec.count, len(items)))]
    load: Counter = Counter()
    queue = deque(items)
    attempts: Counter = Counter()
    in_flight: dict = {}
    # A dead actor is always replaced: the bound is per partition (a death costs the partitions on
    # that actor a try each, and a partition out of tries is given up), so a pool that keeps losing
    # actors over days of pre-emptions goes on while partitions succeed, and still ends.
    same_error: dict[str, set[str]] = {}  # error -> partitions that met it, while none has succeeded

    def fill() -> None:  # round-robin, so every actor starts working before any gets a second item
        for depth in (1, 2):
            for actor in actors:
                if queue and load[actor] < depth:
                    item = queue.popleft()
                    in_flight[actor.process.remote(item)] = (actor, item)
                    load[actor] += 1

    def stop() -> None:
        for actor in [*actors, tally]:
            ray.kill(actor, no_restart=True)

    def stop_if_every_partition_fails(error: str, item) -> None:
        """One error met by the first partitions, before any succeeds, is met by every one."""
        if result.records:
            return
        met = same_error.setdefault(error, set())
        met.add(item.output)
        if len(met) >= min(SAME_ERROR_STOPS, total):
            stop()
            attempts[item.output] += 1
            for output in sorted(met):
                give_up(output, (), error)
            raise RepeatedFailure(f"{stage}: the first {len(met)} partitions all failed with the same error, so every "
                                  f"one would; the stage stopped: {error}")

    def give_up(output: str, inputs, error: str) -> None:
        result.failures[output] = error
        store.fail(stage, output, error, {"inputs": list(inputs), "attempts": attempts[output]})

    def report_within() -> None:  # finished partitions, and how far those in flight are
        try:
            fractions = ray.get(tally.read.remote(), timeout=10)
        except (ray.exceptions.RayError, TimeoutError):  # progress only: never a reason to stop the stage
            fractions = {}
        running = sum(fractions.get(i.output, 0.0) for _, i in in_flight.values())
        progress.report(spec.label or stage, len(result.records) + len(result.failures) + running, total)

    total = len(items)
    fill()
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WITHIN_POLL_S)
        if not ready:
            report_within()
            continue
        actor, item = in_flight.pop(ready[0])
        load[actor] -= 1
        try:
            result.records[item.output] = ray.get(ready[0])
        except ray.exceptions.RayActorError as exc:
            # a constructor that raised (the model or backend cannot be built) says so in its last line
            error = f"an actor could not start: {_last_line(exc)}" if exc.actor_init_failed else f"actor died: {_one_line(exc)}"
            if actor in actors:  # first failure seen from this actor: replace it
                actors.remove(actor)
                ray.kill(actor, no_restart=True)
                result.actor_restarts += 1
                actors.append(new_actor())
            if exc.actor_init_failed:
                stop_if_every_partition_fails(error, item)
            _retry_or_fail(item, error, attempts, spec.max_retries, queue, give_up)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, (StorageError, BackendError)):  # no retry fixes these, on any partition
                stop()
                raise exc.cause from None
            error = _one_line(exc.cause if exc.cause else exc)
            stop_if_every_partition_fails(error, item)
            _retry_or_fail(item, error, attempts, spec.max_retries, queue, give_up)
        fill()
        progress.report(spec.label or stage, len(result.records) + len(result.failures), total)
    stop()
    return result


def _retry_or_fail(item, error, attempts, max_retries, queue, give_up) -> None:
    attempts[item.output] += 1
    if attempts[item.output] <= max_retries:
        queue.append(item)  # at the back: other partitions are tried before this one again
    else:
        give_up(item.output, item.inputs, error)


def _last_line(exc: BaseException) -> str:
    """The error a remote constructor raised, from the last line of Ray's report of it."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:500] if lines else type(exc).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}"
