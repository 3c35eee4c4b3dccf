"""Inputs normalised at the edge: geometries, CRSs, settings, table geometry metadata."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import shapely

from rasteret_core import ConfigError, GeometryError, Settings
from rasteret_core.geo.geometry import CRS84, geometry_table_crs, reproject, to_crs, to_geometry

SQUARE = shapely.box(11.0, 45.0, 11.1, 45.1)


@pytest.mark.parametrize(
    "value",
    [SQUARE, shapely.to_wkb(SQUARE), shapely.geometry.mapping(SQUARE),
     {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(SQUARE)},
     (11.0, 45.0, 11.1, 45.1), SQUARE.wkt, shapely.to_geojson(SQUARE)],
    ids=["shapely", "wkb", "geojson", "feature", "bbox", "wkt", "geojson-text"],
)
def test_every_geometry_form_gives_the_same_shape(value):
    assert to_geometry(value).equals(SQUARE)


@pytest.mark.parametrize(
    ("value", "message"),
    [((1, 2, 0, 3), "min < max"), (object(), "cannot read a geometry"), (shapely.Polygon(), "empty"),
     (shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]), "invalid.*Self-intersection")],
)
def test_bad_geometries_say_what_is_wrong(value, message):
    with pytest.raises(GeometryError, match=message):
        to_geometry(value)


def test_default_crs_is_crs84_and_bad_crs_is_an_error():
    assert to_crs(None) == CRS84
    with pytest.raises(GeometryError, match="unknown CRS"):
        to_crs("EPSG:999999")


def test_projected_coordinates_given_as_lon_lat_are_refused():
    with pytest.raises(GeometryError, match="geometry_crs="):
        reproject(shapely.box(700_000, 5_000_000, 701_000, 5_001_000), CRS84, to_crs("EPSG:32632"))


def test_geoparquet_metadata_gives_the_crs():
    table = pa.table({"geometry": [shapely.to_wkb(SQUARE)]})
    assert geometry_table_crs(table.schema, "geometry") is None
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
    assert geometry_table_crs(table.replace_schema_metadata({"geo": json.dumps(geo)}).schema, "geometry") == CRS84
    geo["columns"]["geometry"]["crs"] = to_crs("EPSG:32632").to_json_dict()
    crs = geometry_table_crs(table.replace_schema_metadata({"geo": json.dumps(geo)}).schema, "geometry")
    assert crs.to_epsg() == 32632


def test_settings_read_from_env_and_hide_secrets():
    env = {"RASTERET_MAX_CONCURRENCY": "7", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
           "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "very-secret"}
    s = Settings.from_env(env)
    assert s.max_concurrency == 7 and s.aws_endpoint_url == "http://127.0.0.1:9000"
    assert "very-secret" not in repr(s)
    opts = s.delta_storage_options()
    assert opts["AWS_ALLOW_HTTP"] == "true" and opts["AWS_SECRET_ACCESS_KEY"] == "very-secret"
    with pytest.raises(ConfigError, match="RASTERET_MAX_CONCURRENCY"):
        Settings.from_env({"RASTERET_MAX_CONCURRENCY": "many"})
    with pytest.raises(ConfigError, match="at least 1"):
        Settings.from_env({"RASTERET_MAX_CONCURRENCY": "0"})
