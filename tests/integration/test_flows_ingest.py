"""The ingestion flow runs the ingestion core's steps, with build_from_stac's options.

Every request the flow sends for the archive's COGs goes through a counting proxy
(``infra.local.faults`` with faults that inject nothing): a re-run over an unchanged
STAC source sends none and leaves the Delta version as it was; a changed item costs
exactly its own headers.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import shapely
from deltalake import DeltaTable

import rasteret_core as rc
from infra.local.faults import Fault, fault_proxy
from rasteret_demo.stac import stac_api as serve_stac

BANDS = {"red": "red", "nir": "nir"}
ARCHIVE = r"^/rasteret-sample/"


def _hits(proxy) -> list[int]:
    return [f["hits"] for f in proxy.counters()["faults"]]


def _delta_version(uri: str) -> int:
    table = DeltaTable(uri, storage_options=rc.Settings.from_env().delta_storage_options())
    version = table.version()
    del table
    return version


@pytest.fixture(scope="module")
def runs(prefect_api, staging_dir, stac_api, s3, s3_items, tmp_path_factory):
    """Three ingestions into one table through a request-counting proxy: first, unchanged, one item changed."""
    from rasteret_flows import ingest_collection

    uri = "s3://rasteret-tables/flow-unchanged"
    changed = copy.deepcopy(s3_items)
    changed[0]["properties"]["eo:cloud_cover"] = 1.5
    scene = changed[0]["assets"]["red"]["href"].removeprefix("s3:/").rsplit("/", 1)[0]
    path = tmp_path_factory.mktemp("changed-stac") / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": changed}))
    counters = [Fault(path=ARCHIVE, times=0), Fault(path="^" + re.escape(scene) + "/", times=0)]
    out = {"uri": uri}
    with fault_proxy(s3.endpoint_url, counters) as proxy, pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", proxy.url)
        out["first"] = ingest_collection(stac_api, "sentinel-2-l2a", uri, bands=BANDS, partition_size=2)
        out["first hits"], out["first version"] = _hits(proxy), _delta_version(uri)
        out["history"] = len(rc.load(uri).history())
        out["again"] = ingest_collection(stac_api, "sentinel-2-l2a", uri, bands=BANDS, partition_size=2)
        out["again hits"], out["again version"] = _hits(proxy), _delta_version(uri)
        out["again history"] = len(rc.load(uri).history())
        with serve_stac(path) as changed_api:
            out["changed"] = ingest_collection(changed_api, "sentinel-2-l2a", uri, bands=BANDS, partition_size=2)
        out["changed hits"], out["changed version"] = _hits(proxy), _delta_version(uri)
    out["changed id"] = changed[0]["id"]
    return out


def test_the_first_run_reads_every_header_through_the_proxy(runs, s3_items):
    first = runs["first"]
    assert first.committed and first.records == first.changed == first.inserted == len(s3_items) == 6
    assert first.headers_parsed == 12 and first.requests > 0
    assert runs["first hits"][0] >= 12  # the proxy saw the header reads (a HEAD and ranged GETs per COG)
    assert first.version == runs["first version"] == 0 and runs["history"] == 1  # created holding its rows


def test_an_unchanged_archive_sends_no_header_request_and_commits_nothing(runs):
    again = runs["again"]
    assert runs["again hits"] == runs["first hits"]  # not one request for any COG
    assert again.requests == again.bytes_read == again.headers_parsed == 0
    assert again.unchanged == again.records == 6 and again.changed == again.partitions == 0
    assert runs["again version"] == runs["first version"] == again.version and not again.committed
    assert runs["again history"] == runs["history"]  # no Delta commit at all


def test_a_changed_item_costs_its_own_headers_and_one_commit(runs):
    changed = runs["changed"]
    before, after = runs["again hits"], runs["changed hits"]
    assert after[0] - before[0] == after[1] - before[1] > 0  # every request was for the changed scene's COGs
    assert changed.changed == 1 and changed.unchanged == 5 and changed.headers_parsed == 2
    assert changed.committed and (changed.inserted, changed.updated) == (0, 1)
    assert runs["changed version"] == runs["first version"] + 1 == changed.version
    row = rc.load(runs["uri"]).subset(ids=[runs["changed id"]]).to_arrow().to_pylist()[0]
    assert row["eo:cloud_cover"] == 1.5
    meta = rc.load(runs["uri"]).history()[0]["metadata"]
    assert (meta["records"], meta["unchanged"], meta["updated"], meta["headers_parsed"]) == (6, 5, 1, 2)


def test_the_flow_takes_build_from_stacs_options_and_builds_the_same(prefect_api, staging_dir, stac_api, s3,
                                                                     sample_archive):
    from rasteret_flows import ingest_collection

    poly = shapely.Polygon([(12.10, 45.70), (12.14, 45.70), (12.14, 45.74)])  # 33TTL only
    options = {"query": {"eo:cloud_cover": {"lt": 53}}, "bands": {"B04": "red", "B08": "nir"},
               "href_rewrites": {"s3://rasteret-sample/": f"{sample_archive.root}/"}}  # the same COGs, on disk
    built = rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri="s3://rasteret-tables/opts-lib",
                               intersects=poly, **options)
    flow_uri = "s3://rasteret-tables/opts-flow"
    result = ingest_collection(stac_api, "sentinel-2-l2a", flow_uri, intersects=shapely.geometry.mapping(poly),
                               **options)
    assert result.records == result.inserted == len(built) == 2  # 33TTL scenes under 53 % cloud: two of three
    flowed = rc.load(flow_uri)
    assert flowed.bands == built.bands == ["B04", "B08"]
    a, b = built.to_arrow().sort_by("id"), flowed.to_arrow().sort_by("id")
    assert a.equals(b)  # the same rows, headers included
    assert all(asset["href"].startswith(str(sample_archive.root)) for row in b.to_pylist()
               for asset in row["assets"].values())
    lib, flow = built.history()[0]["metadata"], flowed.history()[0]["metadata"]
    for key in ("query", "query_applied", "intersects", "bands", "href_rewrites", "items", "records", "inserted",
                "headers_parsed"):
        assert lib[key] == flow[key], key
    assert flow["query_applied"] == "client" and flow["intersects"] is True

    again = ingest_collection(stac_api, "sentinel-2-l2a", flow_uri, intersects=shapely.geometry.mapping(poly),
                              **options)
    assert not again.committed and again.requests == 0 and again.version == flowed.version


def test_the_cli_passes_the_same_options_to_the_flow(prefect_api, staging_dir, stac_api, s3, sample_archive,
                                                      tmp_path):
    from typer.testing import CliRunner

    from rasteret_flows.cli import app

    poly = shapely.Polygon([(12.10, 45.70), (12.14, 45.70), (12.14, 45.74)])
    geojson = tmp_path / "aoi.geojson"
    geojson.write_text(json.dumps(shapely.geometry.mapping(poly)))
    uri = str(tmp_path / "cli-collection")
    args = ["ingest", "--stac-api", stac_api, "--collection", "sentinel-2-l2a", "--uri", uri,
            "--intersects", str(geojson), "--query", '{"eo:cloud_cover": {"lt": 53}}', "--bands", "B04=red,B08=nir",
            "--href-rewrite", f"s3://rasteret-sample/={sample_archive.root}/"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    col = rc.load(uri)
    assert len(col) == 2 and col.bands == ["B04", "B08"] and col.version == 0
    assert all(a["href"].startswith(str(sample_archive.root)) for r in col.to_arrow().to_pylist()
               for a in r["assets"].values())
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert rc.load(uri).version == 0 and "unchanged" in again.output
