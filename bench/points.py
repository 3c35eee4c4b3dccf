"""Point-sampling benchmark: 1,000,000 points over one scene, Rasteret against rasterio's ``sample``, through S3.

Run: ``python -m bench.points [--points 1000000] [--size 10980]``. It writes one
Sentinel-2-like scene (``--size`` px square, uint16, DEFLATE + predictor 2, 512 px
tiles, overviews, nodata 0 in a cut corner; GDAL's COG driver), serves it from
SeaweedFS on loopback, indexes it as a one-record collection, and samples the same
random points (uniform over the raster, UTM x/y) three ways, each in a fresh process
(so the peak RSS, from ``VmHWM``, is the sampling's own):

- ``rasteret``: ``Collection.sample_table`` with the default settings (adjacent tile
  ranges merged into fewer requests);
- ``rasteret, ranges unmerged``: the same with ``RASTERET_MAX_REQUEST_BYTES=1``, so
  each request is one tile: its request count is the touched-tile count, or a tile
  was read twice;
- ``rasterio``: ``rasterio.open("/vsis3/...")`` + ``src.sample(points)``, as a user
  script does.

It prints requests against the touched-tile count (rasterio's blocks holding a point),
bytes against the minimum (those tiles' byte counts), times against rasterio's and the
peak RSS of each, and checks every value equals rasterio's. The scene and SeaweedFS's
data are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUCKET = "bench-points"
KEY = "scene/B04.tif"
X0, Y0, PIXEL = 600000.0, 5100000.0, 10.0  # upper-left corner in EPSG:32632, 10 m pixels
CRS = "EPSG:32632"


def _peak_rss_mib() -> int:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def write_scene(path: Path, size: int, seed: int) -> None:
    """A smooth field plus noise (DEFLATE compresses it about as much as real reflectance), nodata 0 in a corner."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    data = np.empty((size, size), dtype=np.uint16)
    cols = np.arange(size, dtype=np.float32)
    for r0 in range(0, size, 1024):  # in bands of rows, to bound memory
        rows = np.arange(r0, min(r0 + 1024, size), dtype=np.float32)[:, None]
        field = 1500 + 700 * np.sin(cols / 611.0) * np.cos(rows / 733.0) + 300 * np.sin((cols + rows) / 97.0)
        band = field + rng.integers(0, 64, (len(rows), size))
        band[(cols[None, :] + (size - rows)) < size * 0.3] = 0  # the lower-left corner is outside the swath
        data[r0 : r0 + len(rows)] = band.astype(np.uint16)
    with rasterio.open(path, "w", driver="COG", width=size, height=size, count=1, dtype="uint16", crs=CRS,
                       transform=from_origin(X0, Y0, PIXEL, PIXEL), nodata=0, compress="DEFLATE", predictor=2,
                       blocksize=512, num_threads=2) as dst:
        dst.write(data, 1)


