"""TorchGeo datasets over a collection: training chips read through Rasteret's planner and fetcher.

:class:`CollectionDataset` is a real :class:`torchgeo.datasets.GeoDataset`: TorchGeo's
samplers (``RandomGeoSampler``, ``GridGeoSampler``, ...) draw boxes from its ``index``
and ``res``, and a ``torch.utils.data.DataLoader`` with worker processes reads them.
Pixels come from the COGs through the one planner and the one fetcher (no GDAL);
records on another CRS are warped onto the dataset's CRS by Rasteret's warper.

Tested with TorchGeo 0.8.1 (Python 3.11, torch 2.14.1); written to TorchGeo 0.9 and
0.10 (Python 3.12+) as well, whose samples differ (see :meth:`CollectionDataset.__getitem__`).
Needs ``pip install "rasteret[torchgeo]"``; the rest of ``rasteret_core`` never imports
torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS, Transformer

try:  # torchgeo first: without it, fail before torch's few seconds of import
    from torchgeo.datasets import GeoDataset  # noqa: I001

    import pandas as pd
    import torch
    from geopandas import GeoDataFrame
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f'to_torchgeo_dataset needs torch and torchgeo: pip install "rasteret[torchgeo]" ({exc})'
    ) from exc

from .errors import GeometryError, NoRecordsError, PlanningError
from .geo.geometry import to_crs
from .geo.warp import default_resolution, plan_target_grid
from .read.grid import ReadOptions, Resampling, TargetGrid, _record_order, asset_of, check_bands, read_grid
from .settings import Settings

if TYPE_CHECKING:
    from .collection import Collection

__all__ = ["CollectionDataset"]

# Columns a chip read needs; nothing else crosses into DataLoader workers.
_COLUMNS = ("id", "datetime", "geometry", "bbox", "assets")
# TorchGeo 0.9 turned ``bounds`` into a tensor and added ``transform``; 0.8 has neither.
_TENSOR_BOUNDS = hasattr(GeoDataset, "_slice_to_tensor")


class CollectionDataset(GeoDataset):
    """A collection's records as a TorchGeo ``GeoDataset``, read through Rasteret.

    The contract TorchGeo's samplers and datasets rely on:

    - ``index``: a ``GeoDataFrame`` with one row per record (columns ``id`` and
      ``record``, the row in :attr:`records`), indexed by a closed ``IntervalIndex``
      named ``datetime`` (``[datetime, datetime]``, naive UTC; a record without a
      datetime spans ``[Timestamp.min, Timestamp.max]``). Its geometry is the box of
      the record's raster extent (every band asked) in the dataset CRS; for a record on
      another CRS, its extent densified as ``rasterio.warp.transform_bounds`` does and
      widened to multiples of ``res``, so that chips stepped from it share one pixel grid.
    - ``crs``: a ``pyproj.CRS`` (the index's); ``res``: ``(xres, yres)`` in its units.
    - ``dataset[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax]`` reads every record whose
      interval meets ``[tmin, tmax]`` and whose box meets the query's, on the grid
      ``from_origin(xmin, ymax, xres, yres)`` of ``round((xmax - xmin) / xres)`` by
      ``round((ymax - ymin) / yres)`` pixels (as ``rasterio.merge`` sizes it).

    The pickled dataset is its records (an Arrow table of the columns a read needs),
    its index, settings and options: nothing that holds a connection or a thread.
    Each DataLoader worker opens its own I/O runtime on its first read.
    """

    def __init__(
        self,
        collection: Collection,
        bands: str | Sequence[str],
        *,
        crs: Any | None = None,
        res: float | tuple[float, float] | None = None,
        time: str | tuple[Any, Any] | None = None,
        split: str | Sequence[str] | None = None,
        where: pc.Expression | None = None,
        resampling: Resampling = "nearest",
        is_image: bool = True,
        dtype: torch.dtype | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Select the records to serve and index them; see :meth:`Collection.to_torchgeo_dataset`."""
        self.bands = check_bands(collection.bands, bands)
        view = collection if where is None else collection.where(where)
        if time is not None or split is not None:
            view = view.subset(datetime=time, split=split)
        table = view.to_arrow()
        if table.num_rows == 0:
            raise NoRecordsError(
                f"no record of {collection!r} is selected (time={time!r}, split={split!r}, where={where!r})"
            )
        self.records = _project(table, self.bands)
        self.settings: Settings = collection.settings
        self.uri, self.version = collection.uri, collection.version
        self.options = ReadOptions(resampling=resampling)  # validates resampling
        self.is_image = is_image
        self._dtype = dtype
        self.transforms = transforms
        rows = self.records.to_pylist()
        order = sorted(range(len(rows)), key=lambda i: _record_order(rows[i]))
        headers = [[asset_of(row, band)[1] for band in self.bands] for row in rows]
        for row, row_headers in zip(rows, headers, strict=True):
            for band, header in zip(self.bands, row_headers, strict=True):
                if header.crs is None or header.transform is None:
                    raise GeometryError(f"record {row['id']} band {band!r} ({header.uri}) has no georeferencing")
        dst = to_crs(crs) if crs is not None else CRS.from_user_input(headers[order[0]][0].crs)
        # the default resolution: the first record already on the dataset CRS keeps its pixel size
        ref = next((headers[i][0] for i in order if CRS.from_user_input(headers[i][0].crs) == dst),
                   headers[order[0]][0])
        self._res = _resolution(res, ref, dst)
        self.index = _index(rows, headers, order, dst, self._res)

    # ------------------------------------------------------------------ TorchGeo contract
    @property
    def dtype(self) -> torch.dtype:
        """The tensor dtype of samples: ``float32`` for images, ``long`` for masks (as TorchGeo's
        ``RasterDataset``), unless ``dtype=`` said otherwise.
        """
        if self._dtype is not None:
            return self._dtype
        return torch.float32 if self.is_image else torch.long

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """Read the chip of ``query`` (``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tstep]``, dataset CRS).

        Records meeting the query are warped onto its grid (``resampling``) and merged
        into one ``[band, y, x]`` image, the first valid pixel winning in datetime,
        then id, order (as ``rasterio.merge``'s ``first``); pixels no record covers
        validly hold the first record's fill (its nodata, else 0).

        Returns:
            TorchGeo 0.8: ``{"crs": pyproj.CRS, "bounds": query, "image": tensor}``.
            TorchGeo 0.9+: ``{"bounds": 9-float tensor, "transform": 9-float affine
            tensor, "image": tensor}``. ``image`` is ``[band, y, x]`` in :attr:`dtype`;
            with ``is_image=False`` the key is ``mask`` and the band axis is squeezed.
            ``transforms``, if given, is applied last.

        Raises:
            IndexError: no record meets the query (TorchGeo's contract).
        """
        x, y, t = self._disambiguate_slice(query)
        interval = pd.Interval(_naive_utc(t.start), _naive_utc(t.stop), closed="both")
        hits = self.index.iloc[self.index.index.overlaps(interval)]
        hits = hits.iloc[:: t.step or 1]
        hits = hits.cx[x.start : x.stop, y.start : y.stop]
        if hits.empty:
            raise IndexError(f"query {query} meets no record of the dataset (bounds {self.bounds})")
        xres, yres = float(x.step), float(y.step)
        width, height = round((x.stop - x.start) / xres), round((y.stop - y.start) / yres)
        if width < 1 or height < 1:
            raise PlanningError(f"query {query} holds no whole pixel at resolution {(xres, yres)}")
        transform = (xres, 0.0, float(x.start), 0.0, -yres, float(y.stop))
        box = shapely.box(x.start, y.stop - height * yres, x.start + width * xres, y.stop)
        grid = TargetGrid(self.crs, transform, width, height, box)
        records = self.records.take(pa.array(hits["record"].to_numpy(), pa.int64()))
        options = ReadOptions(resampling=self.options.resampling, masked=True)
        stack = read_grid(records, self.bands, grid, settings=self.settings, options=options)
        data = _merge_first(cast("np.ma.MaskedArray", stack.data))  # read with masked=True
        tensor = torch.from_numpy(_torch_compatible(data)).to(self.dtype)
        sample: dict[str, Any]
        if _TENSOR_BOUNDS:
            # only torchgeo versions with _slice_to_tensor (_TENSOR_BOUNDS); unused-ignore: those that declare it
            sample = {"bounds": self._slice_to_tensor(query),  # type: ignore[attr-defined, unused-ignore]
                      "transform": torch.tensor([*transform, 0.0, 0.0, 1.0])}
        else:
            sample = {"crs": self.crs, "bounds": query}
        if self.is_image:
            sample["image"] = tensor
        else:
            sample["mask"] = tensor.squeeze(-3)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """What crosses into a DataLoader worker: records (Arrow), index, settings, options."""
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # the worker's I/O runtime starts on its first read

    def __repr__(self) -> str:
        where = f"{self.uri} v{self.version}" if self.uri else "in memory"
        return (f"<CollectionDataset {where}: {len(self)} records, bands {self.bands}, "
                f"crs {self.crs.to_string()}, res {self.res}>")


# ---------------------------------------------------------------------- helpers
def _project(table: pa.Table, bands: Sequence[str]) -> pa.Table:
    """The columns a chip read needs, with ``assets`` cut to the bands asked."""
    assets = table["assets"].combine_chunks()
    kept = pa.StructArray.from_arrays([assets.field(b) for b in bands], names=list(bands),
                                      mask=assets.is_null() if assets.null_count else None)
    out = table.select([c for c in _COLUMNS if c != "assets"])
    return out.append_column("assets", kept)


def _resolution(res: float | tuple[float, float] | None, first: Any, dst: CRS) -> tuple[float, float]:
    """``res`` as ``(xres, yres)``; by default ``first``'s pixel size (carried over to ``dst`` as GDAL
    suggests when ``first`` is on another CRS).
    """
    if res is not None:
        if np.ndim(res) == 0:
            xres = yres = float(cast("float", res))
        else:
            pair = cast("tuple[float, float]", res)
            xres, yres = float(pair[0]), float(pair[1])
        if not (xres > 0 and yres > 0):
            raise PlanningError(f"res must be positive, got {res!r}")
        return xres, yres
    a, b, _, d, e, _ = first.transform
    if CRS.from_user_input(first.crs) == dst and b == 0 and d == 0:
        return abs(a), abs(e)
    r = default_resolution(first.transform, first.crs, dst, first.image.width, first.image.height)
    return r, r


def _extent(header: Any, dst: CRS) -> tuple[float, float, float, float]:
    """A raster's extent in ``dst``: its corners' bounds, densified along the edges when warped."""
    a, b, c, d, e, f = header.transform
    w, h = header.image.width, header.image.height
    xs = [c + a * i + b * j for i, j in ((0, 0), (w, 0), (0, h), (w, h))]
    ys = [f + d * i + e * j for i, j in ((0, 0), (w, 0), (0, h), (w, h))]
    bounds = (min(xs), min(ys), max(xs), max(ys))
    src = CRS.from_user_input(header.crs)
    if src == dst:
        return bounds
    try:
        out = Transformer.from_crs(src, dst, always_xy=True).transform_bounds(*bounds, densify_pts=21)
    except Exception as exc:  # pyproj raises its own ProjError family
        raise GeometryError(f"{header.uri}: its extent does not transform to {dst.to_string()}: {exc}") from exc
    if not all(np.isfinite(out)):
        raise GeometryError(f"{header.uri}: its extent does not transform to {dst.to_string()}")
    return tuple(float(v) for v in out)  # type: ignore[return-value]


def _index(rows: list[dict[str, Any]], headers: list[list[Any]], order: list[int], dst: CRS,
           res: tuple[float, float]) -> GeoDataFrame:
    """TorchGeo's index: a box per record (over every band's extent) in ``dst``, on a closed datetime interval.

    The box of a record on another CRS is widened to multiples of ``res`` (as ``gdalwarp -tap``),
    so samplers, which step from a box's corner in whole pixels, cut chips on one pixel grid.
    """
    boxes, intervals = [], []
    for i in order:
        extents = [_extent(header, dst) for header in headers[i]]
        bounds = (min(e[0] for e in extents), min(e[1] for e in extents),
                  max(e[2] for e in extents), max(e[3] for e in extents))
        if any(CRS.from_user_input(header.crs) != dst for header in headers[i]):
            (a, _, c, _, e, f), width, height = plan_target_grid(bounds, crs=dst, resolution=res)
            bounds = (c, f + e * height, c + a * width, f)
        boxes.append(shapely.box(*bounds))
        dt = rows[i]["datetime"]
        if dt is None:
            intervals.append((pd.Timestamp.min, pd.Timestamp.max))
        else:
            when = _naive_utc(dt)
            intervals.append((when, when))
    index = pd.IntervalIndex.from_tuples(intervals, closed="both", name="datetime")
    data = {"id": [rows[i]["id"] for i in order], "record": np.asarray(order, dtype=np.int64)}
    return GeoDataFrame(data, index=index, geometry=boxes, crs=dst)


def _naive_utc(value: Any) -> pd.Timestamp:
    """A query time as the index holds it: naive UTC (an aware time is converted)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def _merge_first(stack: np.ma.MaskedArray) -> np.ndarray:
    """``[record, band, y, x]`` to ``[band, y, x]``: each pixel from the first record valid there."""
    out = np.array(stack.data[0])
    taken = ~np.ma.getmaskarray(stack[0])
    for r in range(1, stack.shape[0]):
        fresh = ~np.ma.getmaskarray(stack[r]) & ~taken
        out[fresh] = stack.data[r][fresh]
        taken |= fresh
    return out


def _torch_compatible(array: np.ndarray) -> np.ndarray:
    """Widen the unsigned types torch lacks (as TorchGeo's ``array_to_tensor``), contiguous."""
    if array.dtype == np.uint16:
        array = array.astype(np.int32)
    elif array.dtype == np.uint32:
        array = array.astype(np.int64)
    return np.ascontiguousarray(array)
