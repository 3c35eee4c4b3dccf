"""One benchmark case by one reader, in a fresh process: ``python -m bench.peers SPEC.json``.

``bench.suite`` starts one process per (case, reader, latency), so that the first run is cold
(imports, clients, connections) and the next ``repeat`` runs are warm. The spec (JSON) names the
case, the reader, the S3 endpoint (the latency proxy), the scenes and bands, the AOI (WKB hex, in
the rasters' CRS) and where to save the arrays of the first run (``.npz``); the last line printed
is the result as JSON: cold and warm seconds, the reader's own request and byte counts where it
keeps them, the output size and the process's peak RSS.

Readers: ``rasteret`` (this project: ``Collection.read_numpy`` on the indexed collection;
``build_from_stac`` for B1), ``async-geotiff`` (``GeoTIFF.open`` + ``read(window=...)`` on an
obstore ``S3Store``, every asset in flight at once, masked as ``rasterio.mask`` does) and
``rasterio`` (16 threads, ``rasterio.mask.mask(crop=True, filled=True)`` on ``/vsis3/``, GDAL's
recommended COG settings). ``bench/legacy_rasteret.py`` runs rasteret 0.4.1 on its own Python.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # before any heavy import: cold times count imports

GDAL_COG_SETTINGS: dict[str, str | int] = {
    "AWS_HTTPS": "NO",
    "AWS_VIRTUAL_HOSTING": "FALSE",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "VSI_CACHE": "TRUE",
    # each run opens its files afresh, as a new process would: GDAL keeps no bytes of a closed file
    "CPL_VSIL_CURL_NON_CACHED": "/vsis3/bench/",
    "GDAL_CACHEMAX": 512 * 2**20,  # rasterio passes it to GDALSetCacheMax64: bytes
    "GDAL_NUM_THREADS": "ALL_CPUS",
}
RASTERIO_THREADS = 16


def peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------- masking as rasterio.mask does


class _Grid:
    """What ``rasterio.features.geometry_window`` reads of a dataset."""

    def __init__(self, transform: Any, width: int, height: int) -> None:
        self.transform, self.width, self.height = transform, width, height


def mask_window(transform: Any, width: int, height: int, shape: Any) -> tuple[Any, Any]:
    """The crop window of ``rasterio.mask.mask(crop=True)`` and its inside-the-shape mask."""
    from affine import Affine
    from rasterio.features import geometry_mask, geometry_window

    window = geometry_window(_Grid(Affine(*tuple(transform)[:6]), width, height), [shape])
    col, row, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    win_transform = Affine(*tuple(transform)[:6]) * Affine.translation(col, row)
    inside = geometry_mask([shape], out_shape=(h, w), transform=win_transform, invert=True)
    return (col, row, w, h), inside


# ---------------------------------------------------------------- the readers


def _aoi(spec: dict[str, Any]) -> Any:
    import shapely

    return shapely.from_wkb(bytes.fromhex(spec["aoi_wkb"]))


def _rasteret(spec: dict[str, Any]) -> tuple[Any, Any]:
    """Return (setup, run) for this project; ``run()`` returns (arrays, requests, bytes)."""
    import rasteret_core as rc

    settings = rc.Settings.from_env()
    case = spec["case"]
    if case == "B1":
        import uuid

        def run_build() -> tuple[list[Any], int | None, int | None]:
            name = f"b1-{uuid.uuid4().hex}"  # a new collection every run
            uri = (str(Path(spec["table"]).parent / name) if spec.get("table_on") == "local"
                   else f"s3://{spec['tables_bucket']}/{name}")
            col = rc.build_from_stac(stac_api=spec["stac_api"], collection=spec["collection"], uri=uri,
                                     bands={b: b for b in spec["bands"]}, settings=settings)
            assert len(col) == len(spec["scenes"]), (uri, len(col))
            assert col.version == 0, (uri, col.version)  # one commit: this build created the table holding its rows
            return [], None, None

        return None, run_build
    col = rc.load(spec["table"], settings=settings)
    bands = spec["bands"]
    if case == "points":
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        xs, ys = _points(spec)
        table = pa.table({"x": xs, "y": ys})
        one = col.where(pc.field("id") == spec["points"]["scene"])

        def run_points() -> tuple[list[Any], int | None, int | None]:
            out, io = one.sample_table(table, [spec["points"]["band"]], x_column="x", y_column="y",
                                       geometry_crs=spec["aoi_crs"])
            return [np.asarray(out["value"].to_numpy(zero_copy_only=False))], io.requests, io.bytes

        return None, run_points
    aoi = _aoi(spec)

    def run_read() -> tuple[list[Any], int | None, int | None]:
        result = col.read_numpy(aoi, bands, geometry_crs=spec["aoi_crs"])
        return [result.data], result.stats.requests, result.stats.bytes

    return None, run_read


def _obstore(spec: dict[str, Any]) -> Any:
    from obstore.store import S3Store

    s3 = spec["s3"]
    return S3Store(spec["bucket"], endpoint=s3["endpoint"], access_key_id=s3["key"],
                   secret_access_key=s3["secret"], region=s3["region"], virtual_hosted_style_request=False,
                   client_options={"allow_http": True})


def _async_geotiff(spec: dict[str, Any]) -> tuple[Any, Any]:
    import asyncio

    import numpy as np
    from async_geotiff import GeoTIFF, Window

    store = _obstore(spec)
    keys = [f"{scene}/{band}.tif" for scene in spec["scenes"] for band in spec["bands"]]
    if spec["case"] == "B1":

        async def opens() -> None:
            await asyncio.gather(*(GeoTIFF.open(k, store=store) for k in keys))

        def run_opens() -> tuple[list[Any], int | None, int | None]:
            asyncio.run(opens())
            return [], None, None

        return None, run_opens
    if spec["case"] == "points":
        return None, None
    aoi = _aoi(spec)

    async def one(key: str) -> Any:
        tiff = await GeoTIFF.open(key, store=store)
        (col, row, w, h), inside = mask_window(tiff.transform, tiff.width, tiff.height, aoi)
        arr = await tiff.read(window=Window(col_off=col, row_off=row, width=w, height=h))
        fill = tiff.nodata if tiff.nodata is not None else 0
        return np.where(inside, arr.data[0], np.asarray(fill, dtype=arr.data.dtype))

    async def reads() -> list[Any]:
        return await asyncio.gather(*(one(k) for k in keys))

    def run_reads() -> tuple[list[Any], int | None, int | None]:
        windows = asyncio.run(reads())
        nb = len(spec["bands"])
        return [np.stack([np.stack(windows[i:i + nb]) for i in range(0, len(windows), nb)])], None, None

    return None, run_reads


def _rasterio(spec: dict[str, Any]) -> tuple[Any, Any]:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import rasterio
    import rasterio.mask
    from rasterio.session import AWSSession

    s3 = spec["s3"]
    session = AWSSession(aws_access_key_id=s3["key"], aws_secret_access_key=s3["secret"], region_name=s3["region"],
                         endpoint_url=s3["endpoint"].removeprefix("http://"))
    paths = [f"/vsis3/{spec['bucket']}/{scene}/{band}.tif" for scene in spec["scenes"] for band in spec["bands"]]
    case = spec["case"]
    pool = ThreadPoolExecutor(RASTERIO_THREADS)

    def in_env(fn: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            with rasterio.Env(session=session, **GDAL_COG_SETTINGS):
                return fn(*args)
        return wrapped

    if case == "B1":

        @in_env
        def open_one(path: str) -> None:
            with rasterio.open(path) as src:
                assert src.block_shapes

        def run_opens() -> tuple[list[Any], int | None, int | None]:
            list(pool.map(open_one, paths))
            return [], None, None

        return None, run_opens
    if case == "points":
        xs, ys = _points(spec)
        path = f"/vsis3/{spec['bucket']}/{spec['points']['scene']}/{spec['points']['band']}.tif"

        @in_env
        def sample() -> Any:
            with rasterio.open(path) as src:
                return np.fromiter((v[0] for v in src.sample(zip(xs, ys, strict=True), indexes=1)),
                                   dtype=np.uint16, count=len(xs))

        def run_sample() -> tuple[list[Any], int | None, int | None]:
            return [sample()], None, None

        return None, run_sample
    aoi = _aoi(spec)

    @in_env
    def read_one(path: str) -> Any:
        with rasterio.open(path) as src:
            data, _ = rasterio.mask.mask(src, [aoi], crop=True, filled=True, nodata=src.nodata)
            return data[0]

    def run_reads() -> tuple[list[Any], int | None, int | None]:
        windows = list(pool.map(read_one, paths))
        nb = len(spec["bands"])
        return [np.stack([np.stack(windows[i:i + nb]) for i in range(0, len(windows), nb)])], None, None

    return None, run_reads


def _points(spec: dict[str, Any]) -> tuple[Any, Any]:
    """``n`` random points over the scene (UTM x/y), the same in every process for a seed."""
    import numpy as np

    p = spec["points"]
    rng = np.random.default_rng(p["seed"])
    return p["x0"] + rng.uniform(0, p["extent"], p["n"]), p["y0"] - rng.uniform(0, p["extent"], p["n"])


READERS = {"rasteret": _rasteret, "async-geotiff": _async_geotiff, "rasterio": _rasterio}


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the spec's case: once cold (timed from process start), ``repeat`` times warm."""
    _, run = READERS[spec["peer"]](spec)
    if run is None:
        return {"skipped": f"{spec['peer']} has no API for this case"}
    return time_runs(run, spec)


def time_runs(run: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``run()`` (arrays, requests, bytes) once cold (timed from process start), then ``repeat`` times warm.

    The cold run's arrays go to ``spec["out"]`` (for the equality check) when it is set.
    """
    arrays, requests, nbytes = run()
    cold = time.perf_counter() - STARTED
    if spec.get("out"):
        import numpy as np

        np.savez(spec["out"], *arrays)
    output_bytes = sum(int(a.nbytes) for a in arrays)
    del arrays
    warm = []
    for _ in range(spec.get("repeat", 3)):
        started = time.perf_counter()
        run()
        warm.append(time.perf_counter() - started)
    return {"cold": cold, "warm": warm, "warm_median": statistics.median(warm) if warm else None,
            "requests": requests, "bytes": nbytes, "output_bytes": output_bytes, "peak_rss_mib": peak_rss_mib()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    os.environ.update(spec.get("env", {}))
    print(json.dumps(run_case(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
