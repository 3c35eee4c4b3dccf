"""The benchmark archive of ``make bench``: Sentinel-2-like COGs built once and cached under ``build/bench/``.

Every scene is one Sentinel-2 tile (EPSG:32632, 10 m pixels, ``size`` px square) revisited on
``scenes`` dates; each band is its own COG: uint16, DEFLATE + predictor 2, 1024 px tiles, no
overviews (every case reads full resolution), GDAL's COG driver, nodata 0. Pixels are a smooth
field plus 9 bits of noise, which DEFLATE packs to about 1.5 MB a tile, as real L2A reflectance.
Each (scene, band) gets its own seed, so no two files hold the same bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

X0, Y0, PIXEL = 600000.0, 5100000.0, 10.0  # upper-left corner in EPSG:32632
CRS = "EPSG:32632"
TILE = 1024
BANDS = ("B02", "B03", "B04", "B08")
COLLECTION = "bench-s2"


@dataclass(frozen=True, slots=True)
class Archive:
    """A built archive: its folder, scene ids, bands and the size of its images."""

    root: Path
    scenes: tuple[str, ...]
    bands: tuple[str, ...]
    size: int

    def path(self, scene: str, band: str) -> Path:
        """The local COG of one scene's band."""
        return self.root / scene / f"{band}.tif"

    def key(self, scene: str, band: str) -> str:
        """Its key in the bucket."""
        return f"{scene}/{band}.tif"

    def nbytes(self) -> int:
        """The archive's size on disk."""
        return sum(self.path(s, b).stat().st_size for s in self.scenes for b in self.bands)


def _write_cog(path: Path, size: int, seed: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    y = np.arange(size, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    phase = float(seed % 97)
    data = (1500 + 700 * np.sin((x + phase) / 611.0) * np.cos(y / 733.0)).astype(np.uint16)
    data += rng.integers(0, 512, (size, size), dtype=np.uint16)
    data[(x + (size - y)) < size * 0.05] = 0  # a corner outside the swath: nodata
    tmp = path.with_suffix(".part")
    with rasterio.open(tmp, "w", driver="COG", width=size, height=size, count=1, dtype="uint16", crs=CRS,
                       transform=from_origin(X0, Y0, PIXEL, PIXEL), nodata=0, compress="DEFLATE", predictor=2,
                       blocksize=TILE, overviews="NONE", num_threads=2) as dst:
        dst.write(data, 1)
    tmp.rename(path)


def build_archive(folder: Path, *, scenes: int, size: int, echo: bool = True) -> Archive:
    """Write the archive into ``folder`` (cached: files already there are kept)."""
    root = folder / f"s2-{size}px"
    archive = Archive(root, tuple(f"scene-{k:02d}" for k in range(scenes)), BANDS, size)
    todo = [(s, b) for s in archive.scenes for b in archive.bands if not archive.path(s, b).exists()]
    started = time.perf_counter()
    for n, (scene, band) in enumerate(todo, 1):
        archive.path(scene, band).parent.mkdir(parents=True, exist_ok=True)
        _write_cog(archive.path(scene, band), size, seed=1000 * int(scene.split("-")[1]) + BANDS.index(band))
        if echo:
            print(f"  archive: wrote {scene}/{band}.tif ({n}/{len(todo)}, {time.perf_counter() - started:.0f} s)",
                  flush=True)
    return archive


def footprint_crs84(size: int) -> dict[str, object]:
    """The scenes' footprint as a GeoJSON polygon in lon/lat (edges densified)."""
    import shapely
    from pyproj import Transformer

    to84 = Transformer.from_crs(CRS, "OGC:CRS84", always_xy=True)
    box = shapely.box(X0, Y0 - size * PIXEL, X0 + size * PIXEL, Y0).segmentize(500.0)
    return shapely.geometry.mapping(
        shapely.transform(box, lambda xy: np.column_stack(to84.transform(xy[:, 0], xy[:, 1]))))


def stac_items(archive: Archive, bucket: str) -> dict[str, object]:
    """An ItemCollection for the archive, hrefs ``s3://bucket/scene/band.tif``."""
    import shapely

    geometry = footprint_crs84(archive.size)
    bbox = list(shapely.geometry.shape(geometry).bounds)
    features = []
    for k, scene in enumerate(archive.scenes):
        features.append({
            "type": "Feature", "stac_version": "1.0.0", "id": scene, "collection": COLLECTION,
            "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
            "geometry": geometry, "bbox": bbox,
            "properties": {"datetime": f"2024-{1 + k // 28:02d}-{1 + k % 28:02d}T10:30:00Z", "proj:epsg": 32632,
                           "proj:code": CRS},
            "assets": {band: {"href": f"s3://{bucket}/{archive.key(scene, band)}", "roles": ["data"],
                              "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                              "proj:epsg": 32632}
                       for band in archive.bands},
            "links": [],
        })
    return {"type": "FeatureCollection", "features": features}


def write_items(archive: Archive, bucket: str, path: Path) -> Path:
    """Write :func:`stac_items` to ``path`` (for ``rustac serve``)."""
    path.write_text(json.dumps(stac_items(archive, bucket)))
    return path
