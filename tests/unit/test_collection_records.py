"""Records in: STAC items and record tables normalised to collection rows, digests, schema casts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS

import rasteret_core as rc
from rasteret_core.table.schema import RECORD_HASH, conform_table, geo_metadata, record_hashes
from rasteret_core.table.stac import cog_asset_keys, matches_query, native_crs, rewrite_href

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
UTM32 = CRS.from_epsg(32632)


def _item(i: int = 0, **props) -> dict:
    box = shapely.box(11.0 + i, 45.0, 11.5 + i, 45.5)
    return {
        "type": "Feature",
        "id": f"item-{i}",
        "collection": "test",
        "geometry": shapely.geometry.mapping(box),
        "bbox": list(box.bounds),
        "properties": {"datetime": f"2024-01-0{i + 1}T10:00:00Z", "eo:cloud_cover": 10.0 * i, **props},
        "assets": {
            "red": {"href": f"s3://b/{i}/red.tif", "type": COG, "roles": ["data"]},
            "nir": {"href": f"s3://b/{i}/nir.tif", "type": COG, "roles": ["data", "reflectance"]},
            "visual": {"href": f"s3://b/{i}/tci.tif", "type": COG, "roles": ["visual"]},
            "thumbnail": {"href": f"s3://b/{i}/t.png", "type": "image/png", "roles": ["thumbnail"]},
            "untyped": {"href": f"s3://b/{i}/dem.TIF"},
            "metadata": {"href": f"s3://b/{i}/m.xml", "type": "application/xml", "roles": ["metadata"]},
        },
    }


def test_cog_assets_are_picked_by_media_type_and_role():
    assert cog_asset_keys(_item()) == ["red", "nir", "untyped"]


@pytest.mark.parametrize(
    ("where", "props", "want"),
    [
        ("item", {"proj:epsg": 32632}, ("EPSG:32632", 32632)),
        ("item", {"proj:code": "EPSG:32633"}, ("EPSG:32633", 32633)),
        ("item", {"proj:code": "IAU_2015:30100"}, ("IAU_2015:30100", None)),
        ("item", {"proj:wkt2": UTM32.to_wkt()}, ("EPSG:32632", 32632)),
        ("item", {"proj:projjson": UTM32.to_json_dict()}, ("EPSG:32632", 32632)),
        ("asset", {"proj:code": "EPSG:32634"}, ("EPSG:32634", 32634)),
        ("item", {}, (None, None)),
    ],
    ids=["epsg", "code", "non-epsg-code", "wkt2", "projjson", "on-asset", "none"],
)
def test_native_crs_from_every_projection_form(where, props, want):
    item = _item()
    asset = dict(item["assets"]["red"])
    if where == "item":
        item["properties"].update(props)
    else:
        item["properties"]["proj:epsg"] = 32632
        asset.update(props)
    assert native_crs(item, asset) == want


def test_a_bad_wkt_is_a_source_error():
    with pytest.raises(rc.SourceError, match="proj:wkt2 is not a CRS"):
        native_crs({"id": "x", "properties": {"proj:wkt2": "PROJCRS[nonsense"}})


@pytest.mark.parametrize(
    ("query", "want"),
    [({"eo:cloud_cover": {"lt": 15}}, ["item-0", "item-1"]), ({"eo:cloud_cover": {"gte": 10, "lte": 20}},
     ["item-1", "item-2"]), ({"platform": {"eq": "s2b"}}, ["item-1"]), ({"platform": {"in": ["s2a", "s2c"]}},
     ["item-0", "item-2"]), ({"platform": {"startsWith": "s2"}}, ["item-0", "item-1", "item-2"]),
     ({"missing": {"gt": 1}}, []), ({"platform": "s2a"}, ["item-0"])],
)
def test_query_extension_applied_to_items(query, want):
    items = [_item(i, platform=p) for i, p in enumerate(["s2a", "s2b", "s2c"])]
    assert [i["id"] for i in items if matches_query(i, query)] == want


def test_unknown_query_operator_is_an_error():
    with pytest.raises(rc.SourceError, match="not one of"):
        matches_query(_item(), {"eo:cloud_cover": {"like": 1}})


def test_a_band_of_a_multi_band_asset_is_named_by_its_number():
    item = _item(0)
    item["assets"]["image"] = {"href": "s3://b/0/image.tif", "type": COG, "roles": ["data"]}
    table = rc.engine.records_from_items([item], bands={"red": "image:1", "nir": "image:4", "B04": "red"})
    assets = table.to_pylist()[0]["assets"]
    assert (assets["red"]["key"], assets["red"]["band_index"]) == ("image", 1)
    assert (assets["nir"]["key"], assets["nir"]["band_index"]) == ("image", 4)
    assert assets["B04"]["band_index"] is None
    with pytest.raises(rc.SourceError, match="start at 1"):
        rc.engine.records_from_items([item], bands={"x": "image:0"})


def test_href_rewrites_take_the_longest_prefix():
    rewrites = {"https://host/": "s3://a/", "https://host/data/": "s3://b/"}
    assert rewrite_href("https://host/data/x.tif", rewrites) == "s3://b/x.tif"
    assert rewrite_href("https://host/other/x.tif", rewrites) == "s3://a/other/x.tif"
    assert rewrite_href("s3://c/x.tif", rewrites) == "s3://c/x.tif"


def test_records_from_items_with_a_band_map_and_rewrites():
    items = [_item(i, **{"proj:epsg": 32632}) for i in range(2)]
    table = rc.engine.records_from_items(items, bands={"B04": "red", "B08": "nir"}, href_rewrites={"s3://b/": "s3://c/"})
    assert rc.Collection(table).bands == ["B04", "B08"]
    row = table.to_pylist()[1]
    assert row["assets"]["B04"] == {"key": "red", "href": "s3://c/1/red.tif", "type": COG, "roles": ["data"],
                                    "band_index": None, "header": None}
    assert row["crs"] == "EPSG:32632" and row["eo:cloud_cover"] == 10.0
    assert json.loads(row["properties"]) == {}


def _flat_table() -> pa.Table:
    boxes = [shapely.box(500_000 + 1000 * i, 5_000_000, 501_000 + 1000 * i, 5_001_000) for i in range(3)]
    return pa.table({
        "scene": ["a", "b", "c"],
        "when": pa.array(["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", None]),
        "footprint": shapely.to_wkb(boxes).tolist(),
        "crs": ["EPSG:32632"] * 3,
        "red_href": ["s3://b/a_red.tif", "s3://b/b_red.tif", "s3://b/c_red.tif"],
        "nir_href": ["s3://b/a_nir.tif", None, "s3://b/c_nir.tif"],
        "field_id": pa.array([7, 8, 9], pa.int16()),
    })


def test_a_flat_table_with_href_columns_and_a_column_map():
    source = _flat_table()
    table = rc.engine.records_from_table(source, column_map={"scene": "id", "when": "datetime", "footprint": "geometry"},
                                  geometry_crs="EPSG:32632")
    col = rc.Collection(table)
    assert col.bands == ["red", "nir"] and len(col) == 3
    rows = table.to_pylist()
    assert rows[1]["assets"]["nir"] is None and rows[0]["assets"]["red"]["href"] == "s3://b/a_red.tif"
    assert table.schema.field("field_id").type == pa.int16() and table["field_id"].to_pylist() == [7, 8, 9]
    assert rows[0]["crs"] == "EPSG:32632" and rows[2]["datetime"] is None
    lon, lat = shapely.from_wkb(rows[0]["geometry"]).centroid.coords[0]  # footprints now in lon/lat
    assert 8.9 < lon < 9.1 and 45.1 < lat < 45.2
    assert rows[0]["bbox"]["xmin"] == pytest.approx(shapely.from_wkb(rows[0]["geometry"]).bounds[0])


def test_a_flat_table_needs_hrefs_and_an_id():
    source = _flat_table().drop_columns(["red_href", "nir_href"])
    with pytest.raises(rc.SchemaError, match="href"):
        rc.engine.records_from_table(source, column_map={"scene": "id", "footprint": "geometry"}, geometry_crs=32632)
    with pytest.raises(rc.SchemaError, match="no id column"):
        rc.engine.records_from_table(_flat_table(), column_map={"footprint": "geometry"}, geometry_crs=32632)
    with pytest.raises(rc.SchemaError, match="lacks"):
        rc.engine.records_from_table(_flat_table(), column_map={"nope": "id", "footprint": "geometry"})


def _stac_geoparquet() -> pa.Table:
    """Items as stac-geoparquet lays them out: properties flattened, assets a struct, bbox a struct."""
    items = [_item(i, **{"proj:code": "EPSG:32632", "platform": "s2a"}) for i in range(2)]
    rows = []
    for item in items:
        xmin, ymin, xmax, ymax = item["bbox"]
        rows.append({
            "type": "Feature", "stac_version": "1.0.0", "id": item["id"], "collection": item["collection"],
            "geometry": shapely.to_wkb(shapely.geometry.shape(item["geometry"])),
            "bbox": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
            **dict(item["properties"].items()),
            "assets": {k: {"href": a["href"], "type": a.get("type"), "roles": a.get("roles")}
                       for k, a in item["assets"].items()},
        })
    return pa.Table.from_pylist(rows)


def test_a_stac_geoparquet_table_with_an_assets_struct():
    table = rc.engine.records_from_table(_stac_geoparquet())
    assert rc.Collection(table).bands == ["red", "nir", "untyped"]
    row = table.to_pylist()[0]
    assert row["crs"] == "EPSG:32632" and row["assets"]["nir"]["roles"] == ["data", "reflectance"]
    assert json.loads(row["properties"]) == {"platform": "s2a"}
    same = rc.engine.records_from_items([_item(i, **{"proj:code": "EPSG:32632", "platform": "s2a"}) for i in range(2)])
    assert record_hashes(table).equals(record_hashes(same))  # the same records, whichever way they came


def test_every_arrow_source_gives_the_same_records():
    import polars as pl

    table = _stac_geoparquet()
    want = record_hashes(rc.engine.records_from_table(table))
    for source in (table.to_reader(), pl.from_arrow(table), table.to_batches()[0]):
        assert record_hashes(rc.engine.records_from_table(source)).equals(want)


def test_a_collection_table_from_another_engine_is_cast_back():
    import polars as pl

    table = rc.engine.records_from_items([_item(i) for i in range(3)], bands={"red": "red"})
    back = pl.from_arrow(table).to_arrow()
    assert back.schema.field("id").type != pa.string()  # polars hands back large or view strings
    assert conform_table(back).equals(table)
    assert rc.engine.records_from_table(back).equals(table)


def test_the_digest_ignores_header_contents_but_not_their_presence_or_anything_else():
    table = rc.engine.records_from_items([_item(i) for i in range(2)], bands={"red": "red"})
    base = record_hashes(table).to_pylist()
    assert base == record_hashes(table.add_column(0, RECORD_HASH, pa.array(["x", "y"]))).to_pylist()
    rows = table.to_pylist()
    rows[0]["assets"]["red"]["header"] = _header()
    with_header = pa.Table.from_pylist(rows, schema=table.schema)
    assert record_hashes(with_header).to_pylist()[1] == base[1]
    assert record_hashes(with_header).to_pylist()[0] != base[0]
    assert record_hashes(table, assume_headers=True).to_pylist()[0] == record_hashes(with_header).to_pylist()[0]
    rows[0]["assets"]["red"]["header"]["etag"] = '"other"'
    assert record_hashes(pa.Table.from_pylist(rows, schema=table.schema)).equals(record_hashes(with_header))
    rows[0]["eo:cloud_cover"] = 99.0
    assert record_hashes(pa.Table.from_pylist(rows, schema=table.schema)).to_pylist()[0] != base[0]


def _header() -> dict:
    image = {"width": 10, "height": 10, "tile_width": 16, "tile_height": 16, "tiled": True, "samples_per_pixel": 1,
             "bits_per_sample": 16, "sample_format": 1, "dtype": "uint16", "planar_config": 1, "compression": 8,
             "predictor": 2, "photometric": 1, "subfile_type": 0, "tile_offsets": [100], "tile_byte_counts": [50],
             "jpeg_tables": None}
    return {"byte_order": "<", "bigtiff": False, "crs": "EPSG:32632", "transform": [10, 0, 0, 0, -10, 0],
            "nodata": 0.0, "pixel_is_point": False, "gdal_metadata": None, "size": 150, "etag": '"abc"',
            "last_modified": "2024-01-01T00:00:00+00:00", "images": [image]}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-179, 170), st.floats(-80, 80), st.floats(0, 100)), min_size=1, max_size=20))
def test_geo_metadata_gives_types_and_the_extent(boxes):
    items = []
    for i, (x, y, cloud) in enumerate(boxes):
        box = shapely.box(x, y, x + 1, y + 1)
        items.append({"id": f"i{i}", "geometry": shapely.geometry.mapping(box), "bbox": list(box.bounds),
                      "properties": {"datetime": "2024-01-01T00:00:00Z", "eo:cloud_cover": cloud},
                      "assets": {"red": {"href": "x.tif", "type": COG}}})
    table = rc.engine.records_from_items(items)
    column = geo_metadata(table)["columns"]["geometry"]
    assert column["geometry_types"] == ["Polygon"] and column["encoding"] == "WKB"
    xs, ys = [b[0] for b in boxes], [b[1] for b in boxes]
    assert column["bbox"] == pytest.approx([min(xs), min(ys), max(xs) + 1, max(ys) + 1])
    assert CRS.from_json_dict(column["crs"]) == CRS.from_user_input("OGC:CRS84")
    assert set(column["covering"]["bbox"]) == {"xmin", "ymin", "xmax", "ymax"}
    assert np.isfinite(column["bbox"]).all()
