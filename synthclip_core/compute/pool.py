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

Losing a node is not a partition's fault. A partition whose actor died with its node (pre-empted,
drained, or gone) is queued again without using a try, and the actor is replaced without counting
a restart; only a partition's own errors, and actor deaths on nodes still alive, use its tries.
Where nodes are drained with notice (the autoscaler's or KubeRay's scale-down, ``ray drain-node``),
the pool sends the node's actors nothing more, takes back the partitions queued there that have not
started, lets those running finish, then moves the actors elsewhere. When no actor can be placed
(capacity lost), the pool waits, saying so in the log, for at most ``SYNTHCLIP_CAPACITY_WAIT_S``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import BackendError, StorageError, UserError
from ..storage.ledger import add_spend
from ..storage.ledger import held as ledger_held
from ..storage.store import RunRef
from . import progress
from .resources import PoolSpec, ensure_room

log = logging.getLogger("synthclip.pool")
WITHIN_POLL_S = 1.0  # how often the driver asks how far the partitions in flight are
NODES_POLL_S = 2.0  # how often it asks which nodes are draining
SAME_ERROR_STOPS = 3  # distinct partitions failing with one error, before any succeeds, stop the stage
CAPACITY_WAIT_S = float(os.environ.get("SYNTHCLIP_CAPACITY_WAIT_S", 1800))  # no actor placed for this long: stop
CAPACITY_SAY_S = 30.0  # how often the wait is logged
LOST_AT_MOST = 20  # a partition lost with nodes more often than this uses its tries after all


class PoolActor:
    """Holds one instance of the pool's class (and its model); makes one item per call, telling
    the pool's :class:`Tally` where it runs, which items it has begun and how far it is within one."""

    def __init__(self, held: type, args: tuple, threads: int = 1, tally=None, key: str = ""):
        self.node = None
        if tally is not None:  # first, so a node lost while the model loads is known to have held it
            import ray

            self.node = ray.get_runtime_context().get_node_id()
            tally.placed.remote(key, self.node)
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
        if self.node is not None and self.node in draining_nodes():  # the notice came: begin nothing more here
            raise NodeDraining(f"node {self.node} is draining")
        self.output = item.output
        if self.tally is not None:
            self.tally.set.remote(item.output, 0.0)  # begun: a drain notice no longer takes it back
        return self.held(item)

    def info(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid()}


class Tally:
    """A pool's record of where each actor runs and how far each partition begun is (0..1), read by the driver."""

    def __init__(self):
        self.fractions: dict[str, float] = {}
        self.nodes: dict[str, str] = {}

    def set(self, output: str, fraction: float) -> None:
        self.fractions[output] = fraction

    def placed(self, key: str, node_id: str) -> None:
        self.nodes[key] = node_id

    def read(self) -> tuple[dict[str, float], dict[str, str]]:
        return self.fractions, self.nodes


@dataclass
class PoolResult:
    records: dict[str, dict] = field(default_factory=dict)  # output -> commit record
    failures: dict[str, str] = field(default_factory=dict)  # output -> last error
    actor_restarts: int = 0  # actors replaced after dying on a node that stayed up
    lost_with_nodes: int = 0  # partitions queued again, without using a try, after their node died or drained
    moved_off_draining: int = 0  # actors retired from draining nodes and started elsewhere
    stopped: Any = None  # what the budget said when it stopped handing out partitions
    not_started: int = 0  # partitions the budget kept back


class RepeatedFailure(BackendError):
    """The first partitions of a stage all failed with the same error: every one would."""


class NodeDraining(RuntimeError):
    """An actor's node is being drained: it declines a partition it has not begun."""


class NoCapacity(UserError):
    """No actor of a pool could be placed for longer than the wait allows."""


@dataclass(eq=False)
class Member:
    """One actor of the pool and its books."""

    handle: Any
    key: str
    created: float
    began: float  # when it began holding for an item not yet recorded (created, or its last result)
    refs: list = field(default_factory=list)  # its items in flight, in the order sent
    node: str | None = None


