"""Per-window statistics for ``get_table``/``get_gdf(stats=...)``: reduce a masked window to a few numbers.

A window (one AOI x record x band) reduces over its valid values only: pixels
inside the AOI that GDAL's mask band calls valid (not nodata, not masked by an
internal mask or alpha), and, in float bands, not NaN. The conventions:

- ``count``: the number of valid values (int64); 0 for a window without any, whose
  other statistics are then null.
- ``mean`` and ``std``: accumulated in float64 (rescaled where a plain sum would
  overflow, so values near float64's limits still give finite results); ``std`` is
  the population standard deviation (``ddof=0``, numpy's default).
- ``min`` and ``max``: exact values in the bands' dtype (the common dtype of the
  bands asked); unsigned integers are widened to the signed type that holds every
  value (``uint16`` -> ``int32``), as the Delta output tables of the flows must
  store them, so the library and the flows give one schema.
- ``median``: numpy's ``median`` of the valid values (the mean of the two middle
  values for an even count), as float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from rasteret_core.errors import StatisticError

__all__ = ["STATISTICS", "check_stats", "reduce_window", "stats_columns", "valid_values", "value_type"]

STATISTICS: tuple[str, ...] = ("count", "mean", "min", "max", "std", "median")

_WIDER: dict[np.dtype, np.dtype] = {np.dtype("uint8"): np.dtype("int16"), np.dtype("uint16"): np.dtype("int32"),
                                     np.dtype("uint32"): np.dtype("int64")}


def check_stats(stats: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise ``stats`` (one name or a sequence of names) and check each is known.

    Raises:
        StatisticError: a name is unknown or repeated, or none is given.
    """
    names = (stats,) if isinstance(stats, str) else tuple(stats)
    valid = ", ".join(STATISTICS)
    if not names:
        raise StatisticError(f"no statistic asked; pass one or more of {valid}")
    unknown = [n for n in names if n not in STATISTICS]
    if unknown:
        raise StatisticError(f"unknown statistic(s) {unknown}; the valid ones are {valid}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StatisticError(f"statistic(s) {repeated} asked more than once; each names one output column")
    return names


def valid_values(array: np.ndarray) -> np.ndarray:
    """The values a window's statistics reduce: unmasked ones, NaN left out (1-D, in row-major order)."""
    values = np.ma.compressed(array) if isinstance(array, np.ma.MaskedArray) else np.ravel(array)
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    return values


def reduce_window(array: np.ndarray, stats: Sequence[str]) -> dict[str, Any]:
    """The statistics ``stats`` of one window (a ``numpy.ma.MaskedArray``, or a plain array: all valid).

    Returns a mapping of each name to its value: ``count`` an int, ``mean``/``std``/
    ``median`` floats, ``min``/``max`` numpy scalars of the array's dtype; None for
    everything but ``count`` when no value is valid.
    """
    values = valid_values(array)
    count = int(values.size)
    out: dict[str, Any] = {}
    for name in stats:
        if name == "count":
            out[name] = count
        elif count == 0:
            out[name] = None
        elif name == "mean":
            out[name] = _finite_reduce(np.mean, values)
        elif name == "std":
            out[name] = _finite_reduce(np.std, values)
        elif name == "min":
            out[name] = values.min()
        elif name == "max":
            out[name] = values.max()
        elif name == "median":
            out[name] = _finite_reduce(np.median, values)
        else:
            raise StatisticError(f"unknown statistic {name!r}; the valid ones are {', '.join(STATISTICS)}")
    return out


def _finite_reduce(reduce: Any, values: np.ndarray) -> float:
    """``reduce`` (mean, std or median) of ``values`` in float64, exact even where the sum overflows.

    Values near float64's limits (``8.9e307`` twice) overflow a plain sum to inf; the
    reduction is then made on the values divided by their largest magnitude and scaled
    back, so a finite result is returned whenever the true one is finite.
    """
    as_float = values.astype(np.float64, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        result = float(reduce(as_float))
        if np.isfinite(result) or not np.isfinite(as_float).all():
            return result
        scale = float(np.max(np.abs(as_float)))
        return float(reduce(as_float / scale)) * scale


def value_type(dtype: np.dtype) -> np.dtype:
    """The dtype of ``min``/``max`` for pixels of ``dtype``: the dtype itself, unsigned widened to signed."""
    return _WIDER.get(np.dtype(dtype), np.dtype(dtype))


def stats_columns(windows: Sequence[Mapping[str, Any]], stats: Sequence[str], dtype: np.dtype) -> dict[str, pa.Array]:
    """One Arrow column per statistic over ``windows`` (results of :func:`reduce_window`), in ``stats`` order."""
    kinds = {"count": np.dtype("int64"), "mean": np.dtype("float64"), "std": np.dtype("float64"),
             "median": np.dtype("float64"), "min": value_type(dtype), "max": value_type(dtype)}
    columns = {}
    for name in stats:
        values = [w[name] for w in windows]
        missing = np.array([v is None for v in values], dtype=bool)
        data = np.array([0 if v is None else v for v in values], dtype=kinds[name])
        columns[name] = pa.array(data, mask=missing)
    return columns
