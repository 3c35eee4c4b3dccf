"""What GDAL cannot place is refused at build, naming the file; partial builds keep the rest; corrupt tiles say where."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import rasterio.mask
import shapely
from rasterio.control import GroundControlPoint
from rasterio.transform import from_origin

import rasteret_core as rc
from rasteret_core.errors import CollectionError, DecodeError

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

DATA = (np.arange(64 * 48).reshape(48, 64) % 251).astype("uint8")


def _write(path: Path, **georef: object) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=64, height=48, count=1, dtype="uint8", tiled=True,
                       blockxsize=16, blockysize=16, compress="deflate", **georef) as dst:
        dst.write(DATA, 1)
    return str(path)


@pytest.fixture
def files(tmp_path):
    gcps = [GroundControlPoint(row=r, col=c, x=11.0 + c * 1e-4, y=46.0 - r * 1e-4) for r, c in
            ((0, 0), (0, 63), (47, 0), (47, 63))]
    good = _write(tmp_path / "good.tif", crs="EPSG:32632", transform=from_origin(650000, 5100000, 10, 10))
    gcp_only = tmp_path / "gcps.tif"
    _write(gcp_only)
    with rasterio.open(gcp_only, "r+") as dst:
        dst.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    bare = _write(tmp_path / "bare.tif")
    return {"good": good, "gcps": str(gcp_only), "bare": bare}


def _records(files: dict[str, str]) -> pa.Table:
    footprint = shapely.to_wkb(shapely.box(10.9, 45.9, 11.1, 46.1))
    return pa.table({"id": list(files), "datetime": ["2024-05-01T00:00:00Z"] * len(files),
                     "geometry": [footprint] * len(files), "image_href": list(files.values())})


def test_unplaceable_files_are_refused_naming_them(files, tmp_path):
    with rasterio.open(files["gcps"]) as src:
        assert src.gcps[0] and src.transform.is_identity  # GDAL has GCPs only
    with pytest.raises(CollectionError) as info:
        rc.build_from_table(_records(files), uri=str(tmp_path / "col"))
    message = str(info.value)
    assert "2 asset header(s)" in message
    for name in ("gcps.tif", "bare.tif"):
        assert name in message
    assert "the raster has no geotransform (GCPs only, or no georeferencing)" in message
    assert "georeference it first" in message
    assert not (tmp_path / "col").exists()  # nothing committed


def test_partial_builds_keep_the_rest_and_say_so(files, tmp_path):
    col = rc.build_from_table(_records(files), uri=str(tmp_path / "col"), partial=True)
    assert col.to_arrow()["id"].to_pylist() == ["good"]
    meta = col.history()[0]["metadata"]
    assert meta["records_skipped"] == 2
    assert {s["id"] for s in meta["skipped"]} == {"gcps", "bare"}
    window = shapely.box(650000 + 103, 5100000 - 303, 650000 + 407, 5100000 - 53)
    with rasterio.open(files["good"]) as src:
        want, _ = rasterio.mask.mask(src, [window], crop=True, filled=True)
    np.testing.assert_array_equal(col.get_numpy(window, ["image"], geometry_crs="EPSG:32632")[0, 0], want[0])
    in_memory = rc.build_from_table(_records(files), partial=True)
    assert len(in_memory) == 1


def test_a_corrupt_tile_names_the_object_the_tile_and_its_offset(files, tmp_path):
    col = rc.build_from_table(_records({"good": files["good"]}))
    header = col.to_arrow()["assets"][0].as_py()["image"]["header"]["images"][0]
    offset, length = header["tile_offsets"][5], header["tile_byte_counts"][5]
    path = Path(files["good"])
    before = path.stat()
    raw = bytearray(path.read_bytes())
    raw[offset : offset + length] = b"\xff" * length
    path.write_bytes(bytes(raw))  # same size and time: only the tile's bytes changed, as bit rot does
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    tile5 = shapely.box(650000 + 16 * 10 + 5, 5100000 - 16 * 10 - 100, 650000 + 16 * 10 + 100, 5100000 - 16 * 10 - 5)
    with pytest.raises(DecodeError) as info:
        col.get_numpy(tile5, ["image"], geometry_crs="EPSG:32632")
    assert info.value.tile == 5 and info.value.offset == offset
    assert f"tile 5 at byte {offset}" in str(info.value) and files["good"] in str(info.value)
