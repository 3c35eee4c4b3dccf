"""A synthetic collection with generated (not parsed) COG headers, for benchmarks.

Records are Sentinel-2-like scenes: ``tiles`` footprints of 1 x 1 degree spread
over the land latitudes, revisited ``n // tiles`` times over two years. Every
record has ten bands (four at 10 m, 10980 px, six at 20 m, 5490 px; 1024 px
tiles; overviews halving down to one tile), so each row carries 984 tiles' offsets
and byte counts, as a real Earth Search ``sentinel-2-l2a`` record does. The rows
have the collection schema of :mod:`rasteret_core.table.schema` and are built with
vectorised Arrow arrays, so 100,000 records take seconds, not minutes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import shapely

from rasteret_core.table.schema import ASSET_TYPE, BBOX_TYPE, HEADER_TYPE, IMAGE_TYPE, collection_schema

__all__ = ["BANDS", "synthetic_batches", "synthetic_table"]

BANDS: dict[str, int] = {
    "B02": 10980, "B03": 10980, "B04": 10980, "B08": 10980,
    "B05": 5490, "B06": 5490, "B07": 5490, "B8A": 5490, "B11": 5490, "B12": 5490,
}
"""Band name -> full-resolution width (and height) in pixels."""

TILE = 1024
START = datetime(2023, 1, 1, tzinfo=UTC)
DAYS = 730


def _ifd_sizes(size: int) -> list[int]:
    sizes = [size]
    while sizes[-1] > TILE:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def _list(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def _asset(band: str, size: int, ids: np.ndarray, epsg: np.ndarray, origin: np.ndarray,
           rng: np.random.Generator) -> pa.StructArray:
    """One band's assets: href, media type, roles and a generated header per record."""
    n = len(ids)
    sizes = _ifd_sizes(size)
    counts_per_ifd = [math.ceil(s / TILE) ** 2 for s in sizes]
    tiles = sum(counts_per_ifd)
    k = len(sizes)
    byte_counts = rng.integers(200_000, 1_500_000, size=(n, tiles), dtype=np.int64)
    offsets = 16_384 + np.cumsum(byte_counts, axis=1) - byte_counts
    per_image = np.tile(np.array(counts_per_ifd), n)
    list_offsets = np.concatenate([[0], np.cumsum(per_image)])

    def rep(values: list) -> np.ndarray:
        return np.tile(np.array(values), n)

    widths = rep(sizes).astype(np.int32)
    images = pa.StructArray.from_arrays(
        [
            pa.array(widths), pa.array(widths),
            pa.array(np.full(n * k, TILE, np.int32)), pa.array(np.full(n * k, TILE, np.int32)),
            pa.array(np.ones(n * k, bool)), pa.array(np.ones(n * k, np.int32)),
            pa.array(np.full(n * k, 16, np.int32)), pa.array(np.ones(n * k, np.int32)),
            pa.array(np.full(n * k, "uint16")), pa.array(np.ones(n * k, np.int32)),
            pa.array(np.full(n * k, 8, np.int32)), pa.array(np.full(n * k, 2, np.int32)),
            pa.array(np.ones(n * k, np.int32)), pa.array(rep([0] + [1] * (k - 1)).astype(np.int32)),
            _list(list_offsets, pa.array(offsets.ravel())), _list(list_offsets, pa.array(byte_counts.ravel())),
            pa.nulls(n * k, pa.binary()), pa.nulls(n * k, pa.list_(pa.int32())),
        ],
        fields=list(IMAGE_TYPE),
    )
    res = 109800.0 / size
    transform = np.column_stack([np.full(n, res), np.zeros(n), origin[:, 0], np.zeros(n), np.full(n, -res), origin[:, 1]])
    total = offsets[:, -1] + byte_counts[:, -1]
    header = pa.StructArray.from_arrays(
        [
            pa.array(np.full(n, "<")), pa.array(np.zeros(n, bool)),
            pa.array([f"EPSG:{e}" for e in epsg]), _list(np.arange(n + 1) * 6, pa.array(transform.ravel())),
            pa.array(np.zeros(n)), pa.array(np.zeros(n, bool)), pa.nulls(n, pa.string()),
            pa.array(np.full(n, "epsg")), pa.nulls(n, pa.list_(pa.string())),
            pa.array(total), pa.array([f'"{i}-{band}"' for i in ids]),
            pa.array(np.full(n, "2024-06-01T00:00:00+00:00")),
            _list(np.arange(n + 1) * k, images),
        ],
        fields=list(HEADER_TYPE),
    )
    hrefs = [f"s3://synthetic-cogs/{i}/{band}.tif" for i in ids]
    return pa.StructArray.from_arrays(
        [
            pa.array(np.full(n, band)), pa.array(hrefs),
            pa.array(np.full(n, "image/tiff; application=geotiff; profile=cloud-optimized")),
            pa.array([["data"]] * n, pa.list_(pa.string())), pa.nulls(n, pa.int32()), header,
        ],
        fields=list(ASSET_TYPE),
    )


