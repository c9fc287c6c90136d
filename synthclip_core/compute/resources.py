"""Whether a Ray cluster can host what a stage asks of it, decided before the stage starts.

Ray queues an actor or a training worker group that no node can host and waits for ever, without
a word. So before a stage starts, each of its pools (:class:`PoolSpec`: workers x the
resources of one) is set against the cluster: the nodes it has, and the node groups an autoscaler
may add, where the cluster publishes them (the autoscaler's cluster config). A pool that fits
starts; one that fits once an autoscaler adds nodes waits for them, visibly and for a bounded
time; one that can never fit is one line naming the config fields and what the cluster offers.
A remote cluster that publishes no node groups may still grow (KubeRay groups that scale from
zero): there a pool that does not fit waits, bounded, rather than failing at once. A local Ray
(no ``RAY_ADDRESS``) never grows.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

from ..errors import ConfigError

log = logging.getLogger("synthclip.resources")
SCALE_UP_WAIT_S = float(os.environ.get("SYNTHCLIP_SCALE_UP_WAIT_S", 1800))  # how long to wait for an autoscaler
POLL_S = 10.0


@dataclass(frozen=True)
class PoolSpec:
    """Where and how much: what each worker of a stage asks of Ray, how many there are, and what
    they are: ``actors`` (a fixed pool, each holding a model), ``tasks`` (queued, any number at
    once) or ``ranks`` (a training gang that starts together)."""

    count: int = 1
    kind: Literal["actors", "tasks", "ranks"] = "actors"
    num_cpus: float = 1
    num_gpus: float = 0
    max_retries: int = 2
    runtime_env: dict = field(default_factory=dict)  # e.g. another interpreter (the vLLM environment's)
    resources: dict = field(default_factory=dict)  # custom Ray resources: which node group may host a worker
    label: str = ""  # what the workers do, for progress bars and messages (default: the stage's name)
    fields: tuple[str, ...] = ()  # the config fields that ask for this, named in a shortfall

    @property
    def together(self) -> bool:
        """Whether every worker must be up at once (actors hold queued partitions, ranks start as one)."""
        return self.kind != "tasks"


@dataclass(frozen=True)
class NodeGroup:
    """Nodes an autoscaler may add: the resources of one, and how many more (None: no limit)."""

    resources: dict[str, float]
    more: int | None


@dataclass(frozen=True)
class ClusterOffer:
    nodes: tuple[dict[str, float], ...]  # the total resources of each alive node
    groups: tuple[NodeGroup, ...] = ()
    may_grow: bool = False  # nodes may be added that no published group describes (a remote cluster)

    @classmethod
    def of_ray(cls) -> "ClusterOffer":
        """The connected Ray's alive nodes, and its autoscaler's node groups where it has one."""
        import ray

        nodes = tuple(dict(n["Resources"]) for n in ray.nodes() if n.get("Alive"))
        groups = _autoscaler_groups(nodes)
        return cls(nodes, groups or (), may_grow=groups is None and bool(os.environ.get("RAY_ADDRESS")))

    def describe(self) -> str:
        totals: dict[str, float] = {}
        for node in self.nodes:
            for name, amount in node.items():
                totals[name] = totals.get(name, 0) + amount
        shown = ", ".join(f"{k} {v:g}" for k, v in sorted(totals.items()) if not _internal(k))
        groups = "; an autoscaler may add " + ", ".join(_group_line(g) for g in self.groups) if self.groups else ""
        grow = "; it may add nodes it does not describe" if self.may_grow else ""
        return f"{len(self.nodes)} node(s) with {shown or 'nothing'}{groups}{grow}"


Verdict = Literal["fits", "scale-up", "never"]


def asks(spec: PoolSpec) -> dict[str, float]:
    """What one worker of a pool asks for, as Ray resources (zeros left out)."""
    wanted = {"CPU": spec.num_cpus, "GPU": spec.num_gpus, **spec.resources}
    return {name: float(amount) for name, amount in wanted.items() if amount}


def workers_fitting(ask: dict[str, float], nodes: tuple[dict[str, float], ...]) -> int:
    """How many workers asking ``ask`` the nodes can host at once (each worker on one node)."""
    if not ask:
        return sys.maxsize
    return sum(min(math.floor(node.get(name, 0) / amount + 1e-9) for name, amount in ask.items()) for node in nodes)


def needed(spec: PoolSpec) -> int:
    """Workers that must be up at once: all of a pool's (actors hold queued partitions, a training
    gang starts together), one of a stage's tasks (tasks queue)."""
    return spec.count if spec.together else 1


def verdict(spec: PoolSpec, offer: ClusterOffer) -> Verdict:
    ask, n = asks(spec), needed(spec)
    at_most = workers_fitting(ask, offer.nodes)
    if at_most >= n:
        return "fits"
    for group in offer.groups:
        one = workers_fitting(ask, (group.resources,))
        at_most += one and (sys.maxsize if group.more is None else one * group.more)
    return "scale-up" if at_most >= n or offer.may_grow else "never"


