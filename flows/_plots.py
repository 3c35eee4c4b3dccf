"""Pictures for the command line: an AOI quicklook, a time series, footprints over time (needs ``rasteret[plot]``).

Each function takes plain values (arrays, datetimes, shapely geometries), draws one
figure with matplotlib's Agg backend (no display needed) and writes a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely

PLOT_EXTRA = 'pip install "rasteret[plot]"'

__all__ = ["PLOT_EXTRA", "Series", "footprints_png", "quicklook_png", "require_matplotlib", "stretch",
           "timeseries_png"]


def require_matplotlib() -> Any:
    """The ``matplotlib.pyplot`` module on the Agg backend.

    Raises:
        ImportError: matplotlib is missing; the message names the extra to install.
    """
    try:
        import matplotlib as mpl
    except ImportError as exc:
        raise ImportError(f"pictures need matplotlib: {PLOT_EXTRA}") from exc
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a time-series plot: a label and a value per datetime (None: no valid pixel)."""

    label: str
    datetimes: Sequence[datetime]
    values: Sequence[float | None]


def stretch(band: np.ma.MaskedArray, low: float = 2.0, high: float = 98.0) -> np.ma.MaskedArray:
    """``band`` scaled to 0..1 between its ``low`` and ``high`` percentiles of valid pixels (clipped)."""
    valid = band.compressed().astype("float64")
    if valid.size == 0:
        return np.ma.masked_all(band.shape, dtype="float64")
    lo, hi = np.percentile(valid, [low, high])
    scale = hi - lo if hi > lo else 1.0
    return np.ma.clip((band.astype("float64") - lo) / scale, 0.0, 1.0)


def _axis_labels(crs: str | None) -> tuple[str, str, str]:
    """X and y axis labels and a short name for ``crs`` (its authority code, else its name)."""
    if not crs:
        return "x", "y", "unknown CRS"
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    code = parsed.to_authority()
    name = f"{code[0]}:{code[1]}" if code else parsed.name
    unit = parsed.axis_info[0].unit_name if parsed.axis_info else ""
    if parsed.is_geographic:
        return f"longitude ({unit})", f"latitude ({unit})", name
    return f"easting ({unit})", f"northing ({unit})", name


def quicklook_png(path: str | Path, data: np.ma.MaskedArray, *, bands: Sequence[str],
                  transform: Sequence[float], crs: str | None, title: str,
                  outlines: Sequence[shapely.Geometry] = (), labels: Sequence[str] = ()) -> Path:
    """Write a PNG of one record's pixels ``[band, y, x]`` (masked where invalid or outside the AOI).

    Three bands are drawn as true colour (red, green, blue in that order), each stretched
    between its 2nd and 98th percentile; one band with a colour bar of its values (2-98 %
    range). Axes are in ``crs`` units (``transform``: rasterio-ordered affine of pixel
    (0, 0), north-up); ``outlines`` (in the same CRS) are drawn over the pixels, each
    named by its entry of ``labels`` (if given).
    """
    plt = require_matplotlib()
    if data.ndim != 3 or data.shape[0] not in (1, 3):
        raise ValueError(f"quicklook draws one or three bands, got an array of shape {data.shape}")
    height, width = data.shape[1:]
    a, _, c, _, e, f = transform[:6]
    extent = (c, c + a * width, f + e * height, f)
    xlabel, ylabel, crs_name = _axis_labels(crs)
    aspect = height / max(width, 1)
    fig, ax = plt.subplots(figsize=(7.5, max(3.5, min(9.0, 6.0 * aspect + 1.2))), layout="constrained")
    if data.shape[0] == 3:
        rgb = np.ma.dstack([stretch(data[i]) for i in range(3)])
        alpha = (~np.ma.getmaskarray(data).any(axis=0)).astype("float64")
        image = np.dstack([rgb.filled(0.0), alpha])
        ax.imshow(image, extent=extent, interpolation="nearest")
        subtitle = f"true colour: {', '.join(bands)} (2-98 % stretch)"
    else:
        band = np.ma.masked_invalid(data[0].astype("float64"))
        valid = band.compressed()
        vmin, vmax = (np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0))
        shown = ax.imshow(band, extent=extent, interpolation="nearest", cmap="viridis", vmin=vmin, vmax=vmax)
        fig.colorbar(shown, ax=ax, label=f"{bands[0]} (2-98 % range)", shrink=0.85)
        subtitle = f"band {bands[0]}"
    for i, outline in enumerate(outlines):
        for ring in _rings(outline):
            xs, ys = ring.xy
            ax.plot(xs, ys, color="#ff2d7a", linewidth=1.2)
        if i < len(labels):
            _, _, right, top = shapely.bounds(outline).tolist()
            ax.annotate(labels[i], (right, top), xytext=(3, 3), textcoords="offset points", fontsize=8,
                        color="#ff2d7a", bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.75,
                                               "linewidth": 0})
    ax.set_xlabel(f"{xlabel} - {crs_name}")
    ax.set_ylabel(ylabel)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_title(f"{title}\n{subtitle}; {width} x {height} px", fontsize=10)
    ax.set_facecolor("#f2f2f2")
    out = Path(path)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out


