"""Everything a training job needs, as one JSON-able value.

The driver builds a :class:`TrainSpec` from a run (or a test builds one from its own shards); the
Ray Train workers, a Ray job's entrypoint and a resumed job all start from the same value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..config import TrainConfig
from ..run import RunRef


@dataclass
class TrainSpec:
    ref: dict  # RunRef.as_dict() of the store that receives checkpoints and metrics
    shards: list[tuple[str, int]]  # (URI, samples) of each webdataset shard, in export order
    train: dict  # TrainConfig as a dict
    seed: int
    model_cfg: dict  # the open_clip model config; a checkpoint of another config is refused
    lineage: dict = field(default_factory=dict)  # merged into every commit record

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.train)

    @property
    def run_ref(self) -> RunRef:
        return RunRef(**self.ref)

    @property
    def total_samples(self) -> int:
        return sum(size for _, size in self.shards)

    def per_worker_batch(self) -> int:
        t = self.config
        return t.global_batch_size // t.num_workers

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSpec":
        return cls(**{**data, "shards": [tuple(s) for s in data["shards"]]})
