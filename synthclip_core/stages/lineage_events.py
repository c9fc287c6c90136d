"""OpenLineage events for every stage run and the outputs it commits, so that Marquez (or any
OpenLineage backend) draws a run's lineage next to the rest of a data platform's.

Off unless OpenLineage is configured the client's own way: ``OPENLINEAGE_URL`` (HTTP, e.g.
Marquez at ``http://HOST:5000``), ``OPENLINEAGE__TRANSPORT__TYPE=file`` with
``OPENLINEAGE__TRANSPORT__LOG_FILE_PATH``, an ``OPENLINEAGE_CONFIG`` file, or ``openlineage.yml``
in the working directory; ``OPENLINEAGE_DISABLED=true`` turns it off again. Events are sent from
the process that runs the stage (the flow's task), never from Ray workers, so only it needs the
configuration. They are sent off the stage's path (``lineage_sender``): a slow or dead backend
costs a stage at most a few seconds, and a misconfigured one is one warning; events that could
not be sent are counted in the stage's summary (``lineage_unsent``).

Jobs are named by what recurs, as the spec asks: the platform run is a run of job ``NAME`` (the
config's name) and each stage call a run of job ``NAME.STAGE`` whose parent it is, in namespace
``OPENLINEAGE_NAMESPACE`` (default ``synthclip``); the run id is a tag of each run. Per platform
run call (``run_call``): START and COMPLETE or FAIL. Per stage call (``stage_call``):
- START: the upstream stages' folders as inputs, the stage's description and type;
- RUNNING, for the outputs the call committed (a hundred per event): each file as a dataset with
  its sha256 as the dataset version, its rows and bytes, and the Parquet schema (read once);
- COMPLETE, or FAIL with the error: the stage's folder as the output when the call committed
  anything, with outputs, rows and bytes.
Run facets carry the stage fingerprint, version, run id and the git commit of the code as tags.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..storage.lineage import code_version
from ..version import __version__
from .lineage_sender import Sender, Tally, with_short_timeouts

log = logging.getLogger("synthclip.lineage")
PRODUCER = "https://github.com/synthclip/synthclip"  # who wrote the events, as OpenLineage asks
_CONFIGURED_BY = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG")
PER_EVENT = 100  # outputs named by one RUNNING event


def enabled() -> bool:
    """Whether OpenLineage is configured for this process (see the module's docstring)."""
    if os.environ.get("OPENLINEAGE_DISABLED", "").lower() in ("1", "true", "yes"):
        return False
    return (any(os.environ.get(name) for name in _CONFIGURED_BY) or Path("openlineage.yml").exists()
            or any(name.startswith("OPENLINEAGE__TRANSPORT") for name in os.environ))


def dataset_id(uri: str) -> tuple[str, str]:
    """(namespace, name) of a stored file or folder by OpenLineage's naming: ``file`` and the
    absolute path locally; ``SCHEME://BUCKET`` and the key on an object store."""
    if "://" not in uri:
        return "file", os.path.abspath(uri)
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    return f"{scheme}://{bucket}", key


@dataclass
class StageCall:
    """One stage call (or, with ``stage`` None, one call of the whole run) being observed; the
    stage sets ``summary`` once it has one."""

    run: Any
    stage: str | None
    run_id: str = field(default_factory=lambda: str(_new_uuid()))
    started: float = field(default_factory=time.time)
    summary: Any = None
    tally: Tally = field(default_factory=Tally)


class Emitter:
    """Builds the events of stage calls and hands them to the background sender."""

    def __init__(self, client=None):
        from openlineage.client import OpenLineageClient
        from openlineage.client.event_v2 import set_producer

        set_producer(PRODUCER)  # the producer the client writes into every facet
        self.client = client or with_short_timeouts(OpenLineageClient())
        self.sender = Sender(self.client.emit)
        self.namespace = os.environ.get("OPENLINEAGE_NAMESPACE", "synthclip")

    def start(self, call: StageCall) -> None:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import documentation_job, job_type_job

        if call.stage is None:
            self._send(call, "START", job_facets={"jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="SYNTHCLIP", jobType="DAG")})
            return
        run, stage = call.run, call.run.stage(call.stage)
        inputs = [InputDataset(*dataset_id(run.store.uri(name))) for name in stage.upstream if run.has(name)]
        job_facets = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="SYNTHCLIP", jobType="STAGE"),
                      "documentation": documentation_job.DocumentationJobFacet(description=stage.description)}
        self._send(call, "START", inputs=inputs, job_facets=job_facets)

    def committed(self, call: StageCall, records: dict[str, dict], schema: Any = None) -> None:
        """RUNNING events naming the outputs ``records`` describe (``schema``: their Parquet schema facet)."""
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import dataset_version_dataset, output_statistics_output_dataset, storage_dataset

        store, datasets = call.run.store, []
        for output, record in sorted(records.items()):
            facets: dict[str, Any] = {
                "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=record["sha256"]),
                "storage": storage_dataset.StorageDatasetFacet(storageLayer="synthclip", fileFormat=output.rsplit(".", 1)[-1]),
            }
            if output.endswith(".parquet") and schema is not None:
                facets["schema"] = schema
            statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=record.get("rows"), size=record["bytes"], fileCount=1)
            datasets.append(OutputDataset(*dataset_id(store.uri(*record["path"].split("/"))), facets=facets,
                                          outputFacets={"outputStatistics": statistics}))
        for start in range(0, len(datasets), PER_EVENT):
            self._send(call, "RUNNING", outputs=datasets[start:start + PER_EVENT])

    def finish(self, call: StageCall, error: BaseException | None, records: dict[str, dict]) -> None:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import error_message_run, output_statistics_output_dataset

        run_facets: dict[str, Any] = {}
        failures = getattr(call.summary, "failures", None) or {}
        if error is not None or failures:
            message = (f"{type(error).__name__}: {error}" if error is not None else
                       f"{len(failures)} output(s) failed, e.g. {next(iter(sorted(failures.items())))}")
            trace = "".join(traceback.format_exception(error)) if error is not None else None
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=message[:2000], programmingLanguage="python", stackTrace=trace)
        outputs = []
        if records and call.stage is not None:  # only what exists: a call that committed nothing names nothing
            statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=sum(r.get("rows") or 0 for r in records.values()), size=sum(r["bytes"] for r in records.values()),
                fileCount=len(records))
            outputs = [OutputDataset(*dataset_id(call.run.store.uri(call.stage)), outputFacets={"outputStatistics": statistics})]
        self._send(call, "FAIL" if run_facets else "COMPLETE", outputs=outputs, run_facets=run_facets)

    def _send(self, call: StageCall, state: str, inputs: list | None = None, outputs: list | None = None,
              job_facets: dict | None = None, run_facets: dict | None = None) -> None:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import parent_run, processing_engine_run, tags_run

        run = call.run
        job_name = run.config.name
        tags = [("run_id", run.ref.run_id), ("kind", run.kind)]
        facets: dict[str, Any] = {}
        if call.stage is not None:
            version = code_version(run.stage(call.stage).version)
            tags += [("fingerprint", run.fingerprints.get(call.stage, "")), ("stage_version", version.get("stage")),
                     ("git_commit", version.get("git", "unknown"))]
            facets["parent"] = parent_run.ParentRunFacet(run=parent_run.Run(runId=str(platform_run_uuid(run))),
                                                         job=parent_run.Job(namespace=self.namespace, name=job_name))
            job_name = f"{job_name}.{call.stage}"
        facets.update({
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=__version__, name="synthclip", openlineageAdapterVersion=_client_version()),
            "tags": tags_run.TagsRunFacet(tags=[tags_run.TagsRunFacetFields(key=k, value=str(v), source="SYNTHCLIP")
                                                for k, v in tags]),
            **(run_facets or {}),
        })
        event = RunEvent(eventType=RunState[state], eventTime=_now(), run=Run(runId=call.run_id, facets=facets),
                         job=Job(namespace=self.namespace, name=job_name, facets=job_facets or {}),
                         inputs=inputs or [], outputs=outputs or [], producer=PRODUCER)
        self.sender.submit(event, call.tally)


