"""Faults beyond 503s, produced by the fault proxy in front of SeaweedFS and the STAC API.

Reads through the proxy return rasterio's pixels when a fault passes (truncated
bodies, stalls past the request timeout, 500s, malformed answers, dropped
connections), or fail after bounded retries with a :class:`~rasteret_core.FetchError`
naming the object and the cause when it does not; a refused connection fails the
same way. Nothing hangs: every elapsed time is bounded. A STAC API that errors,
stalls or answers what is not JSON gives a :class:`~rasteret_core.SourceError`.
Builds asked for ``partial`` leave out (and list in the commit) the records whose
headers stay unreadable.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import rasterio.mask
import shapely
from pyproj import Transformer

import rasteret_core as rc
from infra.local.faults import Fault, fault_proxy
from rasteret_demo.process import free_port

SAMPLE = r"^/rasteret-sample/"
BANDS = ["red", "nir"]
S3_500 = r"S3 (InternalError \(HTTP 500\)|500): the store failed"  # a GET's error has a code, a HEAD's only its status
TIMEOUT = 1.0  # RASTERET_REQUEST_TIMEOUT for these tests: a stall of 3 s outlasts it


def _settings(endpoint: str, **overrides: object) -> rc.Settings:
    return rc.Settings.from_env(aws_endpoint_url=endpoint, **{"request_timeout": TIMEOUT, "request_retries": 4,
                                                              **overrides})


@pytest.fixture(scope="module")
def aoi(s3_collection):
    """A window across tile boundaries of one scene's grid, in its CRS."""
    row = next(r for r in s3_collection.to_arrow().to_pylist() if r["crs"] == "EPSG:32632")
    a, _, c, _, e, f = row["assets"]["red"]["header"]["transform"]
    return shapely.box(c + 400.5 * a, f + 1100.6 * e, c + 700.2 * a, f + 450.1 * e)


