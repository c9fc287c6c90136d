"""Which platform run a flow run works on, as tags on the flow run: ``run:ID`` and ``root:URI``
(and ``auto-resume:N`` on an automatic resume), so that whatever reacts to the flow run (the
auto-resume automation, a person filtering the Runs page) finds the run without re-deriving it."""

from __future__ import annotations

RUN_TAG, ROOT_TAG, ATTEMPT_TAG = "run:", "root:", "auto-resume:"


def tag_flow_run(run_id: str, root: str, attempt: int | None = None) -> None:
    """Tag the current flow run with the platform run it works on (``run:ID``, ``root:URI``), so
    that an automation reacting to its failure knows which run to resume (a scheduled build's run
    id is made when it starts), and an automatic resume with its attempt (``auto-resume:N``)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    mine = [RUN_TAG + run_id, ROOT_TAG + root, *([f"{ATTEMPT_TAG}{attempt}"] if attempt else [])]
    replaced = (RUN_TAG, ROOT_TAG, *([ATTEMPT_TAG] if attempt else []))  # a resume queued by auto-resume keeps its attempt
    with get_client(sync_client=True) as client:
        tags = [t for t in client.read_flow_run(flow_run.id).tags if not t.startswith(replaced)]
        client.update_flow_run(flow_run.id, tags=[*tags, *mine])


def tagged(tags: list[str], prefix: str) -> str | None:
    """The value of the first tag with ``prefix``, if any."""
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)
