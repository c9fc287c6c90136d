"""Training data sources: webdataset tars (img2dataset's, a run's exported shards, ...), checked.

The driver resolves every source once, before any worker starts: it lists the tars, learns how
many samples each holds and reads one sample to check the layout, so an empty source, shards of
another layout or a missing folder is a one-line error naming the source instead of a failed
worker group. For tars named by URI, sample counts come from ``sizes.json`` (webdataset's), from
img2dataset's ``NNNNN_stats.json``, or, when neither is there, from reading the tars once. A run's
own shards are resolved by the train stage, which knows them from the run's commit records.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass, field

import fsspec
from braceexpand import braceexpand

from ..errors import SourceError
from ..storage.store import fs_options
from .config import DataSource

log = logging.getLogger("synthclip.train")


@dataclass
class ResolvedSource:
    name: str
    uri: str
    weight: float
    limit: int | None
    image_key: str
    text_key: str
    storage_options: dict
    shards: list[tuple[str, int]]  # (URL, samples)
    inputs: list[dict] = field(default_factory=list)  # commit references of a run's shards
    skipped: dict[str, str] = field(default_factory=dict)  # damaged shards left out, with the reason
    skipped_samples: int = 0
    texts_field: str = "rewrites"  # the .json field listing a sample's other texts (train.texts: any)

    @property
    def samples(self) -> int:
        return sum(n for _, n in self.shards)

    def describe(self) -> dict:
        """The source as the checkpoint lineage names it."""
        return {"name": self.name, "uri": self.uri, "weight": self.weight, "limit": self.limit,
                "shards": len(self.shards), "samples": self.samples}


def checked(resolved: ResolvedSource) -> ResolvedSource:
    """The source, once it is known to hold samples and its first sample has the expected keys."""
    if not resolved.samples:
        raise SourceError(f"training source {resolved.name!r} ({resolved.uri}): no readable samples "
                          f"({len(resolved.shards)} shards, all empty)")
    _check_layout(resolved)
    return resolved


def list_tars(source: DataSource) -> list[str]:
    """The source's tar URLs, sorted: a brace pattern, a glob, one .tar, or every .tar under a folder."""
    urls = []
    for uri in braceexpand(source.uri):
        fs, path = fsspec.core.url_to_fs(uri, **fs_options(uri, source.storage_options))
        protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
        if any(c in path for c in "*?["):
            found = fs.glob(path)
        elif path.endswith(".tar"):
            found = [path] if fs.exists(path) else []
        elif fs.isdir(path):
            found = [p for p in fs.find(path) if p.endswith(".tar") and not posixpath.basename(p).startswith(".")]
        else:
            found = []
        urls += [protocol + p if protocol and not p.startswith(protocol) else p for p in found]
    return sorted(set(urls))


def tar_source(source: DataSource) -> ResolvedSource:
    """A source of webdataset tars named by URI (a folder, a glob or a brace pattern), checked."""
    urls = list_tars(source)
    if not urls:
        raise SourceError(f"training source {source.name!r}: no .tar files at {source.uri}")
    counts = _known_counts(urls, source.storage_options)
    missing = [u for u in urls if u not in counts]
    if missing:
        log.warning("training source %r: counting the samples of %d shards by reading them (write a sizes.json beside "
                    "them to skip this)", source.name, len(missing))
        for url in missing:
            counts[url] = _count_samples(source, url)
    return checked(ResolvedSource(source.name, source.uri, source.weight, source.limit, source.image_key,
                                  source.text_key, dict(source.storage_options), [(u, counts[u]) for u in urls],
                                  texts_field=source.texts_field))


def _known_counts(urls: list[str], options: dict) -> dict[str, int]:
    """Sample counts from ``sizes.json`` in the shards' folders, or img2dataset's ``*_stats.json``."""
    counts: dict[str, int] = {}
    for folder in sorted({posixpath.dirname(u) for u in urls}):
        fs, path = fsspec.core.url_to_fs(folder, **fs_options(folder, options))
        try:
            sizes = json.loads(fs.cat_file(posixpath.join(path, "sizes.json")))
            counts.update({posixpath.join(folder, name): int(n) for name, n in sizes.items()})
        except (FileNotFoundError, ValueError, AttributeError):
            pass
    for url in urls:
        if url in counts:
            continue
        fs, path = fsspec.core.url_to_fs(url, **fs_options(url, options))
        try:
            counts[url] = int(json.loads(fs.cat_file(path[: -len(".tar")] + "_stats.json"))["successes"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
    wanted = set(urls)
    return {u: n for u, n in counts.items() if u in wanted}


def _count_samples(source: DataSource, url: str) -> int:
    from .data import iter_shard_samples

    try:
        return sum(1 for _ in iter_shard_samples([url], source.storage_options))
    except Exception as exc:
        raise SourceError(f"training source {source.name!r}: {url} is not a readable tar ({type(exc).__name__}: {exc})") from None


def _check_layout(source: ResolvedSource) -> None:
    """The first sample of the first non-empty shard must hold the source's image and text keys."""
    from .data import iter_shard_samples

    url = next(u for u, n in source.shards if n)
    try:
        sample = next(iter_shard_samples([url], source.storage_options), None)
    except Exception as exc:
        raise SourceError(f"training source {source.name!r}: {url} is not a readable tar ({type(exc).__name__}: {exc})") from None
    if sample is None:
        raise SourceError(f"training source {source.name!r}: {url} holds no samples, but its count says it does")
    keys = sorted(k for k in sample if not k.startswith("__"))
    if source.image_key not in sample or source.text_key not in sample:
        raise SourceError(f"training source {source.name!r}: shards of another layout: {url} holds samples with {keys}, "
                          f"not .{source.image_key} and .{source.text_key} (set image_key / text_key of the source)")


def to_spec_parts(sources: list[ResolvedSource]) -> tuple[list[tuple[str, int]], list[dict]]:
    """The job's shard list and its sources, as a TrainSpec holds them."""
    shards, specs = [], []
    for s in sources:
        first = len(shards)
        shards += s.shards
        specs.append({"name": s.name, "uri": s.uri, "weight": s.weight, "limit": s.limit, "image_key": s.image_key,
                      "text_key": s.text_key, "texts_field": s.texts_field, "storage_options": s.storage_options,
                      "shards": list(range(first, len(shards)))})
    return shards, specs
