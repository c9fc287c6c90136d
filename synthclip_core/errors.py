"""Errors a user can fix, reported in one line instead of a traceback."""


class UserError(Exception):
    """A problem in the user's config, inputs or environment, with a message that names it."""


class ConfigError(UserError):
    """The run configuration is invalid."""


class StorageError(UserError):
    """The storage root cannot be reached or written."""


class ConceptBankError(UserError):
    """The concept bank cannot be read or is malformed."""


class SourceError(ConfigError):
    """A training source cannot be read as configured; the message names the source."""


class RunStateError(UserError):
    """The run on disk does not fit the request (unknown run, changed fingerprint, ...)."""


class BackendError(UserError):
    """A model backend broke its contract (wrong number or size of results): every partition would
    fail the same way, so the stage stops at the first one."""


class BudgetExhausted(UserError):
    """A run reached its budget: the stage stopped handing out work (what was in flight committed)."""