@pytest.fixture(scope="module")
def want(s3_collection, aoi, local_path_of):
    """rasterio.mask on the local copies of the files, record by record."""
    rows = sorted(s3_collection.subset(geometries=aoi, geometry_crs="EPSG:32632").to_arrow().to_pylist(),
                  key=lambda r: (r["datetime"], r["id"]))
    out = []
    for row in rows:
        bands = []
        for band in BANDS:
            with rasterio.open(local_path_of(row["assets"][band]["href"])) as src:
                tr = Transformer.from_crs("EPSG:32632", src.crs, always_xy=True)
                shape = shapely.transform(aoi, lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
                data, _ = rasterio.mask.mask(src, [shape], crop=True, filled=True, nodata=src.nodata or 0)
                bands.append(data[0])
        out.append(bands)
    return np.array(out)


PASSING = {  # kind -> fault fields; each disturbs the first two matching GETs, the retries get through
    "500": {"kind": "error", "status": 500, "code": "InternalError"},
    "503": {"kind": "error", "status": 503, "code": "SlowDown"},
    "truncate": {"kind": "truncate"},
    "stall": {"kind": "stall", "stall": 3.0},
    "malformed": {"kind": "malformed"},
    "drop": {"kind": "drop"},
}


@pytest.mark.parametrize("name", list(PASSING))
def test_reads_survive_passing_faults_with_rasterio_pixels(s3, s3_collection, aoi, want, name):
    fault = Fault(method="GET", path=SAMPLE, times=2, **PASSING[name])
    with fault_proxy(s3.endpoint_url, [fault]) as proxy:
        col = rc.load(s3_collection.uri, settings=_settings(proxy.url))
        start = time.monotonic()
        got = col.get_numpy(aoi, BANDS, geometry_crs="EPSG:32632")
        elapsed = time.monotonic() - start
        assert proxy.injected(fault.kind) == 2
    np.testing.assert_array_equal(got, want)
    assert elapsed < 15, f"{name}: {elapsed:.1f}s"


LASTING = {  # kind -> (fault fields, what the error says of the cause)
    "500": ({"kind": "error", "status": 500, "code": "InternalError"}, "S3 InternalError (HTTP 500)"),
    "truncate": ({"kind": "truncate"}, "body was truncated"),
    "stall": ({"kind": "stall", "stall": 3.0}, "timed out after 1.0s (RASTERET_REQUEST_TIMEOUT)"),
    "malformed": ({"kind": "malformed"}, "malformed HTTP answer"),
    "drop": ({"kind": "drop"}, "connection was closed before an answer"),
}


@pytest.mark.parametrize("name", list(LASTING))
def test_lasting_faults_fail_after_bounded_retries_naming_object_and_cause(s3, s3_collection, aoi, name):
    fields, cause = LASTING[name]
    fault = Fault(method="GET", path=SAMPLE, times=10_000, **fields)
    with fault_proxy(s3.endpoint_url, [fault]) as proxy:
        col = rc.load(s3_collection.uri, settings=_settings(proxy.url, request_retries=2, max_concurrency=4))
        start = time.monotonic()
        with pytest.raises(rc.FetchError) as info:
            col.get_numpy(aoi, BANDS, geometry_crs="EPSG:32632")
        elapsed = time.monotonic() - start
        injected = proxy.injected(fault.kind)
    message = str(info.value)
    assert re.match(r"s3://rasteret-sample/\S+\.tif: ", message), message
    assert cause.lower() in message.lower(), message
    assert info.value.uri.startswith("s3://rasteret-sample/") and info.value.retryable
    assert "gave up after 2 attempt(s)" in message, message
    print(f"{name}: {injected} injected, failed after {elapsed:.1f}s: {message}")  # figures for the closing note
    assert injected >= 2
    assert elapsed < 20, f"{name}: {elapsed:.1f}s"


def test_a_refused_connection_fails_fast_naming_the_object(s3_collection, aoi):
    col = rc.load(s3_collection.uri)  # the table is read from SeaweedFS, the pixels from nowhere
    col = rc.Collection(col.to_arrow(), settings=_settings(f"http://127.0.0.1:{free_port()}", request_retries=2))
    start = time.monotonic()
    with pytest.raises(rc.FetchError) as info:
        col.get_numpy(aoi, BANDS, geometry_crs="EPSG:32632")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith("s3://rasteret-sample/") and "connect" in message.lower(), message


def test_partial_builds_quarantine_unreadable_headers_and_say_so(s3, stac_api, s3_items):
    bad = sorted(s3_items, key=lambda i: i["id"])[1]
    key = bad["assets"]["red"]["href"].removeprefix("s3://")
    fault = Fault(path="^/" + re.escape(key) + "$", times=10_000, kind="error", status=500, code="InternalError")
    with fault_proxy(s3.endpoint_url, [fault]) as proxy:
        settings = _settings(proxy.url, request_retries=2)
        start = time.monotonic()
        with pytest.raises(rc.CollectionError) as info:
            rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri="s3://rasteret-tables/faults-all",
                               bands={"red": "red", "nir": "nir"}, settings=settings)
        assert f"{bad['id']}/red" in str(info.value) and re.search(S3_500, str(info.value))
        col = rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri="s3://rasteret-tables/faults",
                                 bands={"red": "red", "nir": "nir"}, settings=settings, partial=True)
        assert time.monotonic() - start < 30
        assert proxy.injected() >= 4
        meta = col.history()[0]["metadata"]
    ids = rc.load(col.uri).to_arrow()["id"].to_pylist()  # straight from SeaweedFS
    assert bad["id"] not in ids and len(ids) == len(s3_items) - 1
    assert meta["records_skipped"] == 1
    assert [(s["id"], s["band"]) for s in meta["skipped"]] == [(bad["id"], "red")]
    error = meta["skipped"][0]["error"]
    assert error.startswith(bad["assets"]["red"]["href"]) and re.search(S3_500, error), error
    assert "gave up after 2 attempt(s)" in error


STAC_FAULTS = {  # kind -> (fault fields, what the error says)
    "500": ({"kind": "error", "status": 500, "code": "InternalError"}, "the API answered HTTP 500"),
    "invalid JSON": ({"kind": "replace", "status": 200, "body": '{"type": "FeatureCollection", "feat'},
                     "not JSON"),
    "stall": ({"kind": "stall", "stall": 5.0}, "timed out after 1.0s"),
    "malformed": ({"kind": "malformed"}, "cannot get an answer"),
}


