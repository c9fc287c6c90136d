"""How a Prefect task or flow run fails for something the user can fix: Failed, with the error's
one line as its message and no traceback in the logs (the CLI prints the same line). A bug, any
other exception, keeps Prefect's traceback.

A worker's engine raises a failed top-level flow run's error once more and logs it with its
traceback; the filter on Prefect's run loggers keeps that record's line and drops the traceback
when the error is an expected one (and the empty "NoneType: None" Prefect logs with a failed state).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

from prefect.states import Failed, State

from synthclip_core.errors import UserError
from synthclip_core.stages.stage import StageBlocked

F = TypeVar("F", bound=Callable[..., Any])


class StageFailed(RuntimeError):
    """Some outputs of a stage failed after their retries; the rest were committed."""


EXPECTED = (UserError, StageFailed, StageBlocked)


def fails_cleanly(fn: F) -> F:
    """Wrap a task or flow function (under ``@task``/``@flow``): an expected error becomes its run's
    Failed state; a caller that awaits the run gets the error raised again, unchanged."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except EXPECTED as exc:
            return Failed(message=" ".join(str(exc).split()), data=exc)
        if isinstance(result, State) and result.is_failed():  # a task's clean failure: this run's too, same line
            return Failed(message=result.message, data=result.result(raise_on_failure=False))
        return result

    return wrapper  # type: ignore[return-value]


class _ExpectedErrorsWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (record.exc_info[1] is None or isinstance(record.exc_info[1], EXPECTED)):
            if record.exc_info[1] is not None:
                record.msg, record.args = f"{record.getMessage()}: {' '.join(str(record.exc_info[1]).split())}", None
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_name).addFilter(_ExpectedErrorsWithoutTraceback())