def run_pool(stage: str, ref: RunRef, spec: PoolSpec, held: type, args: tuple, items: list,
             budget: Callable[[float, float], Any] | None = None) -> PoolResult:
    """Make ``items`` (each with an ``output`` of ``stage`` and its ``inputs``) on actors holding
    ``held(*args)``; outputs that keep failing are recorded in the store's failures. ``budget``,
    given the GPU- and CPU-seconds the pool's actors have held with one more partition's worth,
    says why no further partition may start (then those in flight finish and the pool returns)."""
    if not items:
        return PoolResult()
    ensure_room(stage, [spec])
    return Pool(stage, ref, spec, held, args, budget).run(items)


class Pool:
    """One call of a pool: its actors, the partitions queued and in flight, and what became of them."""

    def __init__(self, stage: str, ref: RunRef, spec: PoolSpec, held: type, args: tuple,
                 budget: Callable[[float, float], Any] | None):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.stage, self.spec, self.held, self.args, self.budget = stage, spec, held, args, budget
        self.store = ref.store()
        self.actor_cls = ray.remote(PoolActor).options(  # spread over the nodes, as Ray Data places its pools
            num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, resources=spec.resources or None, max_restarts=0,
            runtime_env=spec.runtime_env or None, scheduling_strategy="SPREAD",
        )
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self.tally = ray.remote(num_cpus=0)(Tally).options(scheduling_strategy=here).remote()  # lives as long as this driver's node
        self.result = PoolResult()
        self.members: list[Member] = []
        self.queue: deque = deque()
        self.in_flight: dict = {}  # ref -> (member, item)
        self.attempts: dict[str, int] = {}
        self.lost: dict[str, int] = {}  # output -> times lost with a node (no try used)
        self.same_error: dict[str, set[str]] = {}  # error -> partitions that met it, while none has succeeded
        self.gone_s = 0.0  # seconds held by actors no longer in the pool
        self.accelerator: str | None = None  # the GPU type the records name: what a lost actor held
        self.fractions: dict[str, float] = {}
        self.draining: dict[str, float] = {}  # node id -> deadline (unix s, 0: none)
        self.drained: set[str] = set()  # nodes seen draining: an actor lost there lost no partition's try
        self.nodes_read = 0.0
        self.unplaced_since: float | None = None
        self.said_unplaced = 0.0
        self.label = spec.label or stage

    # -- actors ----------------------------------------------------------------------------------
    def new_actor(self) -> Member:
        key, now = uuid.uuid4().hex, time.time()
        member = Member(self.actor_cls.remote(self.held, self.args, max(1, int(self.spec.num_cpus)), self.tally, key),
                        key, now, now)
        self.members.append(member)
        return member

    def retire(self, member: Member, replace: bool = True) -> None:
        import ray

        ray.kill(member.handle, no_restart=True)
        self.gone_s += time.time() - member.created
        self.members.remove(member)
        if replace:
            self.new_actor()

    def stop(self) -> None:
        import ray

        for member in list(self.members):
            self.retire(member, replace=False)
        ray.kill(self.tally, no_restart=True)

    def read_tally(self) -> None:
        import ray

        try:
            self.fractions, nodes = ray.get(self.tally.read.remote(), timeout=10)
        except (ray.exceptions.RayError, TimeoutError):  # bookkeeping only: never a reason to stop the stage
            return
        for member in self.members:
            member.node = member.node or nodes.get(member.key)

    # -- sending ---------------------------------------------------------------------------------
    def may_start(self) -> bool:
        """Whether the budget lets one more partition start (each partition so far held its actor
        for the pool's held seconds over the partitions finished)."""
        if self.budget is None or self.result.stopped is not None:
            return self.result.stopped is None
        now = time.time()
        actor_s = self.gone_s + sum(now - m.created for m in self.members)
        finished = len(self.result.records) + sum(self.attempts.values())
        one_more = actor_s + (actor_s / finished if finished else 0.0)
        self.result.stopped = self.budget(one_more * self.spec.num_gpus, one_more * self.spec.num_cpus)
        return self.result.stopped is None

    def usable(self, member: Member) -> bool:
        """Placed (its constructor began on a node), and not on a draining one."""
        return member.node is not None and member.node not in self.draining

    def fill(self) -> None:
        """Round-robin, so every actor starts working before any gets a second item; nothing to an
        actor on a draining node, and nothing to one not yet placed while others are (a replacement
        that cannot be placed must not hold partitions); at the start none is, and all get work."""
        targets = [m for m in self.members if self.usable(m)] or [m for m in self.members if m.node is None]
        for depth in (1, 2):
            for member in targets:
                if self.queue and len(member.refs) < depth and self.may_start():
                    item = self.queue.popleft()
                    ref = member.handle.process.remote(item)
                    self.in_flight[ref] = (member, item)
                    member.refs.append(ref)

    # -- nodes -----------------------------------------------------------------------------------
    def watch_nodes(self) -> None:
        """Every few seconds: which nodes drain; take back the partitions queued on their actors that
        have not begun, and move the actors that have nothing left there."""
        import ray

        if time.time() - self.nodes_read < NODES_POLL_S:
            return
        self.nodes_read = time.time()
        self.draining = draining_nodes()
        if not self.draining:
            return
        self.read_tally()
        for member in list(self.members):
            if member.node not in self.draining:
                continue
            if member.node not in self.drained:
                self.drained.add(member.node)
                deadline = self.draining[member.node]
                log.warning("%s: node %s is draining%s: no new partitions go there; those running there finish",
                            self.label, member.node[:12], f" (deadline in {deadline - time.time():.0f} s)" if deadline else "")
            for ref in member.refs:
                if self.in_flight[ref][1].output not in self.fractions:  # queued, not begun: taken back
                    ray.cancel(ref)
            if not member.refs:
                self.retire(member)
                self.result.moved_off_draining += 1

    def node_lost(self, member: Member, exc) -> bool:
        """Whether an actor died with its node (pre-empted, drained, or gone), or before it was ever
        placed on one (its constructor never began), not of its own work."""
        self.read_tally()
        if exc.preempted or member.node is None or member.node in self.drained | set(self.draining):
            return True
        return member.node not in alive_nodes()

    def wait_for_capacity(self) -> None:
        """Nothing came back: if no actor is usable, say so every half minute, and stop after the bound."""
        if any(self.usable(m) for m in self.members):
            self.unplaced_since = None
            return
        now = time.time()
        self.unplaced_since = self.unplaced_since or now
        waited = now - self.unplaced_since
        if waited > CAPACITY_WAIT_S:
            self.stop()
            raise NoCapacity(f"{self.stage}: no actor of its pool could be placed for {waited:.0f} s "
                             f"(SYNTHCLIP_CAPACITY_WAIT_S): the cluster lost the capacity it asks for; what is committed "
                             f"stays, resume when nodes are back")
        if now - self.said_unplaced >= CAPACITY_SAY_S and waited >= CAPACITY_SAY_S:
            self.said_unplaced = now
            log.warning("%s: waiting for capacity: none of %d actor(s) placed for %.0f s (at most %.0f s); %d partition(s) "
                        "wait", self.label, len(self.members), waited, CAPACITY_WAIT_S, len(self.queue) + len(self.in_flight))

    # -- results ---------------------------------------------------------------------------------
    def run(self, items: list) -> PoolResult:
        import ray

        self.total = len(items)
        self.queue.extend(items)
        for _ in range(min(self.spec.count, len(items))):
            self.new_actor()
        self.fill()
        # partitions wait in the queue alone while every actor drains or waits for a node
        while self.in_flight or (self.queue and self.result.stopped is None):
            if self.in_flight:
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=WITHIN_POLL_S)
            else:
                ready = []
                time.sleep(WITHIN_POLL_S)
            self.watch_nodes()
            if ready:
                self.settle(ready[0])
                progress.report(self.label, len(self.result.records) + len(self.result.failures), self.total)
            else:
                self.report_within()
                self.wait_for_capacity()
            self.fill()
        self.stop()
        self.result.not_started = len(self.queue)
        return self.result

    def settle(self, ref) -> None:
        """What one item came back as: committed, taken back, lost with its node, or failed."""
        import ray

        member, item = self.in_flight.pop(ref)
        member.refs.remove(ref)
        try:
            record = self.result.records[item.output] = ray.get(ref)
            member.began = time.time()
            self.accelerator = (record.get("held") or {}).get("accelerator") or self.accelerator
        except ray.exceptions.TaskCancelledError:  # taken back from a draining node before it began
            self.queue.appendleft(item)
        except ray.exceptions.RayActorError as exc:
            # unreachable (its node going, before Ray says so), dead with its node, or never placed: no
            # fault of the partition's; nor is a death the partition had not begun under (queued behind another)
            gone = not exc.actor_init_failed and (isinstance(exc, ray.exceptions.ActorUnavailableError)
                                                  or self.node_lost(member, exc))
            spare = gone or (not exc.actor_init_failed and item.output not in self.fractions)
            if spare and self.lost.get(item.output, 0) >= LOST_AT_MOST:
                spare = False  # spared that often: counted as a failure, so a pool that can never keep one ends
            self.lost[item.output] = self.lost.get(item.output, 0) + spare
            if member in self.members:  # first failure seen from this actor: what it held is spent; replace it
                self.spent_on_death(member, item, "lost" if gone else "failed")
                self.retire(member)
                self.result.actor_restarts += not gone
            if spare:
                if gone:
                    self.result.lost_with_nodes += 1
                    log.warning("%s: %s was lost with node %s (pre-empted or gone): queued again, no try used",
                                self.label, item.output, (member.node or "not placed")[:12])
                self.queue.appendleft(item)
                return
            # a constructor that raised (the model or backend cannot be built) says so in its last line
            error = f"an actor could not start: {_last_line(exc)}" if exc.actor_init_failed else f"actor died: {_one_line(exc)}"
            if exc.actor_init_failed:
                self.stop_if_every_partition_fails(error, item)
            self.retry_or_fail(item, error)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, NodeDraining):  # declined, not begun: elsewhere, no try used
                self.drained.add(member.node or "")
                self.draining.setdefault(member.node or "", 0.0)
                self.queue.appendleft(item)
                return
            member.began = time.time()  # the actor recorded what the failed attempt held
            if isinstance(exc.cause, (StorageError, BackendError)):  # no retry fixes these, on any partition
                self.stop()
                raise exc.cause from None
            error = _one_line(exc.cause if exc.cause else exc)
            self.stop_if_every_partition_fails(error, item)
            self.retry_or_fail(item, error)

    def spent_on_death(self, member: Member, item, kind: str) -> None:
        """What a dead actor held since its last result, spent for nothing: a spend record."""
        seconds = time.time() - member.began
        add_spend(self.store, self.stage, kind, ledger_held(seconds, self.spec.num_cpus, self.spec.num_gpus, self.accelerator),
                  output=item.output, node=member.node)

    def retry_or_fail(self, item, error: str) -> None:
        self.attempts[item.output] = self.attempts.get(item.output, 0) + 1
        if self.attempts[item.output] <= self.spec.max_retries:
            self.queue.append(item)  # at the back: other partitions are tried before this one again
        else:
            self.give_up(item.output, item.inputs, error)

    def give_up(self, output: str, inputs, error: str) -> None:
        self.result.failures[output] = error
        self.store.fail(self.stage, output, error, {"inputs": list(inputs), "attempts": self.attempts.get(output, 0)})

    def stop_if_every_partition_fails(self, error: str, item) -> None:
        """One error met by the first partitions, before any succeeds, is met by every one."""
        if self.result.records:
            return
        met = self.same_error.setdefault(error, set())
        met.add(item.output)
        if len(met) >= min(SAME_ERROR_STOPS, self.total):
            self.stop()
            self.attempts[item.output] = self.attempts.get(item.output, 0) + 1
            for output in sorted(met):
                self.give_up(output, (), error)
            raise RepeatedFailure(f"{self.stage}: the first {len(met)} partitions all failed with the same error, so every "
                                  f"one would; the stage stopped: {error}")

    def report_within(self) -> None:
        """Finished partitions, and how far those in flight are."""
        self.read_tally()
        running = sum(self.fractions.get(i.output, 0.0) for _, i in self.in_flight.values())
        progress.report(self.label, len(self.result.records) + len(self.result.failures) + running, self.total)


def draining_nodes() -> dict[str, float]:
    """Nodes being drained (id -> deadline in unix seconds, 0 for none), as Ray Data's pools ask."""
    try:
        from ray._private.state import state

        return {node: ms / 1000 for node, ms in state.get_draining_nodes().items()}
    except Exception:  # noqa: BLE001 (a Ray without the call: no drain notices)
        return {}


def alive_nodes() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def _last_line(exc: BaseException) -> str:
    """The error a remote constructor raised, from the last line of Ray's report of it."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:500] if lines else type(exc).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}"
