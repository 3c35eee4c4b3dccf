"""STAC items shaped like Earth Search's ``landsat-c2-l2``, ``naip``, ``cop-dem-glo-30`` and ``sentinel-2-l2a``.

Each fixture item is a real-catalog-shaped item (asset keys, media types, roles,
href layout, properties, projection fields) whose assets point where the real
archive keeps them; :func:`stage_objects` copies sample COGs to those keys on the
local S3, so building from the catalog entries reads real bytes through the
entries' href rewrites. The sample scenes give the footprints and pixels; each
collection uses another projection-extension form (``proj:epsg``, ``proj:code``,
``proj:wkt2``, ``proj:projjson``) so all four are read end to end.
"""

from __future__ import annotations

import copy
from typing import Any

from pyproj import CRS

SAMPLE_BUCKET = "rasteret-sample"
LANDSAT_COG = "image/vnd.stac.geotiff; cloud-optimized=true"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def _key(href: str) -> str:
    return href.split(f"s3://{SAMPLE_BUCKET}/", 1)[1]


def landsat_items(sample: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Landsat C2 L2 items (hrefs on landsatlook, alternates on s3://usgs-landsat) and the copies they need."""
    items, copies = [], {}
    for i, s2 in enumerate(sample[:3]):
        day = s2["properties"]["datetime"][:10].replace("-", "")
        scene = f"LC09_L2SP_192028_{day}_{day}_02_T1"
        folder = f"collection02/level-2/standard/oli-tirs/{day[:4]}/192/028/{scene}"
        assets: dict[str, Any] = {}
        for key, band, source in (("red", "SR_B4", "red"), ("nir08", "SR_B5", "nir"), ("qa_pixel", "QA_PIXEL", "blue")):
            name = f"{folder}/{scene}_{band}.TIF"
            copies[f"usgs-landsat/{name}"] = _key(s2["assets"][source]["href"])
            assets[key] = {
                "href": f"https://landsatlook.usgs.gov/data/{name}",
                "type": LANDSAT_COG,
                "roles": ["cloud", "cloud-shadow", "snow-ice", "water-mask"] if key == "qa_pixel" else ["data"],
                "alternate": {"s3": {"storage:platform": "AWS", "storage:requester_pays": True,
                                     "href": f"s3://usgs-landsat/{name}"}},
            }
        assets["thumbnail"] = {"href": f"https://landsatlook.usgs.gov/data/{folder}/{scene}_thumb_small.jpeg",
                               "type": "image/jpeg", "roles": ["thumbnail"]}
        assets["mtl.json"] = {"href": f"https://landsatlook.usgs.gov/data/{folder}/{scene}_MTL.json",
                              "type": "application/json", "roles": ["metadata"]}
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": scene, "collection": "landsat-c2-l2",
            "geometry": s2["geometry"], "bbox": s2["bbox"], "links": [],
            "properties": {"datetime": s2["properties"]["datetime"], "eo:cloud_cover": 10.0 * i,
                           "platform": "landsat-9", "instruments": ["oli", "tirs"], "landsat:wrs_path": "192",
                           "landsat:wrs_row": "028", "landsat:collection_category": "T1", "proj:epsg": 32632},
            "assets": assets,
        })
    return items, copies


def naip_items(sample: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """NAIP items (one 4-band ``image`` asset on the requester-pays s3://naip-analytic)."""
    items, copies = [], {}
    for i, s2 in enumerate(sample[:2]):
        name = f"ca/2022/60cm/rgbir_cog/38122/m_3812201_ne_10_060_2022051{i}.tif"
        copies[f"naip-analytic/{name}"] = _key(s2["assets"]["green"]["href"])
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": f"ca_m_3812201_ne_10_060_2022051{i}",
            "collection": "naip", "geometry": s2["geometry"], "bbox": s2["bbox"], "links": [],
            "properties": {"datetime": s2["properties"]["datetime"], "naip:state": "ca", "naip:year": "2022",
                           "gsd": 0.6, "proj:code": "EPSG:32632"},
            "assets": {"image": {"href": f"s3://naip-analytic/{name}", "type": COG, "roles": ["data"],
                                 "eo:bands": [{"name": n} for n in ("Red", "Green", "Blue", "NIR")]},
                       "metadata": {"href": f"s3://naip-analytic/{name[:-4]}.txt", "type": "text/plain",
                                    "roles": ["metadata"]}},
        })
    return items, copies


def dem_items(sample: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Copernicus DEM items (``data`` asset on the public copernicus-dem-30m bucket's HTTPS address)."""
    items, copies = [], {}
    for s2, form in ((sample[0], "proj:wkt2"), (sample[3], "proj:projjson")):
        crs = CRS.from_epsg(s2["properties"]["proj:epsg"])
        tile = f"Copernicus_DSM_COG_10_N45_00_E0{11 if crs.to_epsg() == 32632 else 12}_00_DEM"
        name = f"{tile}/{tile}.tif"
        copies[f"copernicus-dem-30m/{name}"] = _key(s2["assets"]["swir16"]["href"])
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": tile, "collection": "cop-dem-glo-30",
            "geometry": s2["geometry"], "bbox": s2["bbox"], "links": [],
            "properties": {"datetime": "2021-04-22T00:00:00Z", "gsd": 30,
                           form: crs.to_wkt() if form == "proj:wkt2" else crs.to_json_dict()},
            "assets": {"data": {"href": f"https://copernicus-dem-30m.s3.amazonaws.com/{name}", "type": COG,
                                "roles": ["data"]}},
        })
    return items, copies


def sentinel2_items(sample: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Earth Search Sentinel-2 items as served (hrefs on sentinel-cogs' HTTPS address)."""
    items, copies = [], {}
    for s2 in copy.deepcopy(sample):
        for asset in s2["assets"].values():
            key = _key(asset["href"]).replace("cogs/sentinel-2-l2a/", "sentinel-s2-l2a-cogs/")
            copies[f"sentinel-cogs/{key}"] = _key(asset["href"])
            asset["href"] = f"https://sentinel-cogs.s3.us-west-2.amazonaws.com/{key}"
        items.append(s2)
    return items, copies


def stage_objects(s3: Any, copies: dict[str, str]) -> None:
    """Copy sample objects (server side) to the real archives' buckets and keys on the local S3."""
    client = s3.client()
    try:
        for bucket in sorted({target.split("/", 1)[0] for target in copies}):
            s3.create_bucket(bucket)
        for target, source in copies.items():
            if not target.endswith((".tif", ".TIF")):
                continue
            bucket, key = target.split("/", 1)
            client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": SAMPLE_BUCKET, "Key": source})
    finally:
        client.close()