@pytest.mark.parametrize("name", list(STAC_FAULTS))
def test_a_failing_stac_api_gives_a_clear_error(stac_api, name):
    fields, says = STAC_FAULTS[name]
    fault = Fault(path=r"^/search", times=10_000, **fields)
    with fault_proxy(stac_api.rstrip("/"), [fault], rewrite_links=True) as proxy:
        start = time.monotonic()
        with pytest.raises(rc.SourceError) as info:
            rc.build_from_stac(stac_api=proxy.url, collection="sentinel-2-l2a", uri=None, enrich=False,
                               settings=rc.Settings.from_env(request_timeout=TIMEOUT))
        elapsed = time.monotonic() - start
        assert proxy.injected() >= 1
    message = str(info.value)
    assert f"STAC search at {proxy.url}" in message and says.lower() in message.lower(), message
    assert elapsed < 30, f"{name}: {elapsed:.1f}s"


def test_a_slow_stac_api_within_the_timeout_still_answers(stac_api, s3_items):
    with fault_proxy(stac_api.rstrip("/"), [Fault(path=r"^/search", times=0, delay=0.3)],
                     rewrite_links=True) as proxy:
        col = rc.build_from_stac(stac_api=proxy.url, collection="sentinel-2-l2a", uri=None, enrich=False,
                                 settings=rc.Settings.from_env(request_timeout=TIMEOUT))
    assert len(col) == len(s3_items)


def test_http_hrefs_survive_every_fault_kind_in_turn(s3, s3_items, local_path_of):
    """Pre-signed http(s) hrefs (the HTTP store, not S3's) through the proxy: five faults of five kinds, then pixels."""
    import boto3
    from botocore.config import Config

    item = min(s3_items, key=lambda i: i["id"])
    key = item["assets"]["red"]["href"].removeprefix("s3://rasteret-sample/")
    kinds = [{"kind": "error", "status": 500, "code": "InternalError"}, {"kind": "truncate"}, {"kind": "malformed"},
             {"kind": "drop"}, {"kind": "stall", "stall": 3.0}]
    faults = [Fault(method="GET", path=re.escape(key), times=n, **fields) for n, fields in enumerate(kinds, 1)]
    with fault_proxy(s3.endpoint_url, faults) as proxy:
        signer = boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id=s3.access_key,
                              aws_secret_access_key=s3.secret_key, region_name=s3.region,
                              config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
        href = signer.generate_presigned_url("get_object", Params={"Bucket": "rasteret-sample", "Key": key})
        signer.close()
        records = pa.table({"id": [item["id"]], "datetime": [item["properties"]["datetime"]],
                            "geometry": [shapely.to_wkb(shapely.geometry.shape(item["geometry"]))],
                            "red_href": [href]})
        settings = _settings(proxy.url, request_retries=7, max_concurrency=1)
        start = time.monotonic()
        col = rc.build_from_table(records, settings=settings)
        row = col.to_arrow().to_pylist()[0]
        a, _, c, _, e, f = row["assets"]["red"]["header"]["transform"]
        aoi = shapely.box(c + 400.5 * a, f + 1100.6 * e, c + 700.2 * a, f + 450.1 * e)
        with rasterio.open(local_path_of(item["assets"]["red"]["href"])) as src:
            crs = src.crs.to_string()
        got = col.get_numpy(aoi, ["red"], geometry_crs=crs)
        elapsed = time.monotonic() - start
        by_kind = proxy.counters()["by_kind"]
    assert by_kind == {"error": 1, "truncate": 1, "malformed": 1, "drop": 1, "stall": 1, "replace": 0}
    with rasterio.open(local_path_of(item["assets"]["red"]["href"])) as src:
        want, _ = rasterio.mask.mask(src, [aoi], crop=True, filled=True, nodata=src.nodata or 0)
    np.testing.assert_array_equal(got[0, 0], want[0])
    assert elapsed < 30, f"{elapsed:.1f}s"
