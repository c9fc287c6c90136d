"""Everything a training job needs, as one JSON-able value.

The driver builds a :class:`TrainSpec` from a run (or a test builds one from its own shards); the
Ray Train workers, a Ray job's entrypoint and a resumed job all start from the same value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..storage.store import RunRef
from .config import TrainConfig
from .layout import SourceShards, epoch_samples


@dataclass
class TrainSpec:
    ref: dict  # RunRef.as_dict() of the store that receives checkpoints and metrics
    shards: list[tuple[str, int]]  # (URI, samples) of each webdataset shard, in export order
    train: dict  # TrainConfig as a dict
    seed: int
    model_cfg: dict  # the open_clip model config; a checkpoint of another config is refused
    lineage: dict = field(default_factory=dict)  # merged into every commit record
    # Data sources: name, uri, weight, limit, image_key, text_key, storage_options and the indices
    # of their shards in ``shards``. Empty: one source, all of ``shards``, on the store's options.
    sources: list[dict] = field(default_factory=list)
    init: dict | None = None  # the weights to start from: {"uri", "sha256", "bytes"} (see init_weights.py)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.train)

    @property
    def run_ref(self) -> RunRef:
        return RunRef(**self.ref)

    def source_specs(self) -> list[dict]:
        if self.sources:
            return self.sources
        return [{"name": "data", "uri": self.ref["root"], "weight": 1.0, "limit": None, "image_key": "jpg", "text_key": "txt",
                 "storage_options": self.ref.get("storage_options") or {}, "shards": list(range(len(self.shards)))}]

    def layout_sources(self) -> list[SourceShards]:
        return [SourceShards(s["name"], tuple(s["shards"]), tuple(self.shards[i][1] for i in s["shards"]), s["weight"], s["limit"])
                for s in self.source_specs()]

    def data_identity(self) -> str:
        """What the epochs' data order is made of: every shard (where, how many samples) and each
        source's shards, weight and limit. A mid-epoch position counts batches of this data; on
        other data (a shard left out since as unreadable, another listing) it means other samples."""
        import hashlib

        what = {"shards": [list(s) for s in self.shards],
                "sources": [[s["name"], list(s["shards"]), s["weight"], s["limit"]] for s in self.source_specs()],
                "samples_per_epoch": self.config.samples_per_epoch}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def epoch_samples(self) -> int:
        return epoch_samples(self.layout_sources(), self.seed, self.config.samples_per_epoch)

    def per_worker_batch(self) -> int:
        t = self.config
        return t.global_batch_size // t.num_workers

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSpec":
        return cls(**{**data, "shards": [tuple(s) for s in data["shards"]]})
