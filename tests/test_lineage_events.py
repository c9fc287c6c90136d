"""OpenLineage events of stage runs and committed outputs, through openlineage-python's own file
and HTTP transports, checked by rebuilding every event with the client's own (validating) classes."""

from __future__ import annotations

import http.server
import json
import threading

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
    from faults import copy_run

    root = tmp_path / "root"
    copy = copy_run(micro_reference[0], root)
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
    assert [e["eventType"] for e in events] == ["START", "RUNNING", "COMPLETE"]  # the outputs of a call in one RUNNING
    assert len({e["run"]["runId"] for e in events}) == 1
    # the job is what recurs (the config's name and the stage); the run id is a tag of the run
    assert {e["job"]["name"] for e in events} == {"micro.shards"} and events[0]["job"]["namespace"] == "synthclip"
    parent = events[0]["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "micro" and parent["run"]["runId"]
    assert {"key": "run_id", "value": "reference", "source": "SYNTHCLIP"} in events[0]["run"]["facets"]["tags"]["tags"]
    assert {(i["namespace"], i["name"]) for i in events[0]["inputs"]} == {("file", store.path("images"))}
    written = {o["name"]: o for o in events[1]["outputs"]}
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
    assert events[-1]["outputs"] == []  # nothing was committed: no output is named


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


def test_a_whole_run_call_is_the_parent_run_with_events_of_its_own(micro_reference, tmp_path, monkeypatch):
    from synthclip_core.runs.api import run_all
    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.stages import lineage_events
    from synthclip_core.storage.store import RunRef

    root, _ = _redo_one_shard(micro_reference, tmp_path)
    events_file = tmp_path / "events.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(events_file))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    run = load_run(RunRef(root, "reference"))
    run_all(run)
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    _check(events)
    parent = [e for e in events if e["job"]["name"] == "micro"]
    assert [e["eventType"] for e in parent] == ["START", "COMPLETE"]
    assert parent[0]["run"]["runId"] == str(lineage_events.platform_run_uuid(run))
    stages = [e for e in events if e["job"]["name"] != "micro"]
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in stages} == {parent[0]["run"]["runId"]}
    skipped = [e for e in stages if e["job"]["name"] == "micro.concepts"]
    assert [e["eventType"] for e in skipped] == ["START", "COMPLETE"] and skipped[-1]["outputs"] == []


def _dead_endpoint():
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return sock


def _commit_twenty(run, prefix: str = "extra", **kw):
    import time

    from synthclip_core.stages import lineage_events
    from synthclip_core.stages.stage import StageSummary

    started = time.perf_counter()
    with lineage_events.stage_call(run, "shards", **kw) as call:
        for i in range(20):
            run.store.commit("shards", f"{prefix}-{i:02d}.json", b"{}")
        call.summary = StageSummary("shards")
    return time.perf_counter() - started, call


def test_a_dead_lineage_backend_costs_a_stage_seconds_and_the_unsent_are_counted(micro_reference, tmp_path, monkeypatch, caplog):
    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.stages import lineage_sender
    from synthclip_core.storage.store import RunRef

    root, _ = _redo_one_shard(micro_reference, tmp_path)
    run = load_run(RunRef(root, "reference"))
    for name in [n for n in __import__("os").environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    without, _ = _commit_twenty(run, "without")
    dead = _dead_endpoint()
    try:
        monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{dead.getsockname()[1]}")
        with_dead, call = _commit_twenty(run, "with")  # before: 5 s x 6 tries per event, ~14 minutes for this call
    finally:
        dead.close()
    assert with_dead - without < lineage_sender.FLUSH_S + 3, (with_dead, without)
    assert call.summary.lineage_unsent >= 1 and call.tally.submitted == 3  # START, one RUNNING of 20, COMPLETE
    assert "lineage events not sent" in call.summary.line()
    assert any("events of shards were not sent" in r.message for r in caplog.records)


def test_a_misconfigured_lineage_backend_is_one_warning_not_a_failed_stage(micro_reference, tmp_path, monkeypatch, caplog):
    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.storage.store import RunRef

    root, _ = _redo_one_shard(micro_reference, tmp_path)
    run = load_run(RunRef(root, "reference"))
    monkeypatch.setenv("OPENLINEAGE_URL", "marquez:5000")  # no scheme: the client refuses it
    _commit_twenty(run)
    _commit_twenty(run)
    warned = [r.message for r in caplog.records if "cannot be used" in r.message]
    assert len(warned) == 1 and "Need valid url" in warned[0]
