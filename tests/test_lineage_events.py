"""OpenLineage events of stage runs and committed outputs, through openlineage-python's own file
and HTTP transports, checked by rebuilding every event with the client's own (validating) classes."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import attr
import pytest

from synthclip_core.storage.store import RunStore

SHARD = ("00000.tar", "00000.parquet", "00000_stats.json")


def _rebuilt(data, cls):
    """``data`` (an event's JSON) as an instance of the client's class ``cls``, facets by their
    ``_schemaURL``: the client's validators run, and a field it does not know fails."""
    import typing

    from openlineage.client import facet_v2

    if not attr.has(cls):
        return data
    hints, kwargs = typing.get_type_hints(cls), {}
    for name, value in data.items():
        if name in ("_producer", "_schemaURL", "schemaURL"):
            continue
        kind = hints[name]
        if name in ("facets", "inputFacets", "outputFacets") and isinstance(value, dict):
            value = {key: _facet(facet_v2, facet) for key, facet in value.items()}
        elif isinstance(value, list) and typing.get_args(kind):
            item = next((a for a in typing.get_args(typing.get_args(kind)[0]) or typing.get_args(kind) if attr.has(a)), None)
            value = [_rebuilt(v, item) if item else v for v in value]
        else:
            target = next((a for a in (typing.get_args(kind) or (kind,)) if isinstance(a, type) and attr.has(a)), None)
            if target is not None and isinstance(value, dict):
                value = _rebuilt(value, target)
        kwargs[name] = value
    return cls(**kwargs)


def _facet(facet_v2, facet: dict):
    name = facet["_schemaURL"].rsplit("/", 1)[-1]
    module = next(m for m in vars(facet_v2).values() if hasattr(m, name) and attr.has(getattr(m, name)))
    return _rebuilt(facet, getattr(module, name))


def _check(events: list[dict]) -> None:
    from openlineage.client.event_v2 import RunEvent, RunState
    from openlineage.client.serde import Serde

    for event in events:
        rebuilt = _rebuilt({**event, "eventType": RunState(event["eventType"])}, RunEvent)
        assert Serde.to_dict(rebuilt) == event


def _redo_one_shard(micro_reference, tmp_path) -> tuple[str, RunStore]:
    """A copy of the micro run whose first shard is made again by the next shards call."""
    store, _ = micro_reference
    root = tmp_path / "root"
    shutil.copytree(Path(store.root) / "reference", root / "reference")
    copy = RunStore(str(root), "reference")
    for output in SHARD:
        copy.fs.rm_file(copy.path("_commits", "shards", output + ".json"))
    copy.fs.rm_file(copy.path("_complete", "shards.json"))
    return str(root), copy


def test_a_stage_call_emits_start_each_commit_and_complete_to_a_file(micro_reference, tmp_path, monkeypatch):
    from flows.stages import STAGE_FLOWS

    root, store = _redo_one_shard(micro_reference, tmp_path)
    events_file = tmp_path / "events.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(events_file))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    STAGE_FLOWS["shards"]("reference", root)
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    _check(events)
    assert [e["eventType"] for e in events] == ["START", "RUNNING", "RUNNING", "RUNNING", "COMPLETE"]
    assert len({e["run"]["runId"] for e in events}) == 1
    assert {e["job"]["name"] for e in events} == {"reference.shards"} and events[0]["job"]["namespace"] == "synthclip"
    parent = events[0]["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "reference" and parent["run"]["runId"]
    assert {(i["namespace"], i["name"]) for i in events[0]["inputs"]} == {("file", store.path("images"))}
    written = {e["outputs"][0]["name"]: e["outputs"][0] for e in events[1:4]}
    assert set(written) == {store.path("shards", o) for o in SHARD}
    for output in SHARD:
        dataset, record = written[store.path("shards", output)], store.record("shards", output)
        assert dataset["facets"]["version"]["datasetVersion"] == record["sha256"]
        assert dataset["outputFacets"]["outputStatistics"]["size"] == record["bytes"]
    schema = [f["name"] for f in written[store.path("shards", "00000.parquet")]["facets"]["schema"]["fields"]]
    assert schema[:2] == ["url", "caption"] and "sha256" in schema
    tags = {t["key"]: t["value"] for t in events[-1]["run"]["facets"]["tags"]["tags"]}
    assert tags["fingerprint"] == json.loads(store.read_bytes("run", "run.json"))["fingerprints"]["shards"]
    assert events[-1]["outputs"][0]["outputFacets"]["outputStatistics"]["fileCount"] == 3


class _Backend(http.server.BaseHTTPRequestHandler):
    """An OpenLineage HTTP backend's endpoint (as Marquez's): it keeps what is posted."""

    received: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_events_go_to_an_http_backend_and_a_failed_call_says_why(micro_reference, tmp_path, monkeypatch):
    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.stages import lineage_events
    from synthclip_core.storage.store import RunRef

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{server.server_port}")
        root, _ = _redo_one_shard(micro_reference, tmp_path)
        run = load_run(RunRef(root, "reference"))
        with pytest.raises(RuntimeError, match="the disk is full"):
            with lineage_events.stage_call(run, "shards"):
                raise RuntimeError("the disk is full")
    finally:
        server.shutdown()
    events = [body for path, body in _Backend.received]
    assert {path for path, _ in _Backend.received} == {"/api/v1/lineage"}
    _check(events)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert events[-1]["run"]["facets"]["errorMessage"]["message"] == "RuntimeError: the disk is full"


def test_off_unless_openlineage_is_configured(monkeypatch, tmp_path):
    from synthclip_core.stages import lineage_events

    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    assert not lineage_events.enabled()
    monkeypatch.setenv("OPENLINEAGE_URL", "http://127.0.0.1:1")
    assert lineage_events.enabled()
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    assert not lineage_events.enabled()
    assert lineage_events.dataset_id("s3://bucket/runs/r1/images/part-00000.parquet") == (
        "s3://bucket", "runs/r1/images/part-00000.parquet")
