"""Settings that choose code, taken from a stored config only where the machine allows them.

Resume, ``resume-latest``, auto-resume and a stage's deployment read a run's config from its
store, so whoever can write the bucket could otherwise choose what the cluster runs: a plug-in
backend (``backend: package.module:Class`` imports any installed module), an interpreter
(``captions.python`` becomes Ray's ``py_executable``), an engine option that runs a model's own
code (``trust_remote_code``). Pins in the same file do not help: whoever writes the file writes
the pins. So before a stage makes anything, each such setting of its section must be allowed on
the machine that runs it: by ``SYNTHCLIP_ALLOW_CODE`` in the worker's environment (or the
deployment's job variables), never by anything in the store. A config a person gave (``synthclip
run CONFIG``, ``build-dataset``'s ``config``, ``open_run``) allows its own settings in that
process, so a run started from a file is unaffected.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from ..config import is_plugin
from ..errors import RunStateError

ALLOW_ENV = "SYNTHCLIP_ALLOW_CODE"  # "field=value" entries separated by ";", e.g. "captions.backend=pkg.mod:Class"
REMOTE_CODE = ("trust_remote_code",)  # engine options that run code a model repository ships


def chosen_code(section: BaseModel | None, where: str) -> dict[str, str]:
    """The settings of ``section`` (a stage's, named ``where``) that choose code: field -> value."""
    found: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}"
                if key == "backend" and isinstance(item, str) and is_plugin(item):
                    found[name] = item
                elif key == "python" and item:
                    found[name] = str(item)
                elif key in REMOTE_CODE and item:
                    found[name] = str(item)
                else:
                    walk(item, name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}.{index}")

    if section is not None:
        walk(section.model_dump(mode="json"), where)
    return found


def allowed() -> set[str]:
    return {entry.strip() for entry in os.environ.get(ALLOW_ENV, "").split(";") if entry.strip()}


def allow(cfg) -> None:
    """Allow, in this process (and what it starts), the code settings of a config a person gave."""
    mine = {f"{field}={value}" for name in type(cfg).model_fields
            for field, value in chosen_code(_section(cfg, name), name).items()}
    if mine - allowed():
        os.environ[ALLOW_ENV] = ";".join(sorted(allowed() | mine))


def unallowed(cfg, stage: str) -> dict[str, str]:
    """The settings of ``stage``'s section that choose code and are not allowed here (pure: no I/O)."""
    ok = allowed()
    return {field: value for field, value in chosen_code(_section(cfg, stage), stage).items()
            if f"{field}={value}" not in ok}


def check(cfg, stage: str) -> None:
    """Refuse, in one line, a setting of ``stage``'s section that chooses code and is not allowed here."""
    for field, value in unallowed(cfg, stage).items():
        raise RunStateError(
            f"{field}: {value!r} chooses code, and a stored config (which whoever can write the store can "
            f"change) may choose code only where the machine running it allows it: set "
            f"{ALLOW_ENV}='{field}={value}' in this worker's environment (or the deployment's job "
            f"variables), or run from the config file")


def _section(cfg, name: str) -> BaseModel | None:
    section = getattr(cfg, name, None)
    return section if isinstance(section, BaseModel) else None
