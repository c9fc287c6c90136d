"""Plug-ins named ``package.module:ClassName`` in a config (a backend of a user's own)."""

from __future__ import annotations

import importlib

from .errors import ConfigError


def is_plugin(name: str) -> bool:
    return ":" in name


def plugin_class(name: str, field: str) -> type:
    """The class ``name`` names; a config error naming ``field`` when it cannot be imported."""
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{field} {name!r}: cannot import it ({exc})") from None
