"""Building collections against the real local services: STAC search options, re-ingestion, catalog entries."""

from __future__ import annotations

import copy
import json
import types

import numpy as np
import pytest
import shapely

import rasteret_core as rc
from rasteret_demo.stac import stac_api as serve_stac
from tests.integration.catalog_items import dem_items, landsat_items, naip_items, sentinel2_items, stage_objects

ZONE32_BBOX = (11.80, 45.72, 11.90, 45.84)  # meets the three 32TQR scenes only
AOI = (11.86, 45.80, 11.875, 45.81)


def test_search_follows_every_page_and_applies_query_itself_when_the_server_cannot(stac_api):
    found = rc.engine.search(stac_api, collections="sentinel-2-l2a", page_size=2)
    assert len(found.items) == 6 and found.query_applied is None
    cloudy = rc.engine.search(stac_api, collections="sentinel-2-l2a", query={"eo:cloud_cover": {"gt": 40}}, page_size=2)
    assert cloudy.query_applied == "client" and cloudy.matched == 6  # rustac serve lacks the query extension
    assert sorted(i["id"] for i in cloudy.items) == sorted(
        i["id"] for i in found.items if i["properties"]["eo:cloud_cover"] > 40)
    assert len(rc.engine.search(stac_api, collections="sentinel-2-l2a", query={"eo:cloud_cover": {"gt": 40}},
                         max_items=2).items) == 2


def test_build_from_stac_with_bbox_datetime_intersects_query_and_a_band_map(stac_api, s3):
    uri = "s3://rasteret-tables/build-options"
    col = rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri=uri, bbox=ZONE32_BBOX,
                             datetime="2024-01-01/2024-02-29", bands={"B04": "red", "B08": "nir"})
    assert col.bands == ["B04", "B08"] and len(col) == 2 and col.version == 0
    rows = col.to_arrow().to_pylist()
    assert {r["crs"] for r in rows} == {"EPSG:32632"}
    assert all(r["assets"][b]["header"]["etag"] and r["assets"][b]["key"] in {"red", "nir"}
               for r in rows for b in col.bands)
    entry = col.history()[0]
    assert entry["operation"] == "build_from_stac"
    assert entry["metadata"]["bbox"] == list(ZONE32_BBOX) and entry["metadata"]["items"] == 2
    assert entry["metadata"]["headers_parsed"] == 4 and entry["metadata"]["bands"] == {"B04": "red", "B08": "nir"}

    poly = shapely.Polygon([(12.10, 45.70), (12.14, 45.70), (12.14, 45.74)])  # 33TTL only
    more = rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri=uri, intersects=poly,
                              query={"eo:cloud_cover": {"lt": 53}}, bands={"B04": "red", "B08": "nir"})
    assert more.version == 1 and len(more) == 4  # 33TTL scenes under 53 % cloud: two of three
    meta = more.history()[0]["metadata"]
    assert meta["query_applied"] == "client" and meta["query"] == {"eo:cloud_cover": {"lt": 53}}
    assert (meta["inserted"], meta["updated"], meta["unchanged"]) == (2, 0, 0)
    np.testing.assert_array_equal(more.get_numpy(AOI, ["B04"]), col.get_numpy(AOI, ["B04"]))
    frozen = types.MappingProxyType(dict(shapely.geometry.mapping(poly)))  # any GeoJSON mapping, not only a dict
    same = rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri=None, intersects=frozen,
                              query={"eo:cloud_cover": {"lt": 53}}, bands={"B04": "red", "B08": "nir"}, enrich=False)
    assert sorted(same.to_arrow()["id"].to_pylist()) == sorted(
        r["id"] for r in more.to_arrow().to_pylist() if r["crs"] != "EPSG:32632")


def test_the_same_ingestion_twice_commits_nothing_and_a_changed_item_updates_one_row(
        stac_api, s3, s3_items, tmp_path):
    uri = "s3://rasteret-tables/reingest"
    bands = {"red": "red"}
    first = rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri=uri, bands=bands)
    again = rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri=uri, bands=bands)
    assert first.version == again.version == 0 and [h["operation"] for h in again.history()] == ["build_from_stac"]

    items = copy.deepcopy(s3_items)
    items[0]["properties"]["eo:cloud_cover"] = 1.5
    items[1]["assets"]["red"]["href"] = items[1]["assets"]["nir"]["href"]  # a re-processed asset
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    with serve_stac(path) as changed_api:
        updated = rc.build_from_stac(stac_api=changed_api, collection="sentinel-2-l2a", uri=uri, bands=bands)
    assert updated.version == 1 and len(updated) == 6
    meta = updated.history()[0]["metadata"]
    assert (meta["updated"], meta["inserted"], meta["unchanged"], meta["headers_parsed"]) == (2, 0, 4, 2)
    rows = {r["id"]: r for r in updated.to_arrow().to_pylist()}
    assert rows[items[0]["id"]]["eo:cloud_cover"] == 1.5
    assert rows[items[1]["id"]]["assets"]["red"]["href"].endswith("nir.tif")
    assert rows[items[1]["id"]]["assets"]["red"]["header"]["etag"] != \
        rc.load(uri, version=0).subset(ids=[items[1]["id"]]).to_arrow().to_pylist()[0]["assets"]["red"]["header"]["etag"]


