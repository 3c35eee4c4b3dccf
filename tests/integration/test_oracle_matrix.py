"""Every file of the oracle matrix, read through SeaweedFS S3, equals GDAL's read of it.

The matrix (``tests/oracle_matrix.py``) is written by GDAL and uploaded to its own
bucket. For each file hypothesis draws AOIs (boxes, star polygons, polygons with a
hole, multipolygons; inside, across and partly outside the raster; one pixel to
many tiles) in the raster CRS; the core planner and fetcher read them and each
band must equal ``rasterio.mask.mask(..., crop=True, filled=True)`` on the local
copy: exactly for lossless codecs, within ``Case.tolerance`` for lossy ones.
Every IFD (full resolution and each overview) is also decoded whole, tile by
tile, and compared with rasterio's read at that IFD's size.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import rasterio
import rasterio.mask
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyproj import CRS

import rasteret_core as rc
from rasteret_core.read.planner import ChunkRequest, plan_read
from rasteret_core.tiff.decode import decode_tile
from rasteret_core.tiff.header import ImageInfo, TiffHeader
from tests.oracle_matrix import AXES, BLOCKS, OVERVIEW_FACTORS, Case, content, matrix, write_matrix

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    # RGBA files with nodata: GDAL masks by nodata, not alpha, as Rasteret does
    pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning"),
]

T = TypeVar("T")
BUCKET = "rasteret-oracle"
CASES = matrix()
READABLE = [c for c in CASES if c.expect is None]  # decoded whole, IFD by IFD
# ... and read by AOI, but for those without georeferencing
READ = [c for c in READABLE if c.georef != "none"]
NOGEO = [c for c in READABLE if c.georef == "none"]
REFUSED = [c for c in CASES if c.expect is not None]
MAX_EXAMPLES = 10
COMPRESSION = {
    "none": 1, "deflate": 8, "lzw": 5, "packbits": 32773, "lzma": 34925, "zstd": 50000, "jpeg": 7,
    "jpeg_ycbcr": 7, "webp": 50001, "webp_lossless": 50001, "lerc": 34887, "lerc_deflate": 34887,
    "lerc_zstd": 34887, "lerc_lossy": 34887,
}  # fmt: skip
# Vertices are offset by a fraction of a pixel no grid of 1/8 pixel holds, so no pixel
# centre falls on an AOI's edge (where "inside" is a matter of rounding, not of rules).
OFFSET = (0.0371, 0.0913)


class Oracle:
    """The uploaded matrix and one event loop with open stores to read it through.

    Not a dataclass: hypothesis prints dataclass fields (the cached headers) of every example.
    """

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, stores: rc.engine.Stores) -> None:
        self.root = root
        self.loop = loop
        self.stores = stores
        self.headers: dict[str, TiffHeader] = {}

    def __repr__(self) -> str:
        return f"Oracle({self.root})"

    def uri(self, case: Case) -> str:
        return f"s3://{BUCKET}/{case.filename}"

    def path(self, case: Case) -> Path:
        return self.root / case.filename

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def header(self, case: Case) -> TiffHeader:
        if case.name not in self.headers:
            self.headers[case.name] = self.run(rc.engine.parse_header(self.uri(case), self.stores))
        return self.headers[case.name]


@pytest.fixture(scope="module")
def oracle(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    """The matrix written to a temporary folder and uploaded to the ``rasteret-oracle`` bucket."""
    root = tmp_path_factory.mktemp("oracle-matrix")
    stores = rc.engine.Stores(rc.Settings.from_env())  # the S3 settings, read while AWS_* are set
    with pytest.MonkeyPatch.context() as patch:
        # rasterio builds a boto3 session for every Env() while AWS_ACCESS_KEY_ID is set (~50 ms,
        # thousands of times here); the oracle reads local copies only, so hide the keys from it
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.delenv(key)
        write_matrix(root)
        s3.create_bucket(BUCKET)
        s3.upload_dir(root, BUCKET)
        loop = asyncio.new_event_loop()
        try:
            yield Oracle(root, loop, loop.run_until_complete(stores.__aenter__()))
        finally:
            loop.run_until_complete(stores.__aexit__(None, None, None))
            loop.close()


# ------------------------------------------------------------------ AOIs


@dataclass(frozen=True, slots=True)
class Aoi:
    """An AOI in the pixel space of a raster, independent of its size.

    The centre is at ``(cu, cv)`` thousandths of the width and height (so beyond
    the raster below 0 and above 1000); half its width is ``2 ** (size / 4)``
    pixels, its height that times ``2 ** (aspect / 2)``.
    """

    kind: str  # box, star, holed, multi
    cu: int
    cv: int
    size: int
    aspect: int
    angles: tuple[int, ...] = ()  # star vertices: angle in 1/360 turns ...
    radii: tuple[int, ...] = ()  # ... and radius in tenths of the half size

    def pixel_geometry(self, width: int, height: int) -> shapely.Geometry:
        cx, cy = self.cu / 1000 * width + OFFSET[0], self.cv / 1000 * height + OFFSET[1]
        hw = 2 ** (self.size / 4)
        hh = hw * 2 ** (self.aspect / 2)
        if self.kind == "box":
            return shapely.box(cx - hw, cy - hh, cx + hw, cy + hh)
        if self.kind == "holed":
            return shapely.box(cx - hw, cy - hh, cx + hw, cy + hh).difference(
                shapely.box(cx - hw / 2, cy - hh / 3, cx + hw / 3, cy + hh / 2)
            )
        if self.kind == "multi":
            return shapely.MultiPolygon(
                [shapely.box(cx - hw, cy - hh, cx - hw / 4, cy), shapely.box(cx, cy + hh / 8, cx + hw, cy + hh)]
            )
        turns = sorted(set(self.angles))
        points = [
            (cx + hw * r / 10 * math.cos(2 * math.pi * a / 360), cy + hh * r / 10 * math.sin(2 * math.pi * a / 360))
            for a, r in zip(turns, self.radii, strict=True)
        ]
        return shapely.Polygon(points)  # star-shaped around the centre: simple, maybe concave


@st.composite
def aois(draw: st.DrawFn) -> Aoi:
    kind = draw(st.sampled_from(["box", "star", "holed", "multi"]))
    angles: tuple[int, ...] = ()
    radii: tuple[int, ...] = ()
    if kind == "star":
        angles = tuple(draw(st.lists(st.integers(0, 359), min_size=3, max_size=8, unique=True)))
        radii = tuple(draw(st.lists(st.integers(3, 10), min_size=len(angles), max_size=len(angles))))
    return Aoi(
        kind=kind,
        cu=draw(st.integers(-100, 1100)),
        cv=draw(st.integers(-100, 1100)),
        size=draw(st.integers(-4, 44)),
        aspect=draw(st.integers(-4, 4)),
        angles=angles,
        radii=radii,
    )


WHOLE = Aoi("box", 500, 500, 44, 0)  # the whole raster and a margin around it
ONE_PIXEL = Aoi("box", 333, 777, -4, 0)
STAR_ACROSS_EDGE = Aoi("star", 0, 1000, 26, 1, (10, 80, 150, 200, 260, 330), (10, 4, 9, 5, 10, 7))


def to_crs(geom: shapely.Geometry, transform: rasterio.Affine) -> shapely.Geometry:
    a, b, c, d, e, f = tuple(transform)[:6]
    return shapely.transform(geom, lambda xy: np.column_stack((a * xy[:, 0] + b * xy[:, 1] + c,
                                                                d * xy[:, 0] + e * xy[:, 1] + f)))


# ------------------------------------------------------------------ comparisons


def fill_of(header: TiffHeader) -> float:
    return header.nodata if header.nodata is not None else 0


def assert_matches(got: np.ndarray, want: np.ndarray, case: Case, what: str, *, overview: bool = False) -> None:
    """``got`` equals GDAL's ``want``: exactly, or within the case's tolerance for lossy codecs."""
    assert got.shape == want.shape, f"{what}: shape {got.shape}, GDAL {want.shape}"
    if case.dtype == "float16":  # GDAL reads NBITS=16 floats as float32
        assert got.dtype == np.float16
        got = got.astype(np.float32)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, GDAL {want.dtype}"
    most, mean = case.overview_tolerance if overview else case.tolerance
    if most == 0:
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max(initial=0) <= most, f"{what}: differs by up to {diff.max()} (> {most})"
    if mean and diff.size >= 4096:  # the mean says something on a large sample only
        assert diff.mean() <= mean, f"{what}: differs by {diff.mean():.2f} on average (> {mean})"


def decode_image(data: bytes, header: TiffHeader, image: ImageInfo) -> np.ndarray:
    """Decode every tile of ``image`` into ``[sample, row, col]``; sparse tiles hold the fill."""
    th, tw = image.tile_height, image.tile_width
    per_plane = image.tiles_across * image.tiles_down
    out = np.full(
        (image.samples_per_pixel, image.tiles_down * th, image.tiles_across * tw), fill_of(header), image.dtype
    )
    for tile, (offset, count) in enumerate(zip(image.tile_offsets.tolist(), image.tile_byte_counts.tolist(), strict=True)):
        if count == 0:
            continue
        plane, local = divmod(tile, per_plane)
        row, col = divmod(local, image.tiles_across)
        pixels = decode_tile(data[offset : offset + count], image, byte_order=header.byte_order, uri=header.uri,
                             tile=tile)
        planes = slice(plane, plane + 1) if image.planar_config == 2 else slice(None)
        out[planes, row * th : (row + 1) * th, col * tw : (col + 1) * tw] = pixels
    return out[:, : image.height, : image.width]


def header_bounds(header: TiffHeader) -> tuple[float, float, float, float]:
    assert header.transform is not None
    a, _, c, _, e, f = header.transform
    xs, ys = (c, c + a * header.image.width), (f, f + e * header.image.height)
    return min(xs), min(ys), max(xs), max(ys)


# ------------------------------------------------------------------ tests


def test_matrix_covers_every_axis_value() -> None:
    for axis, values in AXES.items():
        seen = {getattr(c, axis) for c in READ}
        assert seen == set(values), f"{axis}: {set(values) - seen} never written"
    assert 100 <= len(READ) <= 200


@pytest.mark.parametrize("case", READABLE, ids=lambda c: c.name)
def test_header_describes_the_file_as_gdal_wrote_it(oracle: Oracle, case: Case) -> None:
    header = oracle.header(case)
    image = header.image
    assert header.bigtiff == case.bigtiff
    assert header.byte_order == (">" if case.endian == "big" else "<")
    assert image.compression == COMPRESSION[case.codec]
    assert image.predictor == case.predictor
    assert image.tiled == case.tiled
    tw, th = BLOCKS[case.block]
    if case.tiled:
        assert (image.tile_width, image.tile_height) == (tw, th)
    else:
        assert (image.tile_width, image.tile_height) == (image.width, min(th or image.height, image.height))
    # GDAL writes planar configuration 2 also for one band; its COG driver always writes 1
    assert image.planar_config == (2 if case.interleave == "band" and case.overviews != "cog" else 1)
    assert (image.photometric == 6) == case.ycbcr
    assert len(header.overviews) == (0 if case.overviews == "none" else len(OVERVIEW_FACTORS))
    if case.sparse:
        assert (image.tile_byte_counts == 0).any(), "a sparse file with no empty tile"
    assert header.pixel_is_point == case.point
    with rasterio.open(oracle.path(case)) as src:
        assert (image.width, image.height, image.samples_per_pixel) == (src.width, src.height, src.count)
        assert (header.nodata is None) == (src.nodata is None)
        if src.nodata is not None:
            np.testing.assert_equal(header.nodata, src.nodata)
        if case.georef == "none":
            assert header.crs is None and header.transform is None
        else:
            assert CRS(header.crs) == CRS(src.crs.to_wkt())
            # PixelIsPoint: the parsed transform is shifted by half a pixel, as GDAL's is
            np.testing.assert_allclose(header.transform, tuple(src.transform)[:6], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("case", READABLE, ids=lambda c: c.name)
def test_every_ifd_decodes_like_gdal(oracle: Oracle, case: Case) -> None:
    header = oracle.header(case)
    uri = oracle.uri(case)
    size = oracle.run(oracle.stores.head(uri)).size
    data = oracle.run(oracle.stores.get_range(uri, 0, size))
    assert len(data) == size
    with rasterio.open(oracle.path(case)) as src:
        for level, image in enumerate([header.image, *header.overviews]):
            got = decode_image(data, header, image)
            # GDAL reads exactly the overview whose size out_shape asks for
            want = src.read(out_shape=(src.count, image.height, image.width))
            for band in range(src.count):
                assert_matches(got[band], want[band], case, f"{case.name} IFD level {level} band {band}",
                               overview=level > 0)
            # Lossy LERC: within MAX_Z_ERROR of what was written. Not in big-endian files: libtiff
            # hands LERC byte-swapped samples, so the error lands in swapped bits (GDAL's reads of
            # them are off by up to 2 << 24; Rasteret reads the same values as GDAL, checked above).
            if level == 0 and case.max_z_error and case.endian == "little":
                error = np.abs(got.astype(np.float64) - content(case).astype(np.float64))
                assert np.nanmax(error) <= case.max_z_error


@pytest.mark.parametrize("case", READ, ids=lambda c: c.name)
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(shapes=st.lists(aois(), min_size=1, max_size=3))
@example(shapes=[WHOLE])
@example(shapes=[ONE_PIXEL, STAR_ACROSS_EDGE])
def test_random_aois_match_rasterio_mask(oracle: Oracle, case: Case, shapes: list[Aoi]) -> None:
    header = oracle.header(case)
    uri = oracle.uri(case)
    crs = CRS(header.crs)
    with rasterio.open(oracle.path(case)) as src:
        geoms = [to_crs(s.pixel_geometry(src.width, src.height), src.transform) for s in shapes]
        requests = [
            ChunkRequest(key=(i, band), uri=uri, header=header, geometry=geom, geometry_crs=crs, sample=band)
            for i, geom in enumerate(geoms)
            for band in range(src.count)
        ]
        plan = plan_read(requests)
        arrays = oracle.run(rc.engine.execute_plan(plan, oracle.stores))
        got = {chunk.key: arr for chunk, arr in zip(plan.chunks, arrays, strict=True)}
        fill = fill_of(header)
        bands = list(range(1, src.count + 1))
        for i, geom in enumerate(geoms):
            what = f"{case.name} AOI {shapes[i]}"
            try:  # all bands at once: the same as one call per band, a band's mask rasterized once
                want, _ = rasterio.mask.mask(src, [geom], crop=True, filled=True, nodata=fill, indexes=bands)
            except ValueError as exc:
                assert "do not overlap" in str(exc)
                assert not any((i, b) in got for b in range(src.count)), f"{what}: GDAL finds no overlap"
                continue
            for band in range(src.count):
                assert (i, band) in got, f"{what} band {band}: Rasteret planned no window, GDAL read {want.shape}"
                assert_matches(got[(i, band)], want[band], case, f"{what} band {band}")


@pytest.mark.parametrize("case", NOGEO, ids=lambda c: c.name)
def test_file_without_georeferencing_cannot_place_an_aoi(oracle: Oracle, case: Case) -> None:
    header = oracle.header(case)
    request = ChunkRequest(key=0, uri=oracle.uri(case), header=header, geometry=shapely.box(0, 0, 10, 10),
                           geometry_crs=CRS("EPSG:32632"))
    with pytest.raises(rc.PlanningError, match="no georeferencing"):
        plan_read([request])


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_unsupported_files_are_refused_naming_file_tag_and_value(oracle: Oracle, case: Case) -> None:
    uri = oracle.uri(case)
    tag, value = case.expect or ("", None)
    with rasterio.open(oracle.path(case)) as src:  # GDAL reads it: the file is valid
        assert src.read(1).shape == (src.height, src.width)
    with pytest.raises(rc.UnsupportedTiffError) as info:
        header = oracle.run(rc.engine.parse_header(uri, oracle.stores))
        plan_read([ChunkRequest(key=0, uri=uri, header=header, geometry=shapely.box(*header_bounds(header)),
                                geometry_crs=CRS(header.crs))])
    error = info.value
    assert (error.uri, error.tag, error.value) == (uri, tag, value)
    assert uri in str(error) and f"{tag}={value!r}" in str(error)