def shortfall(stage: str, spec: PoolSpec, offer: ClusterOffer) -> str:
    """One line: what the pool asks, which config fields ask it, what the cluster offers."""
    ask, n = asks(spec), needed(spec)
    fits = workers_fitting(ask, offer.nodes)
    what = f"{n} {spec.label or stage} worker(s) at once, each {_resources_line(ask)}"
    missing = sorted(name for name in ask if not any(node.get(name, 0) for node in offer.nodes))
    why = (f"no node offers {', '.join(missing)}" if missing
           else "no node can host even one" if not fits else f"the cluster hosts {fits}")
    return f"{stage}: asks for {what} ({', '.join(spec.fields) or 'its pool'}); {why}; this Ray has {offer.describe()}"


def check(stage: str, specs: list[PoolSpec], offer: ClusterOffer) -> list[PoolSpec]:
    """The pools that must wait for an autoscaler; a ConfigError for one that can never fit."""
    waiting = []
    for spec in specs:
        found = verdict(spec, offer)
        if found == "never":
            raise ConfigError(shortfall(stage, spec, offer))
        if found == "scale-up":
            waiting.append(spec)
    return waiting


def ensure_room(stage: str, specs: list[PoolSpec], offer_now: Callable[[], ClusterOffer] = ClusterOffer.of_ray,
                wait_s: float | None = None, poll_s: float = POLL_S) -> None:
    """Return once the cluster can host every pool of ``stage``: at once, or after its autoscaler
    has added nodes (asked for them, saying so every poll), for at most ``wait_s``."""
    wait_s = SCALE_UP_WAIT_S if wait_s is None else wait_s
    started = time.monotonic()
    while waiting := check(stage, specs, offer := offer_now()):
        _request_scale_up(waiting)
        waited = time.monotonic() - started
        line = "; ".join(shortfall(stage, spec, offer) for spec in waiting)
        if waited >= wait_s:
            raise ConfigError(f"waited {waited:.0f} s for the autoscaler (SYNTHCLIP_SCALE_UP_WAIT_S): {line}")
        log.info("waiting for the autoscaler to add nodes (%.0f of %.0f s): %s", waited, wait_s, line)
        time.sleep(poll_s)


def _request_scale_up(specs: list[PoolSpec]) -> None:
    """Ask the autoscaler for every waiting pool's workers at once (a pending actor would too,
    but none is created before there is room for all)."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[asks(spec) for spec in specs for _ in range(needed(spec))])
    except Exception as exc:  # no autoscaler to ask: the wait shows what is missing
        log.debug("could not request resources: %s", exc)


def _autoscaler_groups(nodes: tuple[dict[str, float], ...]) -> tuple[NodeGroup, ...] | None:
    """The node groups the cluster's published config says may still be added; None where the
    cluster publishes none (no autoscaler, or one that does not say)."""
    try:
        import ray._private.state

        config = ray._private.state.state.get_cluster_config()
    except Exception:  # an older Ray, or no GCS access: nothing published
        return None
    if config is None or not config.node_group_configs:
        return None
    return groups_left([({k: float(v) for k, v in g.resources.items()}, g.max_count) for g in config.node_group_configs],
                       nodes)


def groups_left(configs: list[tuple[dict[str, float], int]], nodes: tuple[dict[str, float], ...]) -> tuple[NodeGroup, ...]:
    """What each node group (resources, max count; -1 unbounded) may still add, with every alive
    node counted in one group only: the one it matches most closely (a node of a bigger group also
    has a smaller group's resources, but it is not one of that group's nodes)."""
    configs = [(r, m) for r, m in configs if r and m != 0]
    present = [0] * len(configs)
    for node in nodes:
        fits = [i for i, (r, _) in enumerate(configs) if all(node.get(k, 0) >= v for k, v in r.items() if not _internal(k))]
        if fits:
            present[min(fits, key=lambda i: _distance(node, configs[i][0]))] += 1
    groups = []
    for (resources, max_count), here in zip(configs, present):
        more = None if max_count < 0 else max(0, max_count - here)
        if more != 0:
            groups.append(NodeGroup(resources, more))
    return tuple(groups)


def _distance(node: dict[str, float], group: dict[str, float]) -> float:
    """How far a node's resources are from a group's (0: exactly the group's)."""
    keys = {k for k in (*node, *group) if not _internal(k) and k != "object_store_memory" and k != "memory"}
    return sum(abs(node.get(k, 0) - group.get(k, 0)) for k in keys)


def _resources_line(ask: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in ask.items()) + "}"


def _group_line(group: NodeGroup) -> str:
    shown = {k: v for k, v in group.resources.items() if not _internal(k)}
    return f"{'any number' if group.more is None else group.more} x {_resources_line(shown)}"


def _internal(name: str) -> bool:
    """Resources Ray adds by itself (memory, node ids, accelerator types): not worth a line."""
    return name in ("memory", "object_store_memory") or name.startswith(("node:", "accelerator_type:"))