@pytest.fixture(scope="module")
def catalog_api(s3, s3_items, tmp_path_factory):
    """A STAC API serving Landsat-, NAIP-, DEM- and Sentinel-2-shaped items; their COGs staged where the real
    archives keep them (usgs-landsat, naip-analytic, copernicus-dem-30m, sentinel-cogs) on the local S3."""
    items, copies = [], {}
    for make in (landsat_items, naip_items, dem_items, sentinel2_items):
        more, staged = make(s3_items)
        items += more
        copies.update(staged)
    stage_objects(s3, copies)
    path = tmp_path_factory.mktemp("catalog-stac") / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    with serve_stac(path) as url:
        yield url


def test_the_catalog_lists_its_entries():
    table = rc.catalog()
    ids = table["id"].to_pylist()
    assert {"earthsearch/sentinel-2-l2a", "earthsearch/landsat-c2-l2", "earthsearch/naip",
            "earthsearch/cop-dem-glo-30"} <= set(ids)
    landsat = table.to_pylist()[ids.index("earthsearch/landsat-c2-l2")]
    assert landsat["requester_pays"] and "B4" in landsat["bands"]
    assert json.loads(landsat["href_rewrites"]) == {"https://landsatlook.usgs.gov/data/": "s3://usgs-landsat/"}


@pytest.mark.parametrize(
    ("entry", "bands", "records", "prefix", "crs", "requester_pays"),
    [
        ("earthsearch/landsat-c2-l2", ["B4", "B5"], 3, "s3://usgs-landsat/collection02/", "EPSG:32632", True),
        ("earthsearch/naip", None, 2, "s3://naip-analytic/ca/2022/", "EPSG:32632", True),
        ("earthsearch/cop-dem-glo-30", None, 2, "s3://copernicus-dem-30m/Copernicus_DSM", None, False),
        ("earthsearch/sentinel-2-l2a", ["B04", "B08"], 6, "s3://sentinel-cogs/sentinel-s2-l2a-cogs/", None, False),
    ],
)
def test_build_from_a_catalog_entry(catalog_api, s3, entry, bands, records, prefix, crs, requester_pays):
    uri = f"s3://rasteret-tables/catalog-{entry.split('/')[1]}"
    col = rc.build(entry, uri=uri, stac_api=catalog_api, bands=bands, datetime="2021-01-01/2024-12-31")
    assert len(col) == records and col.settings.requester_pays is requester_pays
    expected_bands = bands or list(rc.registry.get_entry(entry).bands)
    assert col.bands == expected_bands
    rows = col.to_arrow().to_pylist()
    for row in rows:
        for band in expected_bands:
            asset = row["assets"][band]
            assert asset["href"].startswith(prefix), asset["href"]
            assert asset["header"]["etag"] and asset["header"]["crs"] == row["crs"]
    if crs:
        assert {r["crs"] for r in rows} == {crs}
    assert col.history()[0]["metadata"]["catalog"] == entry
    assert col.get_numpy(AOI, expected_bands[:1]).shape[0] >= 1


def test_a_registered_entry_builds_like_a_builtin_one(catalog_api, s3):
    entry = rc.CatalogEntry(id="local/landsat-red", title="Landsat red from a mirror", stac_api=catalog_api,
                            collection="landsat-c2-l2", bands={"red": "red"},
                            href_rewrites={"https://landsatlook.usgs.gov/data/": "s3://usgs-landsat/"})
    rc.register(entry)
    with pytest.raises(rc.ConfigError, match="exists"):
        rc.register(entry)
    rc.register(entry, replace=True)
    assert "local/landsat-red" in rc.catalog()["id"].to_pylist()
    col = rc.build("local/landsat-red", uri=None, bbox=ZONE32_BBOX)
    assert len(col) == 3 and col.uri is None and col.bands == ["red"]
    with pytest.raises(rc.ConfigError, match="no catalog entry"):
        rc.build("local/nothing", uri=None)
    with pytest.raises(rc.ConfigError, match="no band"):
        rc.build("local/landsat-red", uri=None, bands=["B99"])
