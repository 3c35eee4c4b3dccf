"""Write a small synthetic Sentinel-2 L2A-like archive of COGs and STAC items.

The archive stands in for Earth Search's ``sentinel-2-l2a`` collection in the demo,
tests and benchmarks: six scenes (two MGRS-like tiles on either side of the
12°E UTM zone boundary near 45.7°N, three dates each), six bands per scene (four
at 10 m, two at 20 m), uint16 reflectance with nodata 0, written by GDAL's COG
driver (DEFLATE, predictor 2, 512 px tiles, automatic overviews). The output is
deterministic for a given ``seed`` and ``scale``.

Layout under ``root``::

    cogs/sentinel-2-l2a/{zone}/{band}/{square}/{yyyy}/{m}/{item id}/{asset}.tif
    cogs/sentinel-2-l2a/.../{item id}/thumbnail.png
    cogs/sentinel-2-l2a/.../{item id}/granule_metadata.xml

Writing needs rasterio (``pip install "rasteret[demo]"``); it is imported only
when an archive is made.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, mapping
from shapely.geometry.polygon import orient

from . import DEMO_EXTRA

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["SampleArchive", "main", "make_sample_archive"]

logger = logging.getLogger(__name__)

COLLECTION_ID = "sentinel-2-l2a"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
TILE_SIZE = 512
BASE_SIZE_10M = 1536  # 3 x 3 tiles of 512 px at scale 1

_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
]


@dataclass(frozen=True, slots=True)
class _Band:
    key: str
    s2_name: str
    title: str
    resolution: int
    center_wavelength: float
    fwhm: float
    base: float  # mean digital number (reflectance * 1e4 + 1000)
    gain: float  # response to the landscape field (negative: anticorrelated)


_BANDS: tuple[_Band, ...] = (
    _Band("blue", "B02", "Blue (band 2) - 10m", 10, 0.49, 0.098, 1400.0, 0.6),
    _Band("green", "B03", "Green (band 3) - 10m", 10, 0.56, 0.045, 1600.0, 0.8),
    _Band("red", "B04", "Red (band 4) - 10m", 10, 0.665, 0.038, 1700.0, 1.0),
    _Band("nir", "B08", "NIR 1 (band 8) - 10m", 10, 0.842, 0.145, 3500.0, -0.8),
    _Band("swir16", "B11", "SWIR 1 (band 11) - 20m", 20, 1.61, 0.143, 2800.0, 0.9),
    _Band("swir22", "B12", "SWIR 2 (band 12) - 20m", 20, 2.19, 0.242, 2200.0, 1.0),
)


@dataclass(frozen=True, slots=True)
class _Tile:
    zone: int
    latitude_band: str
    grid_square: str
    epsg: int
    x0: float  # upper-left corner, metres in the tile's UTM zone
    y0: float
    # Valid data: a*u + b*v <= c, with (u, v) in [0, 1] from the upper-left
    # corner (u east, v south); valid_uv is the same area as a polygon.
    cut: tuple[float, float, float]
    valid_uv: tuple[tuple[float, float], ...]
    dates: tuple[str, ...]  # acquisition instants, UTC

    @property
    def mgrs(self) -> str:
        return f"{self.zone}{self.latitude_band}{self.grid_square}"


# 32TQR lies at the east edge of zone 32 (reaching just past 12°E), 33TTL at the
# west edge of zone 33; the two overlap by about 4 km. Each has a diagonal
# corner outside the swath (nodata), as edge tiles of a real orbit do.
_TILES: tuple[_Tile, ...] = (
    _Tile(
        32, "T", "QR", 32632, 717360.0, 5081220.0, (-1.0, 1.0, 0.45),
        ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.55, 1.0), (0.0, 0.45)),
        ("2024-01-05T10:17:41.024Z", "2024-02-14T10:17:39.512Z", "2024-03-05T10:17:40.778Z"),
    ),
    _Tile(
        33, "T", "TL", 32633, 262980.0, 5076360.0, (1.0, -1.0, 0.5),
        ((0.0, 0.0), (0.5, 0.0), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)),
        ("2024-01-10T10:07:49.131Z", "2024-02-09T10:07:51.006Z", "2024-03-10T10:07:48.642Z"),
    ),
)


@dataclass(frozen=True)
class SampleArchive:
    """A synthetic archive on local disk and the STAC records describing it.

    Attributes:
        root: Absolute folder holding ``cogs/``.
        cog_paths: Every COG written (six per scene), in item then band order.
        items: STAC items (Earth Search v1 ``sentinel-2-l2a`` shape) whose asset
            hrefs are local absolute paths under ``root``.
        collection: The STAC Collection for ``sentinel-2-l2a``.
    """

    root: Path
    cog_paths: list[Path]
    items: list[dict[str, Any]]
    collection: dict[str, Any]

    def items_with_href_base(self, base: str) -> list[dict[str, Any]]:
        """Return deep copies of the items with every asset href moved under ``base``.

        Args:
            base: Prefix replacing ``root``; a ``/`` is added when missing, so
                ``"s3://rasteret-sample"`` gives ``s3://rasteret-sample/cogs/...``.

        Returns:
            New item dicts; the archive's own items are left untouched.
        """
        prefix = base if base.endswith("/") else base + "/"
        items = copy.deepcopy(self.items)
        for item in items:
            for asset in item["assets"].values():
                rel = Path(asset["href"]).relative_to(self.root).as_posix()
                asset["href"] = prefix + rel
        return items

    def write_items(self, path: str | os.PathLike[str], base: str | None = None) -> Path:
        """Write the items as one ItemCollection (GeoJSON FeatureCollection) file.

        Args:
            path: File to write (parents are created).
            base: When given, hrefs are rewritten as by :meth:`items_with_href_base`.

        Returns:
            The path written.
        """
        items = self.items if base is None else self.items_with_href_base(base)
        return _write_json(Path(path), {"type": "FeatureCollection", "features": items})

    def write_collection(self, path: str | os.PathLike[str]) -> Path:
        """Write the STAC Collection JSON file and return its path."""
        return _write_json(Path(path), self.collection)


def make_sample_archive(
    root: str | os.PathLike[str], *, scale: int = 1, seed: int = 0
) -> SampleArchive:
    """Write the synthetic archive under ``root`` and describe it in STAC.

    Args:
        root: Output folder (created; existing files of the same names are
            overwritten).
        scale: Multiplies the image size: 10 m bands are ``1536 * scale`` pixels
            square, 20 m bands ``768 * scale``. Pixel sizes stay 10 m and 20 m.
        seed: Seed for every random choice; the same seed gives the same bytes.

    Returns:
        The archive with local hrefs.

    Raises:
        ImportError: rasterio is not installed.
        ValueError: ``scale`` is smaller than 1.
    """
    rasterio = _import_rasterio()
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    root_path = Path(root).resolve()
    cog_paths: list[Path] = []
    items: list[dict[str, Any]] = []
    # GDAL writes (it releases the GIL) overlap the next scene's numpy work; at most
    # two scenes of pixels are held at once.
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sample-cog") as executor:
        for tile_index, tile in enumerate(_TILES):
            landscape = _landscape_params(seed, tile_index)
            for date_index, when in enumerate(tile.dates):
                rng = np.random.default_rng([seed, tile_index, date_index])
                item, paths, writes = _write_scene(
                    rasterio, root_path, tile, when, date_index, scale, landscape, rng, executor
                )
                for future in pending:
                    future.result()
                pending = writes
                items.append(item)
                cog_paths.extend(paths)
                logger.debug("wrote scene %s", item["id"])
        for future in pending:
            future.result()
    return SampleArchive(
        root=root_path, cog_paths=cog_paths, items=items, collection=_collection(items)
    )


# --------------------------------------------------------------------------- scenes


def _import_rasterio() -> ModuleType:
    try:
        import rasterio
    except ImportError as exc:
        raise ImportError(
            f"Writing the sample archive needs rasterio: {DEMO_EXTRA}"
        ) from exc
    module: ModuleType = rasterio  # rasterio ships no type information: Any
    return module


def _write_scene(
    rasterio: ModuleType,
    root: Path,
    tile: _Tile,
    when: str,
    date_index: int,
    scale: int,
    landscape: dict[str, np.ndarray],
    rng: np.random.Generator,
    executor: ThreadPoolExecutor,
) -> tuple[dict[str, Any], list[Path], list[Future[None]]]:
    """Compute one scene's bands, queue their COG writes, write its side files.

    Returns:
        The STAC item, the COG paths and the pending writes.
    """
    from rasterio.transform import Affine

    dt = datetime.fromisoformat(when)
    platform = "sentinel-2b" if (date_index + tile.zone) % 2 else "sentinel-2a"
    item_id = f"S2{platform[-1].upper()}_{tile.mgrs}_{dt:%Y%m%d}_0_L2A"
    rel_dir = (
        f"cogs/{COLLECTION_ID}/{tile.zone}/{tile.latitude_band}/{tile.grid_square}"
        f"/{dt.year}/{dt.month}/{item_id}"
    )
    scene_dir = root / rel_dir
    scene_dir.mkdir(parents=True, exist_ok=True)

    cloud_cover = round(float(rng.uniform(0.0, 60.0)), 6)
    clouds = _cloud_params(rng, scale, cloud_cover)
    extent = BASE_SIZE_10M * 10.0 * scale  # metres, both axes

    assets: dict[str, dict[str, Any]] = {}
    paths: list[Path] = []
    rgb: dict[str, np.ndarray] = {}
    nodata_fraction = 0.0
    grids: dict[int, _Grid] = {}
    writes: list[Future[None]] = []
    for band_index, band in enumerate(_BANDS):
        size = int(extent // band.resolution)
        transform = Affine(band.resolution, 0.0, tile.x0, 0.0, -band.resolution, tile.y0)
        if band.resolution not in grids:
            grids[band.resolution] = _grid(tile, band.resolution, size, landscape, clouds, date_index)
        grid = grids[band.resolution]
        data = _band_pixels(band, band_index, grid, date_index, rng)
        if band.key == "red":
            nodata_fraction = 1.0 - float(grid.valid.mean())
        if band.key in ("red", "green", "blue"):
            rgb[band.key] = data
        path = scene_dir / f"{band.key}.tif"
        writes.append(executor.submit(_write_cog, rasterio, path, data, tile.epsg, transform))
        paths.append(path)
        assets[band.key] = _band_asset(path, band, size, transform)

    thumb = scene_dir / "thumbnail.png"
    thumb.write_bytes(_png_rgb(_quicklook(rgb)))
    assets["thumbnail"] = {
        "href": str(thumb),
        "type": "image/png",
        "title": "Thumbnail image",
        "roles": ["thumbnail"],
    }
    meta = scene_dir / "granule_metadata.xml"
    meta.write_text(_granule_xml(item_id, tile, when, scale), encoding="utf-8")
    assets["granule_metadata"] = {
        "href": str(meta),
        "type": "application/xml",
        "roles": ["metadata"],
    }

    geometry, bbox = _footprint(tile, extent)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": list(_STAC_EXTENSIONS),
        "id": item_id,
        "collection": COLLECTION_ID,
        "geometry": geometry,
        "bbox": bbox,
        "properties": {
            "datetime": when,
            "created": (dt + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "updated": (dt + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "platform": platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "gsd": 10,
            "eo:cloud_cover": cloud_cover,
            "proj:epsg": tile.epsg,
            "proj:code": f"EPSG:{tile.epsg}",
            "mgrs:utm_zone": tile.zone,
            "mgrs:latitude_band": tile.latitude_band,
            "mgrs:grid_square": tile.grid_square,
            "grid:code": f"MGRS-{tile.mgrs}",
            "view:sun_azimuth": round(160.0 + 5.0 * date_index + float(rng.uniform(0, 1)), 6),
            "view:sun_elevation": round(22.0 + 9.0 * date_index + float(rng.uniform(0, 1)), 6),
            "s2:processing_baseline": "05.10",
            "s2:product_type": "S2MSI2A",
            "s2:nodata_pixel_percentage": round(100.0 * nodata_fraction, 6),
            "s2:degraded_msi_data_percentage": 0.0,
            "s2:high_proba_clouds_percentage": round(cloud_cover * 0.6, 6),
            "s2:medium_proba_clouds_percentage": round(cloud_cover * 0.3, 6),
            "s2:thin_cirrus_percentage": round(cloud_cover * 0.1, 6),
            "s2:product_uri": f"S2{platform[-1].upper()}_MSIL2A_{dt:%Y%m%dT%H%M%S}"
            f"_N0510_R065_T{tile.mgrs}_{dt:%Y%m%d}T120000.SAFE",
            "s2:granule_id": f"S2{platform[-1].upper()}_OPER_MSI_L2A_TL_{dt:%Y%m%d}"
            f"T120000_A0{35000 + date_index}_T{tile.mgrs}_N05.10",
            "s2:datatake_id": f"GS2{platform[-1].upper()}_{dt:%Y%m%dT%H%M%S}_0{35000 + date_index}_N05.10",
            "s2:datatake_type": "INS-NOBS",
            "earthsearch:s3_path": f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{tile.zone}"
            f"/{tile.latitude_band}/{tile.grid_square}/{dt.year}/{dt.month}/{item_id}",
        },
        "links": [],
        "assets": assets,
    }
    return item, paths, writes


def _write_cog(
    rasterio: ModuleType, path: Path, data: np.ndarray, epsg: int, transform: Any
) -> None:
    """Write one single-band uint16 COG (DEFLATE, predictor 2, 512 px tiles, overviews)."""
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint16",
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=0,
        compress="DEFLATE",
        level=1,  # the noise hardly compresses better at 6, and 1 is ~35% faster
        predictor=2,
        blocksize=TILE_SIZE,
        overviews="AUTO",
        overview_resampling="average",
        num_threads="ALL_CPUS",
    ) as dst:
        dst.write(data, 1)


def _band_asset(
    path: Path, band: _Band, size: int, transform: Any
) -> dict[str, Any]:
    return {
        "href": str(path),
        "type": COG_MEDIA_TYPE,
        "title": band.title,
        "eo:bands": [
            {
                "name": band.s2_name,
                "common_name": band.key,
                "center_wavelength": band.center_wavelength,
                "full_width_half_max": band.fwhm,
            }
        ],
        "gsd": band.resolution,
        "proj:shape": [size, size],
        "proj:transform": [transform.a, transform.b, transform.c, transform.d, transform.e, transform.f],
        "raster:bands": [
            {
                "nodata": 0,
                "data_type": "uint16",
                "bits_per_sample": 15,
                "spatial_resolution": band.resolution,
                "scale": 0.0001,
                "offset": -0.1,
            }
        ],
        "roles": ["data", "reflectance"],
    }


# ------------------------------------------------------------------------- pixels


def _landscape_params(seed: int, tile_index: int) -> dict[str, np.ndarray]:
    """Draw the smooth field shared by every band and date of one tile."""
    rng = np.random.default_rng([seed, tile_index, 999])
    n_waves, n_blobs = 3, 5
    extent = BASE_SIZE_10M * 10.0
    return {
        "kx": rng.uniform(-1, 1, n_waves) * 2 * np.pi / rng.uniform(3000, 12000, n_waves),
        "ky": rng.uniform(-1, 1, n_waves) * 2 * np.pi / rng.uniform(3000, 12000, n_waves),
        "phase": rng.uniform(0, 2 * np.pi, n_waves),
        "wave_amp": rng.uniform(0.3, 0.6, n_waves),
        "cx": rng.uniform(0, extent, n_blobs),
        "cy": rng.uniform(0, extent, n_blobs),
        "sigma": rng.uniform(800, 3000, n_blobs),
        "blob_amp": rng.uniform(-1.0, 1.0, n_blobs),
    }


def _cloud_params(rng: np.random.Generator, scale: int, cloud_cover: float) -> dict[str, np.ndarray]:
    """Draw bright gaussian clouds, one per 12 % of cloud cover."""
    n = int(cloud_cover // 12)
    extent = BASE_SIZE_10M * 10.0 * scale
    return {
        "cx": rng.uniform(0, extent, n),
        "cy": rng.uniform(0, extent, n),
        "sigma": rng.uniform(600, 2000, n),
    }


@dataclass(frozen=True, slots=True)
class _Grid:
    """Per-scene fields on one band grid, shared by the bands of that resolution."""

    field: np.ndarray  # smooth landscape, float32, roughly in [-2, 2]
    cloud: np.ndarray  # cloud brightness to add, float32 digital numbers
    valid: np.ndarray  # bool, pixel centre inside the swath


def _grid(
    tile: _Tile,
    resolution: int,
    size: int,
    landscape: dict[str, np.ndarray],
    clouds: dict[str, np.ndarray],
    date_index: int,
) -> _Grid:
    # Pixel centres as offsets (metres) from the tile's upper-left corner,
    # x east and y south; the same ground gives the same field at 10 m and 20 m.
    offsets = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * np.float32(resolution)
    x = offsets + np.float32(250.0 * date_index)  # fields drift a little between dates
    y = offsets
    field = np.zeros((size, size), dtype=np.float32)
    for kx, ky, phase, amp in zip(
        landscape["kx"], landscape["ky"], landscape["phase"], landscape["wave_amp"], strict=True
    ):
        ax = (np.float32(kx) * x + np.float32(phase)).astype(np.float32)
        by = (np.float32(ky) * y).astype(np.float32)
        # sin(a + b) as two outer products: cheaper than a full-size sin.
        a_sin, a_cos = np.float32(amp) * np.sin(ax), np.float32(amp) * np.cos(ax)
        field += np.outer(np.cos(by), a_sin)
        field += np.outer(np.sin(by), a_cos)
    for cx, cy, sigma, amp in zip(
        landscape["cx"], landscape["cy"], landscape["sigma"], landscape["blob_amp"], strict=True
    ):
        field += _blob(x, y, cx, cy, sigma, amp)
    cloud = np.zeros((size, size), dtype=np.float32)
    for cx, cy, sigma in zip(clouds["cx"], clouds["cy"], clouds["sigma"], strict=True):
        cloud += _blob(offsets, y, cx, cy, sigma, 5000.0)
    return _Grid(field=field, cloud=cloud, valid=_valid_mask(tile, size))


def _band_pixels(
    band: _Band, band_index: int, grid: _Grid, date_index: int, rng: np.random.Generator
) -> np.ndarray:
    """Return the uint16 pixels of one band: landscape, clouds, noise, nodata 0."""
    # vegetation greens up from January to March
    season = 1.0 + 0.08 * (date_index - 1) if band.gain < 0 else 1.0 - 0.04 * (date_index - 1)
    level = band.base * season
    values = rng.standard_normal(grid.field.shape, dtype=np.float32)
    values *= np.float32(0.015 * band.base * (1 + 0.1 * band_index))
    values += grid.field * np.float32(level * 0.25 * band.gain)
    values += grid.cloud
    values += np.float32(level)
    np.clip(values, 1.0, 10000.0, out=values)
    data = np.rint(values, out=values).astype(np.uint16)
    data[~grid.valid] = 0
    return data


def _blob(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, sigma: float, amp: float
) -> np.ndarray:
    """Return ``amp`` times a gaussian bump as a ``(len(y), len(x))`` float32 array."""
    gx = (amp * np.exp(-((x - cx) ** 2) / (2 * sigma**2))).astype(np.float32)
    gy = np.exp(-((y - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    return np.outer(gy, gx)


def _valid_mask(tile: _Tile, size: int) -> np.ndarray:
    """Pixels whose centre lies inside the tile's valid-data polygon."""
    centres = (np.arange(size) + 0.5) / size
    a, b, c = tile.cut
    return (a * centres[None, :] + b * centres[:, None]) <= c


