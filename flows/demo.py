"""The demo: the main job end to end on local defaults.

Makes the sample archive, serves its STAC items on a loopback STAC API, runs
the ingestion flow into a local Delta table, runs the extraction flow for a few
AOIs, prints what happened, and (with matplotlib) draws a true-colour quicklook
around the fields and a time series of their mean NIR. Everything runs on
Prefect's ephemeral API.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from rich.console import Console
from rich.table import Table

import rasteret_core as rc
from rasteret_core.engine import read_table

from .extract import extract_aois
from .ingest import ingest_collection

# AOIs (lon/lat) with business columns: three in the 32N scenes (the first crosses their nodata
# edge), one in the 33N scenes.
DEMO_AOIS = [
    ("field-001", "wheat", shapely.Polygon([(11.83, 45.755), (11.845, 45.755), (11.848, 45.765), (11.83, 45.764)])),
    ("field-002", "maize", shapely.box(11.90, 45.77, 11.91, 45.777)),
    ("field-003", "rice", shapely.Point(11.93, 45.83).buffer(0.004)),
    ("field-004", "vineyard", shapely.box(12.00, 45.68, 12.01, 45.688)),
]


def write_demo_aois(path: Path) -> Path:
    """Write the demo AOIs as GeoParquet (WKB in OGC:CRS84, GeoParquet 1.1 metadata)."""
    table = pa.table(
        {
            "field_id": [a[0] for a in DEMO_AOIS],
            "crop": [a[1] for a in DEMO_AOIS],
            "geometry": [shapely.to_wkb(a[2]) for a in DEMO_AOIS],
        }
    )
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"]}}}
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), path)
    return path


def run_demo(workdir: Path, *, scale: int = 1, console: Console | None = None, plots: bool = False) -> dict:
    """Run the demo in ``workdir`` (replaced if it exists); return the numbers it printed.

    With ``plots`` it also writes ``quicklook.png`` (true colour around the three fields of
    the 32N scenes, their outlines over it) and ``timeseries.png`` (each field's mean NIR
    per record) in ``workdir`` (needs matplotlib: ``rasteret[plot]``).

    Raises:
        ImportError: The demo extra (rasterio, rustac) is missing; the message says how to install it.
    """
    from rasteret_demo import check_demo_extra

    check_demo_extra()
    from rasteret_demo.archive import make_sample_archive
    from rasteret_demo.stac import stac_api

    from ._prefect_server import wait_ready

    console = console or Console()
    workdir = workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with console.status("writing the sample archive"):
        archive = make_sample_archive(workdir / "archive", scale=scale)
        items_path = archive.write_items(workdir / "items.json")
        collection_path = archive.write_collection(workdir / "collection.json")
    console.print(f"sample archive: {len(archive.items)} scenes, {len(archive.cog_paths)} COGs in {archive.root}")

    col_uri = str(workdir / "collection")
    out_uri = str(workdir / "extraction")
    aois = write_demo_aois(workdir / "aois.parquet")
    with stac_api(items_path, collection_path=collection_path) as api:
        console.print(f"STAC API (rustac serve) at {api}")
        wait_ready()  # Prefect's temporary server, if the CLI started it early: up before the first flow
        ingested = ingest_collection(api, "sentinel-2-l2a", col_uri, bbox=[11.0, 45.0, 13.0, 46.5],
                                     datetime="2024-01-01/2024-12-31")
    col = rc.load(col_uri)
    console.print(f"collection {col_uri}: version {col.version}, {len(col)} records, bands {col.bands}; "
                  f"{ingested.headers_parsed} headers parsed with {ingested.requests} requests, "
                  f"{ingested.bytes_read:,} bytes")

    bands = ["red", "nir"]
    extracted = extract_aois(col_uri, str(aois), bands, out_uri, batch_size=2)
    out, version = read_table(out_uri, settings=col.settings)
    table = Table(title=f"extraction {out_uri} v{version}")
    for name in ("field_id", "crop", "record_id", "band", "shape", "valid px", "mean", "min", "max"):
        table.add_column(name)
    for row in out.sort_by([("field_id", "ascending"), ("datetime", "ascending"), ("band", "ascending")]).to_pylist():
        data = np.asarray(row["data"])
        valid = data[data != 0]
        stats = (f"{valid.mean():.0f}", str(valid.min()), str(valid.max())) if valid.size else ("-", "-", "-")
        table.add_row(row["field_id"], row["crop"], row["record_id"], row["band"],
                      f"{row['height']}x{row['width']}", str(valid.size), *stats)
    console.print(table)
    console.print(f"{extracted.inputs} AOIs -> {extracted.rows} rows; read {extracted.requests} requests, "
                  f"{extracted.bytes_read:,} bytes in {extracted.seconds} s")
    done: dict = {"ingested": ingested, "extracted": extracted}
    if plots:
        done["pictures"] = write_demo_pictures(col, workdir)
        for drawn in done["pictures"].values():
            console.print(f"picture: {drawn['png']}")
    return done


def write_demo_pictures(col: rc.Collection, workdir: Path) -> dict[str, dict]:
    """The demo's PNGs: a true-colour quicklook around the 32N fields, and every field's mean NIR per record."""
    from ._pictures import aoi_means, write_quicklook, write_timeseries

    fields = [a[2] for a in DEMO_AOIS[:3]]
    around = shapely.box(*shapely.union_all(fields).buffer(0.01).bounds)
    names = [f"{a[0]} ({a[1]})" for a in DEMO_AOIS]
    quicklook = write_quicklook(col, around, "OGC:CRS84", ["red", "green", "blue"], workdir / "quicklook.png",
                                outlines=fields, labels=names[:3])
    aois = pa.table({"field_id": [a[0] for a in DEMO_AOIS], "geometry": [shapely.to_wkb(a[2]) for a in DEMO_AOIS]})
    series = aoi_means(col, aois, "OGC:CRS84", ["nir"], names)
    timeseries = write_timeseries(series, workdir / "timeseries.png", where="nir: mean of each demo field",
                                  source=f"{col.uri} v{col.version}", ylabel="mean of valid pixels (nir)")
    return {"quicklook": quicklook, "timeseries": timeseries}
