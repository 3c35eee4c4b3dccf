"""Real-world GeoTIFFs (issue 8): every file GDAL reads is read as GDAL reads it, through a built collection.

The files (``tests/realworld_matrix.py``: internal masks and mask overviews, alpha
samples, YCbCr JPEG as GDAL writes it, CRSs that are not EPSG codes, nodata GDAL
ignores, a rotated transform, PixelIsPoint, 1-bit samples, scale/offset) are
written by GDAL and uploaded to their own bucket. Each is built into a collection
the way users do it (``build_from_table``, one record per file, an asset whose
href is the ``s3://`` object; bands of a multi-band file by ``"image:N"``), and
``collection.get_numpy(aoi, bands)`` must equal, band by band, pixel for pixel,
``rasterio.mask.mask(src, [aoi in the raster CRS], crop=True, filled=True,
nodata=fill)`` on the local copy, where ``fill`` is the nodata GDAL reports (when in
the dtype's range), else 0. That includes GDAL's validity: the internal mask, the
alpha band, the nodata value, in the precedence GDAL applies.

AOIs are drawn in the raster's pixel space (boxes and polygons with holes:
inside, across the mask edge, around a hole, partly outside, the whole raster),
placed by GDAL's transform and handed to Rasteret in OGC:CRS84 (the oracle takes
them back to the raster CRS with pyproj, vertex by vertex); two more are given in
the raster CRS with vertices exactly on pixel edges and on pixel centres, where
GDAL's rasterization rule decides (not for the rotated file, where no vertex is
exactly anywhere after the inverse transform).

JPEG files are compared exactly too: Rasteret's JPEG decode is to match GDAL's
libjpeg 9 (fancy upsampling included), not merely come close. Files with
overviews are also read at ``overview=0`` against ``rasterio.open(path,
overview_level=0)``. The two files GDAL cannot place (GCPs only, nothing at all)
must be refused at build with an error naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import rasterio.mask
import shapely
from pyproj import CRS, Transformer

import rasteret_core as rc
from tests.realworld_matrix import CASES, Case, write_matrix

pytestmark = [
    # the GCP-only and ungeoreferenced files, opened by the oracle to show what GDAL makes of them
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]

BUCKET = "rasteret-realworld"
TABLES = "s3://rasteret-tables/realworld"
CRS84 = CRS.from_user_input("OGC:CRS84")
READ = [c for c in CASES if c.refused is None]
REFUSED = [c for c in CASES if c.refused is not None]
WITH_OVERVIEWS = [c for c in READ if c.has_overviews]
# Offset (in pixels) of the lon/lat AOIs' vertices, so that no pixel centre lies on their
# edges once they are back in the raster CRS (there "inside" would be a matter of rounding).
OFFSET = (0.0371, 0.0913)


# ------------------------------------------------------------------ the uploaded files


@dataclass
class Matrix:
    """The files on local disk (for the oracle) and on S3 (for Rasteret), and their collections."""

    root: Path
    settings: rc.Settings
    built: dict[str, rc.Collection | BaseException]

    def href(self, case: Case) -> str:
        return f"s3://{BUCKET}/{case.filename}"

    def path(self, case: Case) -> Path:
        return self.root / case.filename

    def collection(self, case: Case) -> rc.Collection:
        """The case's one-record collection (built once; a failed build fails every test of the case)."""
        if case.name not in self.built:
            try:
                self.built[case.name] = rc.build_from_table(
                    records([case], self), uri=f"{TABLES}/{case.name}", bands=band_map(self, case),
                    settings=self.settings)
            except Exception as exc:  # noqa: BLE001 - kept, and raised again by every test of the case
                self.built[case.name] = exc
        result = self.built[case.name]
        if isinstance(result, BaseException):
            raise result
        return result


