"""How a metric grows with training pairs: a curve fitted to (pairs, value) points, pure.

Three forms, as scaling studies of CLIP use them: accuracy linear in log pairs (``log-linear``,
v = a + b ln n), a power law (``power``, v = a n^b: a straight line on log-log axes, which bends
upwards on log pairs, as accuracy does where a model starts to learn), and a saturating power law
(``saturating``, v = a - b n^-c, whose ceiling is a).
With four or more points the form with the smaller leave-one-out error is kept, so a curve is
chosen by how well it predicts a point it has not seen, never by how well it passes through the
ones it has. The interval is the fit's own: the t prediction interval of the line (in ln n, or
in ln n and ln v for the power law), or for the saturating law a seeded bootstrap of its
residuals. Both rest on few points: they say how the rungs scatter about the curve, not whether the form holds far beyond the largest rung.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from ..errors import ConfigError

FORMS = ("log-linear", "power", "saturating")
MIN_POINTS = 3
LEVEL = 0.9  # the interval's coverage
_EXPONENTS = np.geomspace(0.02, 2.0, 200)  # the power law's c, searched on a grid (a and b are then linear)
_BOOTSTRAP = 400


@dataclass(frozen=True)
class Curve:
    """A fitted curve: its form and parameters, how well it predicts an unseen point, and the points."""

    form: str
    params: dict[str, float]
    loo_rmse: float  # root mean square error predicting each point from the others (nan with too few)
    residual_sd: float
    points: tuple[tuple[float, float], ...]
    alternatives: dict[str, float] = field(default_factory=dict)  # form -> its leave-one-out error
    noise_sd: float = 0.0  # how much one measurement scatters on its own (e.g. binomial): an interval is never narrower

    def value_at(self, pairs: float) -> float:
        return float(_evaluate(self.form, self.params, np.asarray([pairs], float))[0])

    def interval_at(self, pairs: float, level: float = LEVEL) -> tuple[float, float]:
        """Where a measurement at ``pairs`` would fall with probability ``level``, by the fit's own account."""
        from scipy import stats

        x, y = _arrays(self.points)
        if self.form in ("log-linear", "power"):
            lx, n = np.log(x), len(x)
            sxx = float(((lx - lx.mean()) ** 2).sum())
            noise = self.noise_sd / float(y.mean()) if self.form == "power" else self.noise_sd  # ln v: relative
            se = max(self.residual_sd, noise) * math.sqrt(1 + 1 / n + (math.log(pairs) - lx.mean()) ** 2 / sxx)
            half = float(stats.t.ppf(0.5 + level / 2, n - 2)) * se
            if self.form == "power":  # the line is in ln v: its interval, back on v
                mid = math.log(self.value_at(pairs))
                return math.exp(mid - half), math.exp(mid + half)
            mid = self.value_at(pairs)
            return mid - half, mid + half
        draws = [_evaluate(self.form, params, np.asarray([pairs], float))[0] + extra for params, extra in self._bootstrap]
        lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
        return float(lo), float(hi)

    @cached_property
    def _bootstrap(self) -> list[tuple[dict, float]]:
        """A saturating fit's residual bootstrap: each refit and the scatter one measurement adds,
        drawn once per curve (a plot asks for the interval at a hundred sizes)."""
        x, y = _arrays(self.points)
        fitted = _evaluate(self.form, self.params, x)
        residuals = (y - fitted) * math.sqrt(len(x) / max(len(x) - 3, 1))
        rng = np.random.default_rng(0)
        if residuals.std() < self.noise_sd:  # the rungs agree better than one measurement can: use its scatter
            residuals = rng.normal(0, self.noise_sd, 64)
        draws = []
        for _ in range(_BOOTSTRAP):
            params, _ = _fit_saturating(x, fitted + rng.choice(residuals, len(x)))
            draws.append((params, float(rng.choice(residuals))))
        return draws

    def pairs_for(self, target: float) -> float | None:
        """The pairs at which the curve reaches ``target``; None where it never does (it falls, or
        a saturating curve's ceiling is below the target)."""
        p = self.params
        if self.form == "log-linear":
            return math.exp((target - p["a"]) / p["b"]) if p["b"] > 0 else None
        if self.form == "power":
            return (target / p["a"]) ** (1 / p["b"]) if p["b"] > 0 and target > 0 else None
        if target >= p["a"] or p["b"] <= 0:
            return None
        return p["scale"] * (p["b"] / (p["a"] - target)) ** (1 / p["c"])

    def describe(self) -> str:
        p = self.params
        if self.form == "log-linear":
            return f"{p['a']:.4g} + {p['b']:.4g} ln(pairs)"
        if self.form == "power":
            return f"{p['a']:.4g} pairs^{p['b']:.4g}"
        return f"{p['a']:.4g} - {p['b']:.4g} (pairs/{p['scale']:.4g})^-{p['c']:.3g}"

    def to_dict(self) -> dict:
        return asdict(self) | {"formula": self.describe()}