def _footprint(tile: _Tile, extent: float) -> tuple[dict[str, Any], list[float]]:
    """Return the valid-data footprint in CRS84 (GeoJSON) and its bbox."""
    ring = [(tile.x0 + u * extent, tile.y0 - v * extent) for u, v in tile.valid_uv]
    native = shapely.segmentize(Polygon(ring), max_segment_length=extent / 24)
    to_lonlat = Transformer.from_crs(f"EPSG:{tile.epsg}", "OGC:CRS84", always_xy=True)
    xs, ys = to_lonlat.transform(*np.asarray(native.exterior.coords).T)
    lonlat = orient(Polygon(np.round(np.column_stack([xs, ys]), 8)), sign=1.0)
    return mapping(lonlat), [round(float(b), 8) for b in lonlat.bounds]


def _quicklook(rgb: dict[str, np.ndarray], size: int = 64) -> np.ndarray:
    """Return a ``(size, size, 3)`` uint8 true-colour preview."""
    stack = []
    for key in ("red", "green", "blue"):
        band = rgb[key]
        step = band.shape[0] // size
        small = band[: step * size : step, : step * size : step].astype(np.float32)
        stack.append(np.clip((small - 1000.0) / 2500.0 * 255.0, 0, 255))
    return np.stack(stack, axis=-1).astype(np.uint8)