def synthetic_batches(n: int = 100_000, *, tiles: int = 1000, batch: int = 10_000, seed: int = 0,
                      shuffle: bool = True) -> Iterator[pa.Table]:
    """Yield the collection in tables of ``batch`` rows (in acquisition order unless ``shuffle``).

    Args:
        n: Records in all.
        tiles: Distinct footprints; each is revisited about ``n / tiles`` times.
        batch: Rows per yielded table.
        seed: Seed for every random choice.
        shuffle: Yield the rows in random order, as a STAC search returns pages.
    """
    rng = np.random.default_rng(seed)
    lon0 = rng.uniform(-179.0, 178.0, tiles)
    lat0 = rng.uniform(-56.0, 70.0, tiles)
    tile_of = np.arange(n) % tiles
    when = START.timestamp() + np.sort(rng.uniform(0, DAYS * 86400, n))
    order = rng.permutation(n) if shuffle else np.arange(n)
    schema = collection_schema(list(BANDS))
    for start in range(0, n, batch):
        idx = order[start:start + batch]
        t = tile_of[idx]
        xmin, ymin = lon0[t], lat0[t]
        xmax, ymax = xmin + 1.0, ymin + 1.0
        ids = np.array([f"S2X_T{ti:04d}_{i:07d}" for ti, i in zip(t, idx, strict=True)])
        zone = np.floor((xmin + 180) / 6).astype(int) + 1
        epsg = np.where(ymin >= 0, 32600, 32700) + zone
        origin = np.column_stack([np.full(len(idx), 600000.0), np.full(len(idx), 5000040.0)])
        columns: dict[str, pa.Array] = {
            "id": pa.array(ids),
            "collection": pa.array(np.full(len(idx), "synthetic-s2")),
            "datetime": pa.array((when[idx] * 1e6).astype("int64"), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "geometry": pa.array(shapely.to_wkb(shapely.box(xmin, ymin, xmax, ymax)), pa.binary()),
            "bbox": pa.StructArray.from_arrays([pa.array(v) for v in (xmin, ymin, xmax, ymax)], fields=list(BBOX_TYPE)),
            "crs": pa.array([f"EPSG:{e}" for e in epsg]),
            "proj:epsg": pa.array(epsg.astype(np.int32)),
            "eo:cloud_cover": pa.array(rng.uniform(0, 100, len(idx))),
            "split": pa.nulls(len(idx), pa.string()),
            "properties": pa.array(np.full(len(idx), "{}")),
        }
        asset_arrays = [_asset(b, s, ids, epsg, origin, rng) for b, s in BANDS.items()]
        columns["assets"] = pa.StructArray.from_arrays(asset_arrays, fields=list(schema.field("assets").type))
        yield pa.Table.from_pydict(columns, schema=schema)


def synthetic_table(n: int = 100_000, **kwargs: object) -> pa.Table:
    """The whole synthetic collection as one table (see :func:`synthetic_batches`)."""
    return pa.concat_tables(synthetic_batches(n, **kwargs))  # type: ignore[arg-type]