def fit_curve(points: list[tuple[float, float]], forms: tuple[str, ...] = FORMS, noise_sd: float = 0.0) -> Curve:
    """The curve through ``points`` (pairs, value) that best predicts a point left out; ``noise_sd``,
    how much one measurement scatters on its own, keeps a few agreeing rungs from claiming a
    narrower interval than their measurements allow."""
    checked = _checked(points)
    x, y = _arrays(checked)
    usable = [f for f in forms if len(x) >= _least_points(f) and (f != "power" or (y > 0).all())]
    errors = {form: _loo_rmse(form, x, y) for form in usable}
    form = min(usable, key=lambda f: (math.inf if math.isnan(errors[f]) else errors[f], FORMS.index(f)))
    params, residual_sd = _fit(form, x, y)
    return Curve(form, params, errors[form], residual_sd, tuple(checked), errors, noise_sd)


def binomial_sd(points: list[tuple[float, float]], samples: list[int]) -> float:
    """The scatter of an accuracy measured on ``samples`` items, at the points' values (0 where a
    value is not a share, or the counts are unknown)."""
    values = [v for _, v in points]
    if not samples or len(samples) != len(values) or not all(0 <= v <= 1 for v in values) or not all(samples):
        return 0.0
    return math.sqrt(sum(v * (1 - v) / n for v, n in zip(values, samples)) / len(values))


def read_points(text: str, source: str) -> list[tuple[float, float]]:
    """(pairs, value) rows of a CSV with the columns ``pairs`` and ``value``, checked."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"pairs", "value"} <= {c.strip() for c in reader.fieldnames}:
        raise ConfigError(f"{source}: needs the columns pairs,value (it has {','.join(reader.fieldnames or []) or 'none'})")
    points = []
    for line, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        try:
            pairs, value = float(row["pairs"]), float(row["value"])
        except ValueError:
            raise ConfigError(f"{source}:{line}: pairs and value must be numbers, got {row['pairs']!r}, {row['value']!r}") from None
        if not pairs > 0 or not math.isfinite(pairs):
            raise ConfigError(f"{source}:{line}: pairs must be a positive number, got {row['pairs']}")
        points.append((pairs, value))
    return _checked(points, source)


def _checked(points: list[tuple[float, float]], source: str = "the points") -> list[tuple[float, float]]:
    points = sorted((float(p), float(v)) for p, v in points)
    if bad := [p for p, _ in points if not p > 0 or not math.isfinite(p)]:
        raise ConfigError(f"{source}: pairs must be positive numbers, got {bad[0]:g}")
    if bad := [v for _, v in points if not math.isfinite(v)]:
        raise ConfigError(f"{source}: values must be finite numbers, got {bad[0]}")
    if len({p for p, _ in points}) < MIN_POINTS:
        raise ConfigError(f"{source}: a curve needs at least {MIN_POINTS} points at different sizes, got "
                          f"{len({p for p, _ in points})}")
    return points


def _arrays(points) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray([p for p, _ in points], float), np.asarray([v for _, v in points], float)


def _least_points(form: str) -> int:
    return 4 if form == "saturating" else 3  # enough to leave one out and still fit


def _fit(form: str, x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], float]:
    return {"log-linear": _fit_log_linear, "power": _fit_power, "saturating": _fit_saturating}[form](x, y)


def _fit_power(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], float]:
    """A line through (ln n, ln v); its residual scale is in ln v."""
    b, ln_a = np.polyfit(np.log(x), np.log(y), 1)
    residuals = np.log(y) - (ln_a + b * np.log(x))
    return {"a": float(math.exp(ln_a)), "b": float(b)}, _sd(residuals, len(x) - 2)


def _fit_log_linear(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], float]:
    b, a = np.polyfit(np.log(x), y, 1)
    residuals = y - (a + b * np.log(x))
    return {"a": float(a), "b": float(b)}, _sd(residuals, len(x) - 2)


def _fit_saturating(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], float]:
    """For each c on the grid a and b are a linear least-squares fit; the c with the least error wins."""
    scale = float(x.min())
    best = None
    for c in _EXPONENTS:
        design = np.column_stack([np.ones_like(x), -((x / scale) ** -c)])
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((design @ np.array([a, b]) - y) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, {"a": float(a), "b": float(b), "c": float(c), "scale": scale})
    params = best[1]
    return params, _sd(y - _evaluate("saturating", params, x), len(x) - 3)


def _evaluate(form: str, params: dict[str, float], x: np.ndarray) -> np.ndarray:
    if form == "log-linear":
        return params["a"] + params["b"] * np.log(x)
    if form == "power":
        return params["a"] * x ** params["b"]
    return params["a"] - params["b"] * (x / params["scale"]) ** -params["c"]


def _loo_rmse(form: str, x: np.ndarray, y: np.ndarray) -> float:
    errors = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        params, _ = _fit(form, x[keep], y[keep])
        errors.append(float(_evaluate(form, params, x[i:i + 1])[0] - y[i]))
    return float(math.sqrt(np.mean(np.square(errors))))


def _sd(residuals: np.ndarray, dof: int) -> float:
    return float(math.sqrt((residuals ** 2).sum() / dof)) if dof > 0 else float("nan")
