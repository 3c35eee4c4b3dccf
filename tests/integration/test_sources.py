"""Headers of every sample file, parsed through S3 and HTTP, equal what rasterio and tifffile report."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
import tifffile

import rasteret_core as rc


def _parse_all(uris: list[str]) -> dict:
    async def run():
        async with rc.engine.Stores(rc.Settings.from_env()) as stores:
            return await rc.engine.fetch_headers(uris, stores), stores.stats

    return asyncio.run(run())


def _check_against_oracles(header: rc.engine.TiffHeader, path: str) -> None:
    with rasterio.open(path) as src:
        image = header.image
        assert (image.width, image.height) == (src.width, src.height)
        assert (image.tile_height, image.tile_width) == src.block_shapes[0]
        assert image.dtype == np.dtype(src.dtypes[0])
        assert header.nodata == src.nodata
        assert header.transform == tuple(src.transform)[:6]
        assert header.crs == f"EPSG:{src.crs.to_epsg()}"
        assert [ov.width for ov in header.overviews] == [src.width // f for f in src.overviews(1)]
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        assert len(header.images) == len(pages)
        for im, page in zip(header.images, pages, strict=True):
            np.testing.assert_array_equal(im.tile_offsets, page.dataoffsets)
            np.testing.assert_array_equal(im.tile_byte_counts, page.databytecounts)
            assert (im.tile_height, im.tile_width) == (page.tilelength, page.tilewidth)
            assert im.compression == page.compression and im.predictor == page.predictor


def test_every_sample_header_through_s3_matches_rasterio_and_tifffile(s3, s3_items, local_path_of):
    hrefs = sorted({a["href"] for item in s3_items for a in item["assets"].values() if a["href"].endswith(".tif")})
    assert len(hrefs) == 36
    results, stats = _parse_all(hrefs)
    for href in hrefs:
        result = results[href]
        assert not isinstance(result, Exception), result
        header, info = result
        assert header.header_requests == 1  # a COG header in one request
        assert info.etag and info.size > 0
        _check_against_oracles(header, local_path_of(href))
    assert stats.requests == len(hrefs)


@pytest.fixture(scope="module")
def http_root(sample_archive) -> Iterator[str]:
    """A loopback HTTP server (aiohttp, honours Range) over the sample archive."""
    from aiohttp import web

    app = web.Application()
    app.router.add_static("/", sample_archive.root)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port}/"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_http_headers_and_reads_match_local(http_root, sample_archive):
    items = sample_archive.items_with_href_base(http_root)
    local = rc.engine.enrich_records(rc.engine.records_from_items(sample_archive.items, bands={"red": "red"}),
                              settings=rc.Settings.from_env())
    remote = rc.engine.enrich_records(rc.engine.records_from_items(items, bands={"red": "red"}), settings=rc.Settings.from_env())
    assert not remote.failures and remote.parsed == 6
    aoi = (11.90, 45.77, 11.91, 45.777)
    np.testing.assert_array_equal(rc.Collection(remote.table).get_numpy(aoi, ["red"]),
                                  rc.Collection(local.table).get_numpy(aoi, ["red"]))


def test_http_missing_object_is_recorded_not_dropped(http_root, sample_archive):
    items = sample_archive.items_with_href_base(http_root)
    items[0]["assets"]["red"]["href"] += ".missing"
    result = rc.engine.enrich_records(rc.engine.records_from_items(items[:2], bands={"red": "red"}), settings=rc.Settings.from_env())
    assert result.parsed == 1
    (failure,) = result.failures
    assert failure.record_id == items[0]["id"] and "404" in failure.error and not failure.retryable
    assert result.table.num_rows == 2


def test_building_with_a_missing_object_fails_with_its_uri(stac_api, s3, tmp_path):
    client = s3.client()
    item = next(iter(rc.engine.search_items(stac_api, collections="sentinel-2-l2a")))
    href = item["assets"]["red"]["href"]
    bucket, key = href[5:].split("/", 1)
    client.copy_object(Bucket=bucket, Key=key + ".copy.tif", CopySource={"Bucket": bucket, "Key": key})
    item["assets"]["red"]["href"] = href + ".copy.tif"
    table = rc.engine.records_from_items([item], bands={"red": "red"})
    client.delete_object(Bucket=bucket, Key=key + ".copy.tif")
    col = rc.Collection(table, uri=None)
    with pytest.raises(rc.CollectionError, match=r"could not be parsed.*copy\.tif.*no such object"):
        col.enrich()