def _label_repeats(ax: Any, footprints: Sequence[shapely.Geometry], datetimes: Sequence[datetime]) -> None:
    """Label each distinct footprint (up to 40) with how many records share it and their first and last date."""
    shared: dict[bytes, list[int]] = {}
    for i, geometry in enumerate(footprints):
        shared.setdefault(shapely.to_wkb(shapely.normalize(geometry)), []).append(i)
    if len(shared) > 40:
        return
    for indices in shared.values():
        when = sorted(datetimes[i] for i in indices)
        span = f"{when[0]:%Y-%m-%d}" if len(when) == 1 else f"{when[0]:%Y-%m-%d}\n..{when[-1]:%Y-%m-%d}"
        spot = shapely.point_on_surface(footprints[indices[0]])
        ax.annotate(f"{len(indices)} record{'s' if len(indices) > 1 else ''}\n{span}", (spot.x, spot.y),
                    ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "alpha": 0.8, "linewidth": 0})


def _rings(geometry: shapely.Geometry) -> list[Any]:
    """The exterior and interior rings of every polygon of ``geometry`` (points buffered slightly: none)."""
    rings = []
    for part in shapely.get_parts(geometry):
        if part.geom_type == "Polygon":
            rings += [part.exterior, *part.interiors]
        elif part.geom_type in ("LineString", "LinearRing"):
            rings.append(part)
    return rings


def _date_axis(axis: Any, *, maxticks: int = 10) -> None:
    """Dates on ``axis``: concise tick labels, the year once at the end."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=maxticks)
    formatter = mdates.ConciseDateFormatter(locator)
    formatter.offset_formats = ["", "%Y", "%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%d %H:%M"]
    axis.set_major_locator(locator)
    axis.set_major_formatter(formatter)


def timeseries_png(path: str | Path, series: Sequence[Series], *, title: str, ylabel: str) -> Path:
    """Write a PNG of one or more value-per-date lines (dates on the x axis, concise date labels)."""
    plt = require_matplotlib()

    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    for one in series:
        points = sorted((t, v) for t, v in zip(one.datetimes, one.values, strict=True) if v is not None)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", linewidth=1.5, markersize=5, label=one.label)
    _date_axis(ax.xaxis)
    ax.set_xlabel("acquisition date (UTC)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    out = Path(path)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out


def footprints_png(path: str | Path, footprints: Sequence[shapely.Geometry], datetimes: Sequence[datetime],
                   groups: Sequence[str], *, title: str) -> Path:
    """Write a PNG of record footprints (lon/lat) coloured by date, beside a timeline of the records by group.

    ``groups`` labels each record's row on the timeline (e.g. its CRS or tile).
    """
    plt = require_matplotlib()
    import matplotlib.dates as mdates
    from matplotlib.collections import PolyCollection

    fig, (ax_map, ax_time) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained",
                                          gridspec_kw={"width_ratios": [1.1, 1]})
    when = mdates.date2num(list(datetimes)) if datetimes else np.zeros(0)
    norm = plt.Normalize(vmin=when.min(), vmax=when.max() if when.max() > when.min() else when.min() + 1) \
        if when.size else plt.Normalize(0, 1)
    cmap = plt.get_cmap("viridis")
    polygons, colours = [], []
    for geometry, t in zip(footprints, when, strict=True):
        for part in shapely.get_parts(geometry):
            if part.geom_type == "Polygon":
                polygons.append(np.asarray(part.exterior.coords)[:, :2])
                colours.append(cmap(norm(t)))
    ax_map.add_collection(PolyCollection(polygons, facecolors=[(*c[:3], 0.12) for c in colours],
                                         edgecolors=colours, linewidths=1.2))
    if polygons:
        xy = np.concatenate(polygons)
        pad_x, pad_y = max(np.ptp(xy[:, 0]) * 0.05, 1e-3), max(np.ptp(xy[:, 1]) * 0.05, 1e-3)
        ax_map.set_xlim(xy[:, 0].min() - pad_x, xy[:, 0].max() + pad_x)
        ax_map.set_ylim(xy[:, 1].min() - pad_y, xy[:, 1].max() + pad_y)
        ax_map.set_aspect(1 / np.cos(np.radians(xy[:, 1].mean())))
    _label_repeats(ax_map, footprints, list(datetimes))
    ax_map.set_xlabel("longitude (degree) - OGC:CRS84")
    ax_map.set_ylabel("latitude (degree)")
    ax_map.set_title("footprints, coloured by date", fontsize=10)
    ax_map.grid(True, alpha=0.3)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_map, shrink=0.85)
    bar_locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    bar.ax.yaxis.set_major_locator(bar_locator)
    bar.ax.yaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))

    names = sorted(set(groups))
    rows = [names.index(g) for g in groups]
    ax_time.scatter(list(datetimes), rows, c=[cmap(norm(t)) for t in when], s=40, edgecolors="black",
                    linewidths=0.4, zorder=3)
    ax_time.set_yticks(range(len(names)), names)
    ax_time.set_ylim(-0.6, len(names) - 0.4)
    _date_axis(ax_time.xaxis, maxticks=8)
    ax_time.set_xlabel("acquisition date (UTC)")
    ax_time.set_title(f"{len(footprints)} records over time", fontsize=10)
    ax_time.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    out = Path(path)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out
