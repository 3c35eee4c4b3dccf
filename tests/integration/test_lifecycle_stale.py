"""A source COG replaced after indexing: detected before reading, refreshed by enrich(refresh="stale")."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa
import pytest
import shapely

import rasteret_core as rc
from rasteret_core.io.freshness import ObjectFacts, expect_fresh

AOI = (11.86, 45.80, 11.875, 45.81)


def _key(href: str) -> str:
    return href.split("s3://rasteret-sample/", 1)[1]


def _check(col: rc.Collection) -> None:
    """What the read side checks alongside its fetches: one HEAD per object the rows name."""

    async def run() -> None:
        async with rc.engine.Stores(col.settings) as stores:
            await rc.engine.check_fresh(rc.engine.expected_objects(col.to_arrow()), stores)

    asyncio.run(run())


def _build_over_copies(s3, scenes: list[dict], folder: str, uri: str) -> tuple[rc.Collection, list[str]]:
    """A red-band collection over copies of ``scenes``' COGs; the collection and the copies' hrefs."""
    client = s3.client()
    hrefs = [f"s3://rasteret-sample/{folder}/{item['id']}/red.tif" for item in scenes]
    for item, href in zip(scenes, hrefs, strict=True):
        client.copy_object(Bucket="rasteret-sample", Key=_key(href),
                           CopySource={"Bucket": "rasteret-sample", "Key": _key(item["assets"]["red"]["href"])})
    table = pa.table({
        "id": [item["id"] for item in scenes],
        "datetime": [item["properties"]["datetime"] for item in scenes],
        "geometry": [shapely.to_wkb(shapely.geometry.shape(item["geometry"])) for item in scenes],
        "crs": ["EPSG:32632"] * len(scenes),
        "red_href": hrefs,
    })
    client.close()
    return rc.build_from_table(table, uri=uri), hrefs


def _replace_in_place(s3, href: str, by_href: str) -> None:
    """Overwrite the object at ``href`` with another file (another ETag and other tile offsets)."""
    client = s3.client()
    client.copy_object(Bucket="rasteret-sample", Key=_key(href), CopySource={"Bucket": "rasteret-sample",
                                                                             "Key": _key(by_href)})
    client.close()


def test_the_enrichment_flow_refreshes_only_stale_headers_as_the_library_does(prefect_api, s3, s3_items):
    from rasteret_flows.enrich import enrich_collection

    scenes = s3_items[:3]
    built, hrefs = _build_over_copies(s3, scenes, "stale-flow", "s3://rasteret-tables/stale-flow")
    _replace_in_place(s3, hrefs[0], scenes[0]["assets"]["nir"]["href"])
    before = {r["id"]: r for r in built.to_arrow().to_pylist()}
    summary = enrich_collection(built.uri, refresh="stale", partition_size=1)
    assert (summary.records_lacking_headers, summary.headers_parsed, summary.version) == (1, 1, built.version + 1)
    refreshed = rc.load(built.uri)
    assert refreshed.stale_assets() == []
    after = {r["id"]: r for r in refreshed.to_arrow().to_pylist()}
    replaced = scenes[0]["id"]
    for rid, row in before.items():  # the unchanged scenes keep their headers as they were
        assert (after[rid]["assets"]["red"]["header"] == row["assets"]["red"]["header"]) is (rid != replaced)
    assert enrich_collection(built.uri, refresh="stale").version == refreshed.version  # nothing stale: no commit


def test_a_replaced_cog_is_detected_and_refreshed(s3, s3_items):
    scenes = s3_items[:3]  # 32TQR: the same grid
    col, hrefs = _build_over_copies(s3, scenes, "stale", "s3://rasteret-tables/stale")
    _check(col)
    assert col.stale_assets() == []
    before = col.get_numpy(AOI, ["red"])

    _replace_in_place(s3, hrefs[0], scenes[0]["assets"]["nir"]["href"])  # the first scene's COG, in place
    col = rc.load(col.uri)
    with pytest.raises(rc.StaleAssetError, match=r"1 source COG\(s\) changed.*re-enrich.*enrich\(refresh='stale'\)") as info:
        _check(col)
    assert info.value.uris == [hrefs[0]]
    # every read surface refuses the changed object rather than decode it with the old tile offsets
    for read in (lambda: col.get_numpy(AOI, ["red"]), lambda: col.get_table([shapely.box(*AOI)], ["red"]),
                 lambda: col.get_numpy(AOI, ["red"], target_crs="EPSG:32632", resolution=20.0)):
        with pytest.raises(rc.StaleAssetError, match="enrich") as read_info:
            read()
        assert read_info.value.uris == [hrefs[0]]
    (stale,) = col.stale_assets()
    assert (stale.record_id, stale.band, stale.href) == (scenes[0]["id"], "red", hrefs[0])
    assert stale.stored.etag != stale.current.etag

    refreshed = col.enrich(refresh="stale")
    assert refreshed.version == col.version + 1
    meta = refreshed.history()[0]["metadata"]
    assert (meta["refresh"], meta["records"], meta["headers_parsed"]) == ("stale", 1, 1)
    _check(refreshed)
    assert refreshed.stale_assets() == []
    rows = {r["id"]: r for r in refreshed.to_arrow().to_pylist()}
    assert rows[scenes[0]["id"]]["assets"]["red"]["header"]["etag"] == stale.current.etag
    after = refreshed.get_numpy(AOI, ["red"])
    np.testing.assert_array_equal(after[1:], before[1:])  # the other scenes are as they were
    assert not np.array_equal(after[0], before[0])  # the first now reads the replacement's pixels
    assert refreshed.enrich(refresh="stale").version == refreshed.version  # nothing stale: no commit


def test_reads_check_freshness_on_their_gets_with_no_head(s3, s3_items, monkeypatch):
    """Each ranged GET's answer carries its object's ETag: a read sends no HEAD, and still refuses a changed object."""
    from infra.local.faults import Fault, fault_proxy

    scenes = s3_items[:2]
    built, hrefs = _build_over_copies(s3, scenes, "stale-gets", "s3://rasteret-tables/stale-gets")
    counting = [Fault(path=r"^/rasteret-sample/stale-gets/", method="HEAD", times=0),
                Fault(path=r"^/rasteret-sample/stale-gets/", method="GET", times=0)]
    with fault_proxy(s3.endpoint_url, counting) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        col = rc.load(built.uri)
        result = col.read_numpy(AOI, ["red"])
        heads, gets = (f["hits"] for f in proxy.counters()["faults"])
        assert (heads, gets) == (0, result.stats.requests) and gets > 0
        _replace_in_place(s3, hrefs[0], scenes[0]["assets"]["nir"]["href"])
        with pytest.raises(rc.StaleAssetError, match=r"1 source COG\(s\) changed") as info:
            col.get_numpy(AOI, ["red"])
        assert info.value.uris == [hrefs[0]]
        assert proxy.counters()["faults"][0]["hits"] == 0  # still no HEAD


def test_a_local_file_changed_since_its_header_is_refused_on_read(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(b"\0" * 4096)

    async def read_after(change: bool) -> bytes:
        async with rc.engine.Stores(rc.Settings()) as stores:
            info = await stores.head(str(path))  # what enrichment records of the object
            if change:
                path.write_bytes(b"\1" * 8192)  # another size and time: another object
            await expect_fresh({str(path): ObjectFacts(info.etag, info.size, info.last_modified)}, stores)
            return await stores.get_range(str(path), 0, 16)

    assert asyncio.run(read_after(change=False)) == b"\0" * 16
    with pytest.raises(rc.StaleAssetError):
        asyncio.run(read_after(change=True))
