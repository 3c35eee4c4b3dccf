"""Bands of multi-band assets (RGBIR, pixel- or band-interleaved) selected by number, against rasterio."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.mask
import shapely
from rasterio.transform import from_origin

import rasteret_core as rc


@pytest.fixture(scope="module", params=["pixel", "band"])
def naip_like(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("mb") / f"naip-{request.param}.tif"
    yy, xx = np.mgrid[0:700, 0:600]
    data = np.stack([(60 + 40 * np.sin(xx / (9.0 + b)) + 30 * np.cos(yy / (7.0 + b))).astype("uint8") for b in range(4)])
    with rasterio.open(path, "w", driver="GTiff", width=600, height=700, count=4, dtype="uint8", crs="EPSG:26910",
                       transform=from_origin(500_000.0, 4_200_000.0, 0.6, 0.6), tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate", interleave=request.param, photometric="minisblack") as dst:
        dst.write(data)
    lon_lat = shapely.box(-123.0, 37.94, -122.99, 37.946)
    item = {"type": "Feature", "id": path.stem, "geometry": shapely.geometry.mapping(lon_lat),
            "properties": {"datetime": "2022-06-01T00:00:00Z", "proj:epsg": 26910},
            "assets": {"image": {"href": str(path), "type": "image/tiff; application=geotiff", "roles": ["data"]}}}
    table = rc.engine.records_from_items([item], bands={"red": "image:1", "nir": "image:4", "green": "image:2"})
    enriched = rc.engine.enrich_records(table, settings=rc.Settings.from_env())
    assert enriched.parsed == 1  # one header for the three bands of one file
    return path, rc.Collection(enriched.table)


def test_bands_of_one_file_read_by_number(naip_like):
    path, col = naip_like
    aoi = shapely.box(500_050.3, 4_199_700.1, 500_200.7, 4_199_950.9)
    got = col.get_numpy(aoi, ["nir", "red", "green"], geometry_crs="EPSG:26910")
    with rasterio.open(path) as src:
        want, _ = rasterio.mask.mask(src, [aoi], crop=True, filled=True, nodata=0, indexes=[4, 1, 2])
    np.testing.assert_array_equal(got[0], want)
    assert len({got[0, i].tobytes() for i in range(3)}) == 3
