"""The local services and the sample archive behave as the other tests assume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from pyproj import Transformer
from pystac_client import Client
from shapely.geometry import box, shape

from infra.local.seaweedfs import S3Service
from rasteret_demo.archive import SampleArchive

BUCKET = "rasteret-sample"


def _key(archive: SampleArchive, path: Path) -> str:
    return path.relative_to(archive.root).as_posix()


def test_s3_serves_every_asset_and_ranged_reads_match_local_bytes(
    s3: S3Service, sample_archive: SampleArchive, s3_items: list[dict[str, Any]]
) -> None:
    client = s3.client()
    try:
        listed = client.list_objects_v2(Bucket=BUCKET, MaxKeys=1000)
        keys = {obj["Key"] for obj in listed["Contents"]}
        hrefs = [a["href"] for item in s3_items for a in item["assets"].values()]
        assert all(h.startswith(f"s3://{BUCKET}/cogs/") for h in hrefs)
        assert {h.removeprefix(f"s3://{BUCKET}/") for h in hrefs} <= keys
        client.head_bucket(Bucket="rasteret-tables")  # the tables bucket exists for Delta tests

        path = sample_archive.cog_paths[0]
        local = path.read_bytes()
        key = _key(sample_archive, path)
        assert client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(local)
        middle = len(local) // 2
        for first, last in ((0, 16383), (middle, middle + 70000), (len(local) - 100, len(local) - 1)):
            body = client.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={first}-{last}")["Body"]
            assert body.read() == local[first : last + 1]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("access_key", "secret_key"),
    [("rasteret", "not-the-secret"), ("nobody", "rasteret-secret"), (None, None)],
)
def test_s3_refuses_wrong_or_missing_credentials(
    s3: S3Service, sample_archive: SampleArchive, access_key: str | None, secret_key: str | None
) -> None:
    import boto3

    config = Config(signature_version=UNSIGNED) if access_key is None else Config()
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=s3.region,
        config=config,
    )
    try:
        with pytest.raises(ClientError) as info:
            client.get_object(Bucket=BUCKET, Key=_key(sample_archive, sample_archive.cog_paths[0]))
        assert info.value.response["Error"]["Code"] in {
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
        }
    finally:
        client.close()


@pytest.mark.parametrize(
    ("bbox", "datetime", "expected"),
    [
        (None, None, 6),
        ((11.80, 45.76, 11.85, 45.80), None, 3),  # zone 32 tile only
        ((12.10, 45.70, 12.14, 45.74), None, 3),  # zone 33 tile only
        ((11.97, 45.745, 11.98, 45.755), None, 6),  # where the two tiles overlap
        ((13.0, 46.5, 13.1, 46.6), None, 0),
        (None, "2024-01-01T00:00:00Z/2024-01-31T23:59:59Z", 2),
        (None, "2024-02-01T00:00:00Z/..", 4),
        ((11.80, 45.76, 11.85, 45.80), "2024-02-01T00:00:00Z/2024-02-29T23:59:59Z", 1),
    ],
)
def test_stac_api_answers_bbox_and_datetime_searches(
    stac_api: str,
    s3_items: list[dict[str, Any]],
    bbox: tuple[float, float, float, float] | None,
    datetime: str | None,
    expected: int,
) -> None:
    search = Client.open(stac_api).search(
        collections=["sentinel-2-l2a"], bbox=bbox, datetime=datetime, max_items=100
    )
    found = {item.id: item for item in search.items()}
    assert len(found) == expected
    # The same answer from the item geometries themselves.
    if bbox is not None:
        wanted = {i["id"] for i in s3_items if shape(i["geometry"]).intersects(box(*bbox))}
        if datetime is None:
            assert set(found) == wanted
    by_id = {i["id"]: i for i in s3_items}
    for item in found.values():
        assert item.assets["red"].href == by_id[item.id]["assets"]["red"]["href"]


def test_sample_files_are_valid_cogs_with_content(sample_archive: SampleArchive) -> None:
    assert len(sample_archive.items) == 6
    assert len(sample_archive.cog_paths) == 36
    reds: dict[str, np.ndarray] = {}
    for path in sample_archive.cog_paths:
        with rasterio.open(path) as src:
            assert src.driver == "GTiff"
            assert src.profile["tiled"]
            assert src.block_shapes == [(512, 512)]
            assert src.nodata == 0
            assert src.dtypes == ("uint16",)
            assert src.overviews(1), path
            assert src.width == src.height == (1536 if src.res[0] == 10 else 768)
            structure = src.tags(ns="IMAGE_STRUCTURE")
            assert structure["COMPRESSION"] == "DEFLATE"
            assert structure["PREDICTOR"] == "2"
            assert structure["LAYOUT"] == "COG"
            data = src.read(1)
        valid = data[data != 0]
        assert 0.05 < 1 - valid.size / data.size < 0.25  # a corner is outside the swath
        assert valid.std() > 100 and 300 < np.median(valid) < 6000
        if path.stem == "red":
            reds[path.parent.name] = data
    tiles = sorted({name.split("_")[1] for name in reds})
    for tile in tiles:
        dates = [data for name, data in sorted(reds.items()) if f"_{tile}_" in name]
        assert len(dates) == 3 and not np.array_equal(dates[0], dates[1])
    assert (sample_archive.root / "cogs").is_dir()
    for item in sample_archive.items:
        for name in ("thumbnail", "granule_metadata"):
            assert Path(item["assets"][name]["href"]).stat().st_size > 0


def test_item_footprints_match_the_valid_data(sample_archive: SampleArchive) -> None:
    for item in sample_archive.items:
        with rasterio.open(item["assets"]["red"]["href"]) as src:
            valid_area = float((src.read(1) != 0).sum()) * src.res[0] * src.res[1]
            raster = box(*src.bounds)
            crs = src.crs
        assert crs.to_epsg() == item["properties"]["proj:epsg"]
        assert item["properties"]["proj:code"] == f"EPSG:{crs.to_epsg()}"
        to_native = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
        footprint = shapely.transform(
            shape(item["geometry"]), to_native.transform, interleaved=False
        )
        assert footprint.intersects(raster)
        assert footprint.within(raster.buffer(20))
        assert footprint.area == pytest.approx(valid_area, rel=0.01)
        lon_lat = shape(item["geometry"])
        assert lon_lat.bounds == pytest.approx(tuple(item["bbox"]), abs=1e-7)


def test_items_with_href_base_rewrites_every_asset(sample_archive: SampleArchive) -> None:
    rewritten = sample_archive.items_with_href_base("http://127.0.0.1:1/bucket")
    for original, item in zip(sample_archive.items, rewritten, strict=True):
        assert original["assets"].keys() == item["assets"].keys()
        for name, asset in item["assets"].items():
            rel = Path(original["assets"][name]["href"]).relative_to(sample_archive.root)
            assert asset["href"] == f"http://127.0.0.1:1/bucket/{rel.as_posix()}"
