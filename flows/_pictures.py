"""Reads behind the pictures: a record's pixels in an AOI, per-record AOI means and point values (``_plots`` draws).

Shared by the ``quicklook``/``timeseries`` commands and ``rasteret demo``; everything
goes through the public ``Collection`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

import rasteret_core as rc

from ._plots import Series, quicklook_png, timeseries_png

__all__ = ["aoi_means", "crs_name", "point_values", "write_quicklook", "write_timeseries"]


def write_quicklook(col: rc.Collection, area: shapely.Geometry, crs: Any, bands: list[str], out: str | Path, *,
                    record: str | None = None, overview: int | None = None,
                    outlines: Sequence[shapely.Geometry] | None = None, labels: Sequence[str] = ()) -> dict[str, Any]:
    """Draw one record's ``bands`` within ``area`` (CRS ``crs``) to the PNG ``out``; return what was drawn.

    ``outlines`` (CRS ``crs``; default the area itself) are drawn over the pixels, named by ``labels``.

    The record is ``record`` (an id), else the latest record meeting the area that has
    a valid pixel in it (newest first; the last one tried when none has).

    Raises:
        NoRecordsError: no record (or not ``record``) meets the area.
        BandError: a band is unknown.
    """
    near = col.subset(geometries=area, geometry_crs=crs)
    if record is not None:
        near = near.subset(ids=[record])
    if not len(near):
        what = f"record {record!r}" if record else "no record"
        raise rc.NoRecordsError(
            f"{what} of {col.uri} v{col.version} meets the AOI (bounds {tuple(round(v, 6) for v in shapely.bounds(area).tolist())} "
            f"in {crs_name(crs)}); `rasteret info` shows the collection's extent")
    rows = sorted(near.to_arrow().select(["id", "datetime"]).to_pylist(), key=lambda r: (r["datetime"], r["id"]),
                  reverse=True)
    result = None
    for row in rows:
        result = near.subset(ids=[row["id"]]).read_numpy(
            area, bands, options=rc.ReadOptions(masked=True, overview=overview), geometry_crs=crs)
        if np.ma.count(result.data) > 0:
            break
    assert result is not None
    data = result.data[0]
    when = result.datetimes[0]
    title = f"{result.record_ids[0]}  {when:%Y-%m-%d %H:%M} UTC" if when else result.record_ids[0]
    written = quicklook_png(out, data, bands=bands, transform=result.transform or (1, 0, 0, 0, -1, 0),
                            crs=result.crs, title=title,
                            outlines=[to_crs(g, crs, result.crs) for g in (outlines or [area])], labels=labels)
    return {"png": str(written), "record": result.record_ids[0], "datetime": when, "bands": bands,
            "crs": crs_name(result.crs), "width": int(data.shape[2]), "height": int(data.shape[1]),
            "valid_pixels": int(np.ma.count(data[0])), "requests": result.stats.requests,
            "bytes": result.stats.bytes}


def aoi_means(col: rc.Collection, aois: pa.Table, crs: Any, bands: list[str], labels: list[str], *,
              geometry_column: str = "geometry") -> list[Series]:
    """The mean of each AOI's valid pixels per record, as one :class:`Series` per AOI and band.

    Lines are labelled by AOI (when there are several) and band (when there are several).
    A record without a valid pixel in an AOI has a None value there.
    """
    table = aois.append_column("__aoi__", pa.array(range(aois.num_rows)))
    stats, _ = col.get_table(table, bands, geometry_crs=crs, geometry_column=geometry_column, stats=["count", "mean"])
    rows = stats.select(["__aoi__", "band", "datetime", "mean"]).to_pylist()
    series = []
    for i in range(aois.num_rows):
        for band in bands:
            mine = sorted((r["datetime"], r["mean"]) for r in rows if r["__aoi__"] == i and r["band"] == band)
            if not mine:
                continue
            parts = [labels[i] if aois.num_rows > 1 else "", band if len(bands) > 1 or aois.num_rows == 1 else ""]
            series.append(Series(" ".join(p for p in parts if p), [t for t, _ in mine], [v for _, v in mine]))
    return series


def point_values(col: rc.Collection, x: float, y: float, crs: Any, bands: list[str]) -> list[Series]:
    """The value of the pixel holding the point (x, y) (CRS ``crs``) per record, one :class:`Series` per band."""
    points = pa.table({"geometry": [shapely.to_wkb(shapely.Point(x, y))]})
    rows = col.sample_points(points, bands, geometry_crs=crs, masked=True).to_pylist()
    out = []
    for band in bands:
        mine = sorted((r["datetime"], r["value"]) for r in rows if r["band"] == band)
        out.append(Series(band, [t for t, _ in mine], [v for _, v in mine]))
    return out


def write_timeseries(series: list[Series], out: str | Path, *, where: str, source: str, ylabel: str) -> dict[str, Any]:
    """Draw ``series`` to the PNG ``out`` (title: bands, ``where``, ``source``); return what was drawn.

    Raises:
        NoRecordsError: no series has a valid value.
    """
    dates = {t for s in series for t, v in zip(s.datetimes, s.values, strict=True) if v is not None}
    if not dates:
        raise rc.NoRecordsError(f"no record of {source} has a valid pixel at {where}")
    written = timeseries_png(out, series, title=f"{where}\n{len(dates)} dates from {source}", ylabel=ylabel)
    return {"png": str(written), "dates": len(dates), "series": [
        {"label": s.label, "points": [{"datetime": t, "value": v} for t, v in zip(s.datetimes, s.values, strict=True)]}
        for s in series]}


def to_crs(geometry: shapely.Geometry, src: Any, dst: str | None) -> shapely.Geometry:
    """``geometry`` carried from CRS ``src`` to ``dst`` (unchanged when ``dst`` is None)."""
    from pyproj import CRS, Transformer

    if dst is None:
        return geometry
    transformer = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)
    return shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def crs_name(crs: Any) -> str | None:
    """A CRS's authority code (``EPSG:32632``), else its name."""
    if crs is None:
        return None
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    code = parsed.to_authority()
    return f"{code[0]}:{code[1]}" if code else parsed.name
