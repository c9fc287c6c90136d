"""Price tables: what an hour of a GPU type, or of a CPU, costs, versioned so every figure says
which prices it used. The built-in table is a list-price snapshot; a user's own file (their
contract, their spot prices) replaces it."""

from __future__ import annotations

import json
from importlib import resources as package_files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError
from ..storage.ledger import Spend

BUILTIN_PRICES = "list-2026-12"


class PriceTable(BaseModel):
    """Prices per GPU-hour by accelerator type (``default`` for a type not listed) and per CPU-hour."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(..., min_length=1, description="Which table this is: every cost report names it.")
    currency: str = "USD"
    gpu_hour: dict[str, float] = Field(default_factory=dict)
    cpu_hour: float = Field(0.0, ge=0)
    sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("gpu_hour")
    @classmethod
    def _not_negative(cls, prices: dict[str, float]) -> dict[str, float]:
        if bad := [f"{name} ({price:g})" for name, price in prices.items() if price < 0]:
            raise ValueError(f"a price cannot be negative: {', '.join(bad)}")
        return prices

    def per_gpu_hour(self, accelerator: str) -> float:
        """The price of one hour of ``accelerator``: the listed type its name contains (the longest
        such, so "NVIDIA H100 80GB HBM3" is an H100), else ``default``."""
        name = accelerator.lower()
        named = sorted((k for k in self.gpu_hour if k != "default" and k.lower() in name), key=len, reverse=True)
        if named:
            return self.gpu_hour[named[0]]
        if "default" in self.gpu_hour:
            return self.gpu_hour["default"]
        raise ConfigError(f"prices {self.version!r}: no price for the accelerator {accelerator!r} and no 'default'; "
                          f"add one under gpu_hour")

    def money(self, spend: Spend) -> float:
        return sum(self.per_gpu_hour(t) * s / 3600 for t, s in spend.gpu_s.items()) + self.cpu_hour * spend.cpu_hours


def load_prices(name: str | None = None) -> PriceTable:
    """The built-in price table (``name`` None or its version), or a JSON file; one line for a file
    that is not one (no version, a negative price, a field it does not know)."""
    if name in (None, BUILTIN_PRICES):
        where = BUILTIN_PRICES
        text = package_files.files("synthclip_core.planning").joinpath("prices", f"{BUILTIN_PRICES}.json").read_text()
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"prices: {name!r} is neither the built-in table ({BUILTIN_PRICES}) nor a file")
        text, where = path.read_text(), str(path)
    try:
        return PriceTable.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"prices {where}: not JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'the table'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ConfigError(f"prices {where}: {problems}") from None
