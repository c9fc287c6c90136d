"""OpenLineage events for every stage run and every output it commits, so that Marquez (or any
OpenLineage backend) draws a run's lineage next to the rest of a data platform's.

Off unless OpenLineage is configured the client's own way: ``OPENLINEAGE_URL`` (HTTP, e.g.
Marquez at ``http://HOST:5000``), ``OPENLINEAGE__TRANSPORT__TYPE=file`` with
``OPENLINEAGE__TRANSPORT__LOG_FILE_PATH``, an ``OPENLINEAGE_CONFIG`` file, or ``openlineage.yml``
in the working directory; ``OPENLINEAGE_DISABLED=true`` turns it off again. Events are sent from
the process that runs the stage (the flow's task), never from Ray workers, so only it needs the
configuration. A backend that fails never fails a stage: the error is logged.

Per stage call (an OpenLineage run of job ``RUN_ID.STAGE`` in namespace ``OPENLINEAGE_NAMESPACE``,
default ``synthclip``; its parent is the platform run, job ``RUN_ID``):
- START: the upstream stages' folders as inputs, the stage's description and type;
- RUNNING, one per output committed during the call: the output file as a dataset with its schema
  (Parquet), its sha256 as the dataset version, its rows and bytes;
- COMPLETE, or FAIL with the error: the stage's folder as the output, with outputs, rows and bytes.
Run facets carry the stage fingerprint, version and the git commit of the code as tags.
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

log = logging.getLogger("synthclip.lineage")
PRODUCER = "https://github.com/synthclip/synthclip"  # who wrote the events, as OpenLineage asks
_CONFIGURED_BY = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG")


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
    """One stage call being observed; the stage sets ``summary`` once it has one."""

    run: Any
    stage: str
    run_id: str = field(default_factory=lambda: str(_new_uuid()))
    started: float = field(default_factory=time.time)
    summary: Any = None


class Emitter:
    """Builds and sends the events of stage calls through one OpenLineage client."""

    def __init__(self, client=None):
        from openlineage.client import OpenLineageClient
        from openlineage.client.event_v2 import set_producer

        set_producer(PRODUCER)  # the producer the client writes into every facet
        self.client = client or OpenLineageClient()
        self.namespace = os.environ.get("OPENLINEAGE_NAMESPACE", "synthclip")

    def start(self, call: StageCall) -> None:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import documentation_job, job_type_job

        run, stage = call.run, call.run.stage(call.stage)
        inputs = [InputDataset(*dataset_id(run.store.uri(name))) for name in stage.upstream if run.has(name)]
        job_facets = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="SYNTHCLIP", jobType="STAGE"),
                      "documentation": documentation_job.DocumentationJobFacet(description=stage.description)}
        self._send(call, "START", inputs=inputs, job_facets=job_facets)

    def committed(self, call: StageCall, output: str, record: dict) -> None:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import dataset_version_dataset, output_statistics_output_dataset, storage_dataset

        store = call.run.store
        facets: dict[str, Any] = {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=record["sha256"]),
            "storage": storage_dataset.StorageDatasetFacet(storageLayer="synthclip", fileFormat=output.rsplit(".", 1)[-1]),
        }
        if output.endswith(".parquet"):
            facets["schema"] = _schema_facet(store, call.stage, output)
        statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=record.get("rows"), size=record["bytes"], fileCount=1)
        dataset = OutputDataset(*dataset_id(store.uri(*record["path"].split("/"))), facets=facets,
                                outputFacets={"outputStatistics": statistics})
        self._send(call, "RUNNING", outputs=[dataset])

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
        statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=sum(r.get("rows") or 0 for r in records.values()), size=sum(r["bytes"] for r in records.values()),
            fileCount=len(records))
        folder = OutputDataset(*dataset_id(call.run.store.uri(call.stage)), outputFacets={"outputStatistics": statistics})
        self._send(call, "FAIL" if run_facets else "COMPLETE", outputs=[folder], run_facets=run_facets)

    def _send(self, call: StageCall, state: str, inputs: list | None = None, outputs: list | None = None,
              job_facets: dict | None = None, run_facets: dict | None = None) -> None:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import parent_run, processing_engine_run, tags_run

        run = call.run
        parent = run.ref.run_id
        version = code_version(run.stage(call.stage).version)
        tags = [tags_run.TagsRunFacetFields(key=k, value=str(v), source="SYNTHCLIP") for k, v in (
            ("fingerprint", run.fingerprints.get(call.stage, "")), ("stage_version", version.get("stage")),
            ("git_commit", version.get("git", "unknown")), ("kind", run.kind))]
        facets = {
            "parent": parent_run.ParentRunFacet(run=parent_run.Run(runId=str(platform_run_uuid(run))),
                                                job=parent_run.Job(namespace=self.namespace, name=parent)),
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=__version__, name="synthclip", openlineageAdapterVersion=_client_version()),
            "tags": tags_run.TagsRunFacet(tags=tags),
            **(run_facets or {}),
        }
        event = RunEvent(eventType=RunState[state], eventTime=_now(), run=Run(runId=call.run_id, facets=facets),
                         job=Job(namespace=self.namespace, name=f"{parent}.{call.stage}", facets=job_facets or {}),
                         inputs=inputs or [], outputs=outputs or [], producer=PRODUCER)
        try:
            self.client.emit(event)
        except Exception as exc:  # the lineage backend never fails a stage
            log.warning("OpenLineage: could not send the %s event of %s (%s: %s)", state, call.stage, type(exc).__name__, exc)


@contextmanager
def stage_call(run, stage: str, emitter: Emitter | None = None) -> Iterator[StageCall]:
    """Observe one call of ``stage`` on ``run``: START now; at the end a RUNNING event per output
    committed meanwhile, then COMPLETE or FAIL. Does nothing where OpenLineage is not configured."""
    call = StageCall(run, stage)
    if emitter is None and not enabled():
        yield call
        return
    emitter = emitter or Emitter()
    emitter.start(call)
    error: BaseException | None = None
    try:
        yield call
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            records = {o: r for o, r in run.store.records(stage).items() if r.get("committed_at", 0) >= call.started}
            for output, record in sorted(records.items()):
                emitter.committed(call, output, record)
            emitter.finish(call, error, records)
        except Exception as exc:  # reading what the call committed (records, schemas) never fails the stage either
            log.warning("OpenLineage: could not describe what %s committed (%s: %s)", stage, type(exc).__name__, exc)


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
