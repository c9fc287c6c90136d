"""Seals: a commit record or completion marker carries the sha256 of its own content.

Records and markers say which bytes an output is, how many rows it holds and how its data splits;
export, training and resume plan from them. Their own bytes therefore need the same proof as the
data's: ``checksum`` is the sha256 of the document's canonical JSON (sorted keys, no spaces)
without that field, so any edit of a value after the write shows. Documents written before seals
(no ``checksum``) read as unsealed, not as damaged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FIELD = "checksum"


def _digest(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def sealed(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as it will read back (JSON round trip) with its checksum."""
    plain = json.loads(json.dumps(doc, default=str))
    return {**plain, FIELD: _digest(plain)}


def broken(doc: dict[str, Any]) -> str | None:
    """Why a sealed document is not as written (None when its checksum holds or it has none)."""
    if FIELD not in doc:
        return None
    if doc[FIELD] != _digest(doc):
        return "its checksum does not hold: it was changed after it was written"
    return None


def is_sealed(doc: dict[str, Any]) -> bool:
    return FIELD in doc
