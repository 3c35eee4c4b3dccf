"""Read benchmark: Rasteret against a rasterio/GDAL loop on the same COGs, through S3.

Run: ``python -m bench.reads [--scale 2] [--aois 24]``. It makes the sample
archive, serves it from SeaweedFS on loopback, indexes it, then reads the same
random AOIs (every record, two bands) three ways and prints times and ratios:

- ``rasterio loop``: ``rasterio.open("/vsis3/...")`` + ``rasterio.mask.mask`` per AOI,
  record and band, as a user script does;
- ``rasteret get_numpy``: one call per AOI;
- ``rasteret get_table``: one call for all AOIs.

It also prints Rasteret's requests and bytes against the minimum (the bytes of
the tiles touched; one request per run of adjacent tiles), and checks that
every array equals rasterio's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

import rasteret_core as rc
from infra.local.seaweedfs import seaweedfs
from rasteret_core.read.grid import plan_stack
from rasteret_core.read.planner import coalesce_ranges
from rasteret_demo.archive import make_sample_archive

BANDS = ["red", "nir"]


def _aois(col: rc.Collection, n: int, seed: int) -> list[shapely.Geometry]:
    """Random boxes and rotated polygons (50 to 600 px of 10 m) inside the 32N scenes' footprint only."""
    rng = np.random.default_rng(seed)
    all_rows = col.to_arrow().to_pylist()
    rows = [r for r in all_rows if r["crs"] == "EPSG:32632"]
    foot = shapely.from_wkb(rows[0]["geometry"])
    other = shapely.union_all([shapely.from_wkb(r["geometry"]) for r in all_rows if r["crs"] != "EPSG:32632"])
    header = rows[0]["assets"]["red"]["header"]
    a, _, c, _, e, f = header["transform"]
    out: list[shapely.Geometry] = []
    while len(out) < n:
        size = rng.uniform(50, 600)
        col0, row0 = rng.uniform(0, 1536 - size, 2)
        box = shapely.box(c + col0 * a, f + (row0 + size) * e, c + (col0 + size) * a, f + row0 * e)
        geom = shapely.affinity.rotate(box, rng.uniform(0, 45)) if len(out) % 2 else box
        geom84 = _to_crs84(geom)
        if foot.contains(geom84) and not other.intersects(geom84):
            out.append(geom84)
    return out


def _to_crs84(geom: shapely.Geometry) -> shapely.Geometry:
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:32632", "OGC:CRS84", always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _rasterio_loop(col: rc.Collection, aois: list[shapely.Geometry], s3: object) -> list[np.ndarray]:
    import rasterio
    import rasterio.mask
    from pyproj import Transformer
    from rasterio.session import AWSSession

    session = AWSSession(aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,  # type: ignore[attr-defined]
                         region_name="us-east-1", endpoint_url=s3.endpoint_url.removeprefix("http://"))  # type: ignore[attr-defined]
    out = []
    with rasterio.Env(session=session, AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE",
                      GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for aoi in aois:
            rows = sorted(col.subset(geometries=aoi).to_arrow().to_pylist(), key=lambda r: (r["datetime"], r["id"]))
            per_record = []
            for row in rows:
                per_band = []
                for band in BANDS:
                    href = row["assets"][band]["href"].replace("s3://", "/vsis3/")
                    with rasterio.open(href) as src:
                        tr = Transformer.from_crs("OGC:CRS84", src.crs, always_xy=True)
                        shape = shapely.transform(aoi, lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
                        data, _ = rasterio.mask.mask(src, [shape], crop=True, filled=True, nodata=src.nodata)
                        per_band.append(data[0])
                per_record.append(per_band)
            out.append(np.array(per_record))
    return out


def _minimum(col: rc.Collection, aois: list[shapely.Geometry]) -> tuple[int, int]:
    """The fewest requests (adjacent tiles merged, no gap) and bytes (each tile touched once)
    that reading every AOI needs.
    """
    tiles: dict[str, set[tuple[int, int]]] = {}
    for aoi in aois:
        plan, _, _ = plan_stack(col.to_arrow(), aoi, BANDS, settings=col.settings)
        for chunk in plan.chunks:
            offsets, counts = chunk.image.tile_offsets, chunk.image.tile_byte_counts
            tiles.setdefault(chunk.uri, set()).update((int(offsets[t]), int(offsets[t] + counts[t])) for t in chunk.tiles)
    requests = sum(len(coalesce_ranges(sorted(r), gap=0, max_bytes=2**62)) for r in tiles.values())
    return requests, sum(e - s for r in tiles.values() for s, e in r)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2, help="sample image size multiplier (2: 3072 px scenes)")
    parser.add_argument("--aois", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rasteret-bench-") as tmp:
        t0 = time.perf_counter()
        archive = make_sample_archive(Path(tmp) / "archive", scale=args.scale)
        print(f"sample archive (scale {args.scale}): {len(archive.cog_paths)} COGs in {time.perf_counter() - t0:.1f} s")
        with seaweedfs(Path(tmp) / "s3") as s3:
            s3.create_bucket("bench")
            s3.upload_dir(archive.root, "bench")
            os.environ.update(s3.env())
            settings = rc.Settings.from_env()
            items = archive.items_with_href_base("s3://bench")

            t0 = time.perf_counter()
            enriched = rc.engine.enrich_records(rc.engine.records_from_items(items, bands={b: b for b in BANDS}), settings=settings)
            t_enrich = time.perf_counter() - t0
            col = rc.Collection(enriched.table, settings=settings)
            print(f"indexed {enriched.parsed} headers in {t_enrich:.2f} s with {enriched.stats.requests} requests")

            aois = _aois(col, args.aois, args.seed)
            t0 = time.perf_counter()
            want = _rasterio_loop(col, aois, s3)
            t_gdal = time.perf_counter() - t0

            t0 = time.perf_counter()
            got = [col.get_numpy(aoi, BANDS) for aoi in aois]
            t_numpy = time.perf_counter() - t0

            t0 = time.perf_counter()
            table, stats = col.get_table(aois, BANDS)
            t_table = time.perf_counter() - t0

            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)
            min_requests, min_bytes = _minimum(col, aois)
            chunks = sum(g.shape[0] * g.shape[1] for g in got)

    print(f"\n{len(aois)} AOIs x 3 records x {len(BANDS)} bands = {chunks} windows; every array equals rasterio's")
    print(f"{'method':<24}{'seconds':>10}{'vs rasterio':>14}")
    print(f"{'rasterio loop (/vsis3/)':<24}{t_gdal:>10.2f}{1.0:>13.1f}x")
    print(f"{'rasteret get_numpy':<24}{t_numpy:>10.2f}{t_gdal / t_numpy:>13.1f}x")
    print(f"{'rasteret get_table':<24}{t_table:>10.2f}{t_gdal / t_table:>13.1f}x")
    print(f"\nget_table I/O: {stats.requests} requests (minimum {min_requests}), "
          f"{stats.bytes:,} bytes (minimum {min_bytes:,}, {stats.bytes / min_bytes:.3f}x); {table.num_rows} rows")


if __name__ == "__main__":
    main()
