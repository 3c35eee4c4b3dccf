"""AOIs across the antimeridian and at the poles: read correctly, or refused with a clear error.

Documented behaviour: geometries are transformed vertex by vertex (as GeoPandas
``to_crs`` does). A lon/lat part spanning more than 180 degrees is refused (split
it at the antimeridian, or give unwrapped longitudes past 180); a lon/lat
geometry touching a pole is refused (give it in a polar CRS).
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.mask
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

import rasteret_core as rc


def _write(path, crs, transform, size=512):
    yy, xx = np.mgrid[0:size, 0:size]
    data = (1000 + 500 * np.sin(xx / 37.0) + 400 * np.cos(yy / 23.0)).astype("uint16")
    with rasterio.open(path, "w", driver="COG", width=size, height=size, count=1, dtype="uint16", crs=crs,
                       transform=transform, nodata=0, compress="deflate", predictor=2, blocksize=256) as dst:
        dst.write(data, 1)


def _collection(path, crs, footprint):
    item = {
        "type": "Feature", "id": path.stem, "geometry": shapely.geometry.mapping(footprint),
        "bbox": list(footprint.bounds), "properties": {"datetime": "2024-01-01T00:00:00Z", "proj:code": crs},
        "assets": {"data": {"href": str(path), "type": "image/tiff; application=geotiff", "roles": ["data"]}},
    }
    result = rc.engine.enrich_records(rc.engine.records_from_items([item]), settings=rc.Settings.from_env())
    assert not result.failures
    return rc.Collection(result.table)


def _oracle(path, geom_crs84):
    with rasterio.open(path) as src:
        tr = Transformer.from_crs("OGC:CRS84", src.crs, always_xy=True)
        shape = shapely.transform(geom_crs84, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        data, _ = rasterio.mask.mask(src, [shape], crop=True, filled=True, nodata=0)
    return data[0]


@pytest.fixture(scope="module")
def fiji(tmp_path_factory):
    """A UTM 60S raster straddling the antimeridian near 17 S."""
    path = tmp_path_factory.mktemp("am") / "fiji.tif"
    tr = Transformer.from_crs("OGC:CRS84", "EPSG:32760", always_xy=True)
    x0, y0 = tr.transform(179.8, -16.9)
    _write(path, "EPSG:32760", from_origin(round(x0), round(y0), 100.0, 100.0))
    footprint = shapely.MultiPolygon([shapely.box(179.79, -17.37, 180.0, -16.9), shapely.box(-180.0, -17.37, -179.72, -16.9)])
    return path, _collection(path, "EPSG:32760", footprint)


def test_a_geometry_split_at_the_antimeridian_reads_correctly(fiji):
    path, col = fiji
    aoi = shapely.MultiPolygon([shapely.box(179.9, -17.1, 180.0, -17.0), shapely.box(-180.0, -17.1, -179.9, -17.0)])
    got = col.get_numpy(aoi, ["data"])
    np.testing.assert_array_equal(got[0, 0], _oracle(path, aoi))
    assert got.shape[-1] > 150  # both sides of the antimeridian are in the window


def test_unwrapped_longitudes_past_180_read_the_same_pixels(fiji):
    path, col = fiji
    aoi = shapely.box(179.9, -17.1, 180.1, -17.0)
    np.testing.assert_array_equal(col.get_numpy(aoi, ["data"])[0, 0], _oracle(path, aoi))


def test_a_polygon_wrapping_the_long_way_round_is_refused(fiji):
    _, col = fiji
    naive = shapely.Polygon([(179.9, -17.1), (-179.9, -17.1), (-179.9, -17.0), (179.9, -17.0)])
    with pytest.raises(rc.GeometryError, match=r"antimeridian.*MultiPolygon"):
        col.get_numpy(naive, ["data"])


@pytest.fixture(scope="module")
def south_pole(tmp_path_factory):
    path = tmp_path_factory.mktemp("pole") / "pole.tif"
    _write(path, "EPSG:3031", from_origin(-25_600.0, 25_600.0, 100.0, 100.0))
    footprint = shapely.box(-180.0, -90.0, 180.0, -89.7)
    return path, _collection(path, "EPSG:3031", footprint)


def test_a_polar_aoi_in_the_polar_crs_reads_correctly(south_pole):
    path, col = south_pole
    aoi = shapely.Point(0, 0).buffer(8_000.5)
    got = col.get_numpy(aoi, ["data"], geometry_crs="EPSG:3031")
    with rasterio.open(path) as src:
        want, _ = rasterio.mask.mask(src, [aoi], crop=True, filled=True, nodata=0)
    np.testing.assert_array_equal(got[0, 0], want[0])


def test_a_lon_lat_aoi_near_the_pole_reads_vertex_wise(south_pole):
    path, col = south_pole
    aoi = shapely.box(10.0, -89.95, 40.0, -89.85)
    np.testing.assert_array_equal(col.get_numpy(aoi, ["data"])[0, 0], _oracle(path, aoi))


def test_a_lon_lat_aoi_touching_the_pole_is_refused(south_pole):
    _, col = south_pole
    with pytest.raises(rc.GeometryError, match=r"pole.*polar CRS"):
        col.get_numpy(shapely.box(-180.0, -90.0, 180.0, -89.9), ["data"])