_EMITTER: dict[str, Emitter | None] = {}


def emitter_of_process() -> Emitter | None:
    """The process's emitter, made on first use; None (after one warning) when the configured
    backend cannot be used (a URL without a scheme, an unknown transport)."""
    key = "|".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("OPENLINEAGE"))
    if key not in _EMITTER:
        try:
            _EMITTER[key] = Emitter()
        except Exception as exc:  # noqa: BLE001 (lineage never stops a stage)
            log.warning("OpenLineage is configured but cannot be used, so no lineage events are sent: %s: %s",
                        type(exc).__name__, " ".join(str(exc).split())[:300])
            _EMITTER[key] = None
    return _EMITTER[key]


@contextmanager
def stage_call(run, stage: str, emitter: Emitter | None = None) -> Iterator[StageCall]:
    """Observe one call of ``stage`` on ``run``: START now; at the end RUNNING events for the
    outputs committed meanwhile (found by listing the stage before and after, so only those
    records are read), then COMPLETE or FAIL, and at most ``FLUSH_S`` for them to go out. Does
    nothing where OpenLineage is not configured."""
    call = StageCall(run, stage)
    before: set[str] = set()

    def end(emitter: Emitter, error: BaseException | None) -> None:
        try:
            new = sorted(_listed(run, stage) - before)
            records = dict(run.store.iter_records(stage, new))
            first_table = next((o for o in new if o.endswith(".parquet")), None)
            emitter.committed(call, records, _schema_facet(run.store, stage, first_table) if first_table else None)
            emitter.finish(call, error, records)
        except Exception as exc:  # reading what the call committed (records, schemas) never fails the stage either
            log.warning("OpenLineage: could not describe what %s committed (%s: %s)", stage, type(exc).__name__, exc)

    def begin(emitter: Emitter) -> None:
        before.update(_listed(run, stage))
        emitter.start(call)

    with _observed(call, emitter, begin, end):
        yield call