@pytest.fixture(scope="module")
def matrix(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    root = tmp_path_factory.mktemp("realworld-matrix")
    settings = rc.Settings.from_env()  # the S3 settings, read while AWS_* are set
    with pytest.MonkeyPatch.context() as patch:
        # rasterio builds a boto3 session for every Env() while AWS_ACCESS_KEY_ID is set (~50 ms each);
        # the oracle reads local copies only, so hide the keys from it
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.delenv(key)
        write_matrix(root)
        s3.create_bucket(BUCKET)
        s3.upload_dir(root, BUCKET)
        yield Matrix(root, settings, {})


def file_bands(matrix: Matrix, case: Case) -> int:
    with rasterio.open(matrix.path(case)) as src:
        return src.count  # the COG driver turns an alpha band into a mask: ask GDAL


def band_map(matrix: Matrix, case: Case) -> dict[str, str]:
    """Collection band -> asset key: ``b1`` .. ``bN``, ``"image:N"`` for the bands of a multi-band file."""
    count = file_bands(matrix, case)
    return {"b1": "image"} if count == 1 else {f"b{i}": f"image:{i}" for i in range(1, count + 1)}


def footprint(case: Case, path: Path) -> shapely.Geometry:
    """The raster's outline in lon/lat, as a user would index it (the GCPs' hull; a token box without any)."""
    with rasterio.open(path) as src:
        if case.gcps:
            gcps, _ = src.gcps
            return shapely.MultiPoint([(g.x, g.y) for g in gcps]).convex_hull
        if src.crs is None:
            return shapely.box(0.0, 0.0, 0.01, 0.01)
        outline = shapely.segmentize(shapely.box(0, 0, src.width, src.height), max(src.width, src.height) / 16)
        return lonlat(pixel_to_crs(outline, src.transform), src.crs)


def records(cases: list[Case], matrix: Matrix) -> pa.Table:
    """One stac-geoparquet-shaped record per file: id, footprint (WKB, CRS84), datetime and an ``image`` asset."""
    rows = [
        {
            "id": case.name,
            "geometry": shapely.to_wkb(footprint(case, matrix.path(case))),
            "datetime": "2024-05-01T10:00:00Z",
            "assets": {"image": {"href": matrix.href(case), "type": "image/tiff; application=geotiff",
                                 "roles": ["data"]}},
        }
        for case in cases
    ]
    return pa.Table.from_pylist(rows)


# ------------------------------------------------------------------ AOIs


def pixel_to_crs(geom: shapely.Geometry, transform: rasterio.Affine) -> shapely.Geometry:
    a, b, c, d, e, f = tuple(transform)[:6]
    return shapely.transform(geom, lambda xy: np.column_stack((a * xy[:, 0] + b * xy[:, 1] + c,
                                                                d * xy[:, 0] + e * xy[:, 1] + f)))


def _transform(geom: shapely.Geometry, src: CRS, dst: CRS) -> shapely.Geometry:
    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def lonlat(geom: shapely.Geometry, raster_crs: Any) -> shapely.Geometry:
    return _transform(geom, CRS.from_wkt(raster_crs.to_wkt()), CRS84)


def to_raster_crs(geom: shapely.Geometry, raster_crs: Any) -> shapely.Geometry:
    """The oracle's own transform of a lon/lat AOI into GDAL's CRS of the raster, vertex by vertex."""
    return _transform(geom, CRS84, CRS.from_wkt(raster_crs.to_wkt()))


def _box(x0: float, y0: float, x1: float, y1: float) -> Callable[[int, int], shapely.Geometry]:
    return lambda w, h: shapely.box(x0 * w + OFFSET[0], y0 * h + OFFSET[1], x1 * w + OFFSET[0], y1 * h + OFFSET[1])


def _holed(w: int, h: int) -> shapely.Geometry:  # around the second hole of the mask, a hole of its own
    def ring(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
        return [(x * w + OFFSET[0], y * h + OFFSET[1]) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]

    return shapely.Polygon(ring(0.55, 0.45, 0.86, 0.81), [ring(0.63, 0.56, 0.71, 0.69)])


def _star(w: int, h: int) -> shapely.Geometry:  # concave, across the right edge of the raster
    cx, cy = 0.93 * w + OFFSET[0], 0.3 * h + OFFSET[1]
    radii = (0.16, 0.07, 0.14, 0.05, 0.17, 0.09, 0.12)
    return shapely.Polygon([(cx + r * w * math.cos(2 * math.pi * i / 7), cy + r * h * math.sin(2 * math.pi * i / 7))
                            for i, r in enumerate(radii)])


def _on_edges(w: int, h: int) -> shapely.Geometry:  # vertices on pixel corners: whole pixels, across hole 1
    return shapely.box(round(0.14 * w), round(0.10 * h), round(0.47 * w), round(0.45 * h))


def _on_centres(w: int, h: int) -> shapely.Geometry:  # vertices on pixel centres: edges run through centres
    def centre(fx: float, fy: float) -> tuple[float, float]:
        return math.floor(fx * w) + 0.5, math.floor(fy * h) + 0.5

    return shapely.Polygon([centre(0.15, 0.55), centre(0.58, 0.55), centre(0.58, 0.86), centre(0.36, 0.70),
                            centre(0.15, 0.86)])


@dataclass(frozen=True)
class Aoi:
    name: str
    pixels: Callable[[int, int], shapely.Geometry]  # (width, height) -> geometry in (col, row) space
    raster_crs: bool = False  # given in the raster CRS (exact vertices), else in OGC:CRS84


AOIS = (
    Aoi("inside", _box(0.42, 0.40, 0.58, 0.52)),
    Aoi("across_mask_edge", _box(0.02, 0.30, 0.22, 0.55)),
    Aoi("holed_around_hole", _holed),
    Aoi("partly_outside", _box(-0.15, 0.70, 0.25, 1.20)),
    Aoi("star_across_right_edge", _star),
    Aoi("whole_and_margin", _box(-0.1, -0.1, 1.1, 1.1)),
    Aoi("pixel_edges_raster_crs", _on_edges, raster_crs=True),
    Aoi("pixel_centres_raster_crs", _on_centres, raster_crs=True),
)
OVERVIEW_AOIS = AOIS[:4]


def aoi_params(cases: list[Case], aois: tuple[Aoi, ...]) -> list[Any]:
    return [pytest.param(case, aoi, id=f"{case.name}-{aoi.name}")
            for case in cases for aoi in aois
            if not (aoi.raster_crs and case.place is not None and case.place.rotation)]


def crs_argument(raster_crs: Any) -> str:
    """The raster's CRS as a user passes it: its EPSG code, else GDAL's WKT."""
    return raster_crs.to_string() if raster_crs.is_epsg_code else raster_crs.to_wkt()


# ------------------------------------------------------------------ comparison


def fill_of(src: Any) -> float:
    """The asset's nodata when GDAL applies it (in the dtype's range), else 0."""
    nodata = src.nodata
    if nodata is None:
        return 0
    if math.isnan(nodata):
        return nodata if np.dtype(src.dtypes[0]).kind == "f" else 0
    if np.dtype(src.dtypes[0]).kind in "iu":
        info = np.iinfo(src.dtypes[0])
        return nodata if info.min <= nodata <= info.max and nodata == int(nodata) else 0
    return nodata


def assert_band_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, GDAL {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, GDAL {want.dtype}"
    if not np.array_equal(got, want, equal_nan=got.dtype.kind == "f"):
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        fill_only = ((got == 0) != (want == 0)).sum()
        np.testing.assert_array_equal(
            got, want,
            err_msg=f"{what}: {int((diff > 0).sum())} of {diff.size} pixels differ, by up to {np.nanmax(diff):g} "
                    f"({int(fill_only)} where one side is 0)")


def check_read(matrix: Matrix, case: Case, aoi: Aoi, *, overview: int | None = None) -> None:
    col = matrix.collection(case)
    bands = col.bands
    with rasterio.open(matrix.path(case)) as full:  # AOIs are drawn on the full-resolution grid
        in_raster_crs = pixel_to_crs(aoi.pixels(full.width, full.height), full.transform)
        crs = full.crs
    if aoi.raster_crs:
        given, given_crs, oracle_geom = in_raster_crs, crs_argument(crs), in_raster_crs
    else:
        given = lonlat(in_raster_crs, crs)
        given_crs, oracle_geom = None, to_raster_crs(given, crs)
    opener = {} if overview is None else {"overview_level": overview}
    with rasterio.open(matrix.path(case), **opener) as src:
        fill = fill_of(src)
        want, _ = rasterio.mask.mask(src, [oracle_geom], crop=True, filled=True, nodata=fill,
                                     indexes=list(range(1, src.count + 1)))
    got = col.get_numpy(given, bands, geometry_crs=given_crs, overview=overview)
    what = case.name + ("" if overview is None else f" overview {overview}") + f" {aoi.name}"
    assert got.shape[:2] == (1, len(bands)), f"{what}: shape {got.shape}, GDAL {want.shape}"
    for i, band in enumerate(bands):
        assert_band_equal(got[0, i], want[i], f"{what} band {band} (fill {fill})")


# ------------------------------------------------------------------ tests


def test_the_matrix_is_small_and_written_by_gdal(matrix: Matrix) -> None:
    sizes = {case.name: matrix.path(case).stat().st_size for case in CASES}
    assert max(sizes.values()) < 300_000, {k: v for k, v in sizes.items() if v >= 300_000}
    with rasterio.open(matrix.path(next(c for c in CASES if c.name == "mask_and_nodata_uint16"))) as src:
        # GDAL's GTiff mask band is the internal mask even with a nodata value: the oracle says so
        assert src.nodata == 0 and [f.name for f in src.mask_flag_enums[0]] == ["per_dataset"]
    for case in READ:
        with rasterio.open(matrix.path(case)) as src:
            assert src.crs is not None and not src.transform.is_identity, case.name
            if case.alpha and case.cog is None:
                assert src.colorinterp[-1].name == "alpha", case.name
                assert [f.name for f in src.mask_flag_enums[0]] == ["per_dataset", "alpha"], case.name


@pytest.mark.parametrize(("case", "aoi"), aoi_params(READ, AOIS))
def test_get_numpy_equals_rasterio_mask(matrix: Matrix, case: Case, aoi: Aoi) -> None:
    check_read(matrix, case, aoi)


@pytest.mark.parametrize(("case", "aoi"), aoi_params(WITH_OVERVIEWS, OVERVIEW_AOIS))
def test_overview_reads_equal_rasterio_overview_level(matrix: Matrix, case: Case, aoi: Aoi) -> None:
    check_read(matrix, case, aoi, overview=0)


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_files_gdal_cannot_place_are_refused_at_build_naming_the_file(matrix: Matrix, case: Case) -> None:
    with rasterio.open(matrix.path(case)) as src:  # GDAL reads the pixels, but has no geotransform
        assert src.read(1).shape == (src.height, src.width)
        assert src.transform.is_identity and src.crs is None
    uri = f"{TABLES}/{case.name}"
    try:
        col = rc.build_from_table(records([case], matrix), uri=uri, bands={"b1": "image"}, settings=matrix.settings)
    except rc.RasteretError as exc:
        assert matrix.href(case) in str(exc), f"{case.name}: the build error does not name the file: {exc}"
        assert not _exists(uri, matrix.settings), f"{case.name}: a refused build committed a version"
        return
    try:  # what the user meets instead
        col.get_numpy(footprint(case, matrix.path(case)), ["b1"])
        later = "and reads"
    except rc.RasteretError as exc:
        later = f"reads then fail: {type(exc).__name__}: {exc}"
    pytest.fail(f"{case.filename} ({case.refused}) was built without error; {later}")


def _exists(uri: str, settings: rc.Settings) -> bool:
    try:
        rc.load(uri, settings=settings)
    except rc.RasteretError:
        return False
    return True


def test_a_build_with_refused_files_names_them_and_a_partial_build_keeps_the_others(matrix: Matrix) -> None:
    """A build fails naming every refused file and commits nothing; ``partial=True`` commits the
    others and lists the refused ones in the commit metadata."""
    good = [c for c in READ if c.name in ("mask_deflate_uint16", "rotated_geotransform")]
    cases = good + REFUSED
    uri = f"{TABLES}/mixed"
    with pytest.raises(rc.CollectionError) as info:
        rc.build_from_table(records(cases, matrix), uri=uri, bands={"b1": "image:1"}, settings=matrix.settings)
    for case in REFUSED:
        assert matrix.href(case) in str(info.value), f"the build error does not name {case.filename}: {info.value}"
    assert not _exists(uri, matrix.settings), "a failed build committed a version"

    col = rc.build_from_table(records(cases, matrix), uri=uri, bands={"b1": "image:1"}, settings=matrix.settings,
                              partial=True)
    assert sorted(col.to_arrow()["id"].to_pylist()) == sorted(c.name for c in good)
    skipped = col.history()[0]["metadata"]["skipped"]
    assert sorted(s["id"] for s in skipped) == sorted(c.name for c in REFUSED)
    assert all(matrix.href(c) in s["error"] for c in REFUSED for s in skipped if s["id"] == c.name)


def test_the_whole_matrix_builds_as_one_collection(matrix: Matrix) -> None:
    """The readable files, one record each, in one collection (first band of each)."""
    col = rc.build_from_table(records(READ, matrix), uri=f"{TABLES}/all", bands={"b1": "image:1"},
                              settings=matrix.settings)
    assert len(col) == len(READ)
    aoi = _box(0.42, 0.40, 0.58, 0.52)
    for case in READ[:3]:
        with rasterio.open(matrix.path(case)) as src:
            given = lonlat(pixel_to_crs(aoi(src.width, src.height), src.transform), src.crs)
            want, _ = rasterio.mask.mask(src, [to_raster_crs(given, src.crs)], crop=True, filled=True,
                                         nodata=fill_of(src), indexes=[1])
        got = col.subset(ids=[case.name]).get_numpy(given, ["b1"])
        assert_band_equal(got[0, 0], want[0], f"{case.name} in the whole collection")