def points(size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points over the raster (UTM x/y), the same in every process for a seed."""
    rng = np.random.default_rng(seed + 1)
    return X0 + rng.uniform(0, size * PIXEL, n), Y0 - rng.uniform(0, size * PIXEL, n)


def touched(path: Path, xs: np.ndarray, ys: np.ndarray) -> tuple[int, int]:
    """The tiles (rasterio's blocks) holding a point, and their bytes: the least any sampler can read."""
    import rasterio
    from rasterio.transform import rowcol

    with rasterio.open(path) as src:
        r, c = rowcol(src.transform, xs, ys)
        bh, bw = src.block_shapes[0]
        blocks = np.unique(np.column_stack([np.asarray(r) // bh, np.asarray(c) // bw]), axis=0)
        sizes = [src.block_size(1, int(i), int(j)) for i, j in blocks]
    return sum(1 for s in sizes if s), sum(sizes)


def _worker(kind: str, size: int, n: int, seed: int, out: str) -> dict:
    """One timed sampling in this (fresh) process; values to ``out`` (.npy)."""
    xs, ys = points(size, n, seed)
    href = f"s3://{BUCKET}/{KEY}"
    if kind == "rasterio":
        import rasterio
        from rasterio.session import AWSSession

        endpoint = os.environ["AWS_ENDPOINT_URL"].removeprefix("http://")
        session = AWSSession(aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                             region_name="us-east-1", endpoint_url=endpoint)
        with rasterio.Env(session=session, AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE",
                          GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            rss_ready = _peak_rss_mib()
            t0 = time.perf_counter()
            with rasterio.open(href.replace("s3://", "/vsis3/")) as src:
                values = np.fromiter((v[0] for v in src.sample(zip(xs, ys, strict=True), indexes=1)), dtype=np.uint16, count=n)
            seconds = time.perf_counter() - t0
        result = {"seconds": seconds, "rows": n}
    else:
        import pyarrow as pa
        import shapely
        from pyproj import Transformer

        import rasteret_core as rc

        settings = rc.Settings.from_env()
        to84 = Transformer.from_crs(CRS, "OGC:CRS84", always_xy=True)
        box = shapely.box(X0, Y0 - size * PIXEL, X0 + size * PIXEL, Y0).buffer(100.0, join_style="mitre")
        footprint = shapely.transform(box.segmentize(500.0),
                                      lambda xy: np.column_stack(to84.transform(xy[:, 0], xy[:, 1])))
        records = pa.table({"id": ["scene"], "datetime": ["2024-05-01T10:00:00Z"],
                            "geometry": [shapely.to_wkb(footprint)],
                            "assets": [{"B04": {"href": href, "type": "image/tiff; application=geotiff",
                                                "roles": ["data"]}}]})
        col = rc.build_from_table(records, bands={"B04": "B04"}, settings=settings)  # parses the header
        table = pa.table({"x": xs, "y": ys})
        rss_ready = _peak_rss_mib()
        t0 = time.perf_counter()
        out_table, io = col.sample_table(table, ["B04"], x_column="x", y_column="y", geometry_crs=CRS)
        seconds = time.perf_counter() - t0
        values = out_table["value"].to_numpy()
        result = {"seconds": seconds, "rows": out_table.num_rows, "requests": io.requests, "bytes": io.bytes}
    np.save(out, values)
    return {**result, "rss_ready_mib": rss_ready, "peak_rss_mib": _peak_rss_mib()}


def _run_worker(kind: str, args: argparse.Namespace, out: Path, extra_env: dict[str, str]) -> dict:
    argv = [sys.executable, "-m", "bench.points", "--worker", kind, "--size", str(args.size),
            "--points", str(args.points), "--seed", str(args.seed), "--out", str(out)]
    child = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **extra_env}, check=False)
    if child.returncode:
        raise SystemExit(f"{kind} worker failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.points", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=10980, help="scene width and height in pixels (Sentinel-2: 10980)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.size, args.points, args.seed, args.out)))
        return 0

    from infra.local.seaweedfs import seaweedfs

    with tempfile.TemporaryDirectory(prefix="rasteret-bench-points-") as tmp:
        folder = Path(tmp)
        scene = folder / "B04.tif"
        t0 = time.perf_counter()
        write_scene(scene, args.size, args.seed)
        print(f"scene: {args.size} x {args.size} px uint16, {scene.stat().st_size / 2**20:.0f} MiB, "
              f"written in {time.perf_counter() - t0:.1f} s")
        xs, ys = points(args.size, args.points, args.seed)
        tiles, tile_bytes = touched(scene, xs, ys)
        del xs, ys
        with seaweedfs(folder / "s3") as s3:
            s3.create_bucket(BUCKET)
            client = s3.client()
            try:
                client.upload_file(str(scene), BUCKET, KEY)
                env = s3.env()
                runs = {
                    "rasteret": _run_worker("rasteret", args, folder / "rasteret.npy", env),
                    "rasteret, ranges unmerged": _run_worker(
                        "rasteret", args, folder / "unmerged.npy", {**env, "RASTERET_MAX_REQUEST_BYTES": "1"}),
                    "rasterio sample (/vsis3/)": _run_worker("rasterio", args, folder / "rasterio.npy", env),
                }
            finally:  # the benchmark's data leaves SeaweedFS before it stops (its folder goes with tmp)
                client.delete_object(Bucket=BUCKET, Key=KEY)
                client.delete_bucket(Bucket=BUCKET)
                client.close()
        want = np.load(folder / "rasterio.npy")
        for name in ("rasteret", "unmerged"):
            np.testing.assert_array_equal(np.load(folder / f"{name}.npy"), want)

    gdal = runs["rasterio sample (/vsis3/)"]["seconds"]
    print(f"\n{args.points:,} points over one {args.size} px scene; {tiles} tiles touched "
          f"({tile_bytes:,} bytes); every value equals rasterio's")
    print(f"{'method':<28}{'seconds':>9}{'vs rasterio':>13}{'requests':>10}{'vs tiles':>10}{'bytes':>15}"
          f"{'vs minimum':>12}{'peak RSS MiB':>14}{'(ready)':>9}")
    for name, run in runs.items():
        requests = run.get("requests")
        read = run.get("bytes")
        print(f"{name:<28}{run['seconds']:>9.2f}{gdal / run['seconds']:>12.1f}x"
              f"{requests if requests is not None else '-':>10}"
              f"{f'{requests / tiles:.3f}' if requests is not None else '-':>10}"
              f"{f'{read:,}' if read is not None else '-':>15}"
              f"{f'{read / tile_bytes:.3f}x' if read is not None else '-':>12}"
              f"{run['peak_rss_mib']:>14}{run['rss_ready_mib']:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