@contextmanager
def run_call(run, emitter: Emitter | None = None) -> Iterator[StageCall]:
    """Observe one call of a whole run (its stages in order): START, then COMPLETE or FAIL of the
    platform run, the parent of every stage call's run."""
    call = StageCall(run, None, run_id=str(platform_run_uuid(run)))
    with _observed(call, emitter, lambda e: e.start(call), lambda e, error: e.finish(call, error, {})):
        yield call


@contextmanager
def _observed(call: StageCall, emitter: Emitter | None, begin, end) -> Iterator[None]:
    """The one shape of an observed call: ``begin``, the block, ``end`` with its error (if any),
    then the bounded wait for the events; nothing at all where OpenLineage is not configured."""
    emitter = emitter or (emitter_of_process() if enabled() else None)
    if emitter is None:
        yield
        return
    begin(emitter)
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        end(emitter, error)
        _settle(emitter, call)


def _listed(run, stage: str) -> set[str]:
    try:
        return run.store.committed(stage)
    except Exception as exc:  # noqa: BLE001 (lineage never stops a stage)
        log.warning("OpenLineage: could not list %s (%s: %s)", stage, type(exc).__name__, exc)
        return set()


def _settle(emitter: Emitter, call: StageCall) -> None:
    """Give the call's events ``FLUSH_S`` to go out; count what did not in its summary."""
    emitter.sender.flush(call.tally)
    unsent = call.tally.unsent + call.tally.pending
    if unsent:
        log.warning("OpenLineage: %d of %d events of %s were not sent (the backend is slow or down)",
                    unsent, call.tally.submitted, call.stage or call.run.ref.run_id)
        if call.summary is not None and hasattr(call.summary, "lineage_unsent"):
            call.summary.lineage_unsent = unsent


def platform_run_uuid(run) -> uuid.UUID:
    """The OpenLineage run id of a platform run: the same for every stage call of it, from its
    storage root and run id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, posixpath.join(run.store.uri(), ""))


def _schema_facet(store, stage: str, output: str):
    import pyarrow.parquet as pq
    from openlineage.client.facet_v2 import schema_dataset

    with store.open(stage, output) as handle:
        schema = pq.read_schema(handle)
    return schema_dataset.SchemaDatasetFacet(fields=[
        schema_dataset.SchemaDatasetFacetFields(name=f.name, type=str(f.type)) for f in schema])


def _new_uuid() -> uuid.UUID:
    from openlineage.client.uuid import generate_new_uuid

    return generate_new_uuid()


def _client_version() -> str:
    from importlib.metadata import version

    return version("openlineage-python")


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()