def _png_rgb(pixels: np.ndarray) -> bytes:
    """Encode an ``(h, w, 3)`` uint8 array as a PNG file."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _granule_xml(item_id: str, tile: _Tile, when: str, scale: int) -> str:
    sizes = "\n".join(
        f'      <Size resolution="{r}"><NROWS>{BASE_SIZE_10M * 10 * scale // r}</NROWS>'
        f"<NCOLS>{BASE_SIZE_10M * 10 * scale // r}</NCOLS></Size>"
        for r in (10, 20)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<n1:Level-2A_Tile_ID>\n"
        "  <n1:General_Info>\n"
        f"    <TILE_ID>{item_id}</TILE_ID>\n"
        f"    <SENSING_TIME>{when}</SENSING_TIME>\n"
        "  </n1:General_Info>\n"
        "  <n1:Geometric_Info>\n"
        "    <Tile_Geocoding>\n"
        f"      <HORIZONTAL_CS_CODE>EPSG:{tile.epsg}</HORIZONTAL_CS_CODE>\n"
        f"{sizes}\n"
        f"      <Geoposition><ULX>{tile.x0:.0f}</ULX><ULY>{tile.y0:.0f}</ULY></Geoposition>\n"
        "    </Tile_Geocoding>\n"
        "  </n1:Geometric_Info>\n"
        "</n1:Level-2A_Tile_ID>\n"
    )


# --------------------------------------------------------------------- collection


def _collection(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    boxes = np.array([item["bbox"] for item in items])
    times = sorted(item["properties"]["datetime"] for item in items)
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": COLLECTION_ID,
        "title": "Sentinel-2 Level-2A (synthetic Rasteret sample)",
        "description": "Synthetic Sentinel-2 L2A-like scenes written by "
        "rasteret_demo.archive for the demo, tests and benchmarks; not real imagery.",
        "keywords": ["sentinel", "earth observation", "esa", "synthetic"],
        "license": "proprietary",
        "providers": [{"name": "Rasteret sample generator", "roles": ["producer"]}],
        "extent": {
            "spatial": {
                "bbox": [
                    [
                        float(boxes[:, 0].min()),
                        float(boxes[:, 1].min()),
                        float(boxes[:, 2].max()),
                        float(boxes[:, 3].max()),
                    ]
                ]
            },
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "summaries": {
            "platform": sorted({item["properties"]["platform"] for item in items}),
            "constellation": ["sentinel-2"],
            "instruments": ["msi"],
            "gsd": [10, 20],
            "proj:epsg": sorted({item["properties"]["proj:epsg"] for item in items}),
        },
        "links": [],
    }


def _write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Write a sample archive plus ``items.json`` and ``collection.json`` into OUTDIR."""
    parser = argparse.ArgumentParser(
        prog="python -m rasteret_demo.archive", description=main.__doc__
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--scale", type=int, default=1, help="image size multiplier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--href-base",
        default=None,
        help="rewrite asset hrefs to BASE + path relative to OUTDIR, e.g. s3://bucket/",
    )
    args = parser.parse_args(argv)
    archive = make_sample_archive(args.outdir, scale=args.scale, seed=args.seed)
    items_path = archive.write_items(archive.root / "items.json", base=args.href_base)
    collection_path = archive.write_collection(archive.root / "collection.json")
    print(f"wrote {len(archive.cog_paths)} COGs in {len(archive.items)} scenes under {archive.root}")
    print(f"items:      {items_path}")
    print(f"collection: {collection_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
