"""The TIFF header parser against rasterio/GDAL and tifffile, on hand-built TIFFs, and fuzzed."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import Affine

from rasteret_core.errors import RasteretError, TiffFormatError, UnsupportedTiffError
from rasteret_core.tiff.header import TiffHeader
from rasteret_core.tiff.parser import parse_header

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


class MemoryStore:
    """A ByteStore over one bytes object; counts requests."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests = 0

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        self.requests += 1
        return self.data[start:end]


def parse(data: bytes, *, header_read: int = 65536, uri: str = "mem://test.tif") -> TiffHeader:
    return asyncio.run(parse_header(uri, MemoryStore(data), header_read=header_read))


def write(path: Path, data: np.ndarray, *, tags: dict[str, str] | None = None, **profile: object) -> Path:
    """Write ``data`` ``[band, y, x]`` with rasterio; ``profile`` holds driver and creation options."""
    profile.setdefault("driver", "GTiff")
    with rasterio.open(
        path, "w", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype, **profile
    ) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


UTM = {"crs": "EPSG:32633", "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)}
WRITERS = {
    "cog-deflate-overviews": dict(driver="COG", blocksize=128, compress="deflate", predictor=2, nodata=0, **UTM),
    "cog-zstd-float-nan": dict(driver="COG", blocksize=256, compress="zstd", predictor=3, nodata=float("nan"), **UTM),
    "tiled-lzw": dict(tiled=True, blockxsize=64, blockysize=32, compress="lzw", nodata=-9999, **UTM),
    "striped": dict(tiled=False, blockysize=7, compress="deflate", **UTM),
    "striped-default-rows": dict(tiled=False, **UTM),
    "bigtiff": dict(tiled=True, bigtiff="YES", compress="zstd", **UTM),
    "big-endian": dict(tiled=True, endianness="BIG", compress="deflate", predictor=2, **UTM),
    "big-endian-bigtiff-striped": dict(tiled=False, endianness="BIG", bigtiff="YES", blockysize=16, **UTM),
    "band-interleave": dict(tiled=True, interleave="band", compress="packbits", **UTM),
    "pixel-interleave-rgb": dict(tiled=True, interleave="pixel", photometric="RGB", compress="lzma", **UTM),
    "geographic": dict(tiled=True, crs="EPSG:4326", transform=Affine(0.001, 0.0, 10.0, 0.0, -0.001, 50.0)),
    "rotated": dict(crs="EPSG:3857", transform=Affine(10.0, 2.0, 1000.0, 1.5, -10.0, 5000.0)),
    "no-georeferencing": dict(tiled=True),
}
DTYPES = {
    "cog-zstd-float-nan": "float32",
    "tiled-lzw": "int16",
    "big-endian": "int32",
    "big-endian-bigtiff-striped": "float64",
    "pixel-interleave-rgb": "uint8",
}


def random_raster(dtype: str, bands: int = 3, height: int = 300, width: int = 270, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(100, 30, (bands, height, width))).astype(dtype)


def assert_matches_tifffile(path: Path, header: TiffHeader) -> None:
    with tifffile.TiffFile(path) as tif:
        assert len(header.images) == len(tif.pages)
        assert header.byte_order == tif.byteorder
        assert header.bigtiff == tif.is_bigtiff
        for image, page in zip(header.images, tif.pages, strict=True):
            np.testing.assert_array_equal(image.tile_offsets, page.dataoffsets)
            np.testing.assert_array_equal(image.tile_byte_counts, page.databytecounts)
            assert image.tile_offsets.dtype == image.tile_byte_counts.dtype == np.int64
            assert (image.width, image.height) == (page.imagewidth, page.imagelength)
            if page.is_tiled:
                assert (image.tile_height, image.tile_width) == (page.tilelength, page.tilewidth)
            else:
                rows = min(page.rowsperstrip, page.imagelength)
                assert (image.tile_height, image.tile_width) == (rows, page.imagewidth)
            assert image.tiled == page.is_tiled
            assert (image.compression, image.predictor) == (page.compression, page.predictor)
            assert (image.planar_config, image.photometric) == (page.planarconfig, page.photometric)
            assert (image.samples_per_pixel, image.bits_per_sample) == (page.samplesperpixel, page.bitspersample)
            assert image.subfile_type == page.subfiletype


def assert_matches_rasterio(path: Path, header: TiffHeader) -> None:
    with rasterio.open(path) as src:
        image = header.image
        assert (image.width, image.height) == (src.width, src.height)
        assert src.block_shapes[0] == (image.tile_height, image.tile_width)
        assert image.dtype == np.dtype(src.dtypes[0])
        assert image.samples_per_pixel == src.count
        if src.nodata is None or header.nodata is None:
            assert header.nodata == src.nodata
        else:
            assert header.nodata == src.nodata or (math.isnan(header.nodata) and math.isnan(src.nodata))
        if src.crs is None:
            assert header.crs is None
        else:
            assert header.crs == f"EPSG:{src.crs.to_epsg()}"
        if header.transform is None:
            assert src.transform == Affine.identity()
        else:
            assert header.transform == tuple(src.transform)[:6]
        factors = src.overviews(1)
    assert [round(image.width / ov.width) for ov in header.overviews] == factors
    for level, overview in enumerate(header.overviews):
        with rasterio.open(path, overview_level=level) as ovr:
            assert (overview.width, overview.height) == (ovr.width, ovr.height)
            assert ovr.block_shapes[0] == (overview.tile_height, overview.tile_width)


@pytest.mark.parametrize("case", list(WRITERS))
def test_header_matches_rasterio_and_tifffile(tmp_path: Path, case: str) -> None:
    path = write(tmp_path / f"{case}.tif", random_raster(DTYPES.get(case, "uint16")), **WRITERS[case])
    header = parse(path.read_bytes())
    assert_matches_rasterio(path, header)
    assert_matches_tifffile(path, header)
    assert header.header_requests == 1  # every header here fits in the first 64 KiB


def test_cog_overviews_and_single_request(tmp_path: Path) -> None:
    path = write(tmp_path / "cog.tif", random_raster("uint16", 1, 1000, 900), **WRITERS["cog-deflate-overviews"])
    store = MemoryStore(path.read_bytes())
    header = asyncio.run(parse_header(str(path), store))
    assert [im.width for im in header.images] == [900, 450, 225, 112]
    assert all(im.is_overview for im in header.images[1:])
    assert (header.header_requests, header.header_bytes_read, store.requests) == (1, 65536, 1)
    assert header.size is None  # the file is larger than what was read
    assert header.transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)


def test_pixel_is_point_is_shifted_like_gdal(tmp_path: Path) -> None:
    path = write(tmp_path / "point.tif", random_raster("uint8", 1, 20, 30), tags={"AREA_OR_POINT": "Point"}, **UTM)
    header = parse(path.read_bytes())
    assert header.pixel_is_point
    assert_matches_rasterio(path, header)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].geotiff_tags["GTRasterTypeGeoKey"] == 2
        tiepoint = tif.pages[0].tags["ModelTiepointTag"].value
    assert header.transform[2] == tiepoint[3] - 5.0  # half of a 10 m pixel


def test_internal_mask_and_gdal_metadata(tmp_path: Path) -> None:
    path = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
        path, "w", driver="GTiff", width=64, height=48, count=1, dtype="uint8", tiled=True,
        blockxsize=32, blockysize=16, **UTM,
    ) as dst:
        dst.write(np.full((1, 48, 64), 7, np.uint8))
        dst.write_mask(np.full((48, 64), 255, np.uint8))
        dst.update_tags(answer="42")
        dst.set_band_description(1, "red")
    header = parse(path.read_bytes())
    assert_matches_tifffile(path, header)
    (mask,) = [im for im in header.images if im.is_mask]
    assert (mask.width, mask.height, mask.bits_per_sample) == (64, 48, 1)
    assert not header.overviews
    assert header.gdal_metadata is not None
    assert '<Item name="answer">42</Item>' in header.gdal_metadata
    assert "red" in header.gdal_metadata


@pytest.mark.parametrize("header_read", [8, 16, 100, 1000])
def test_small_first_read_gives_the_same_header(tmp_path: Path, header_read: int) -> None:
    path = write(tmp_path / "cog.tif", random_raster("int16", 2, 600, 500), **WRITERS["cog-deflate-overviews"])
    data = path.read_bytes()
    big, small = parse(data), parse(data, header_read=header_read)
    assert small.header_requests > 1
    assert len(small.images) == len(big.images)
    for a, b in zip(small.images, big.images, strict=True):
        np.testing.assert_array_equal(a.tile_offsets, b.tile_offsets)
        np.testing.assert_array_equal(a.tile_byte_counts, b.tile_byte_counts)
        assert (a.width, a.tile_width, a.compression) == (b.width, b.tile_width, b.compression)
    assert (small.crs, small.transform, small.nodata) == (big.crs, big.transform, big.nodata)
    assert small.header_bytes_read < 4 * 65536


def test_tifffile_written_files(tmp_path: Path) -> None:
    cases = [
        dict(tile=(32, 48), compression="zlib", predictor=True),
        dict(rowsperstrip=5, byteorder=">", compression="lzw"),
        dict(tile=(16, 16), bigtiff=True, byteorder=">", planarconfig="separate"),
        dict(rowsperstrip=100, compression="zstd", predictor=True),
    ]
    data = np.random.default_rng(1).integers(0, 2**15, (40, 70, 3), dtype=np.int16)
    for i, kwargs in enumerate(cases):
        path = tmp_path / f"tifffile{i}.tif"
        planar = kwargs.get("planarconfig") == "separate"
        tifffile.imwrite(path, np.moveaxis(data, -1, 0) if planar else data, photometric="rgb", **kwargs)
        header = parse(path.read_bytes())
        assert_matches_tifffile(path, header)
        assert header.crs is None and header.transform is None and header.nodata is None


# ---- hand-built TIFFs ---------------------------------------------------------------------------

_PACK = {1: "B", 3: "H", 4: "I", 5: "I", 6: "b", 8: "h", 9: "i", 10: "i", 11: "f", 12: "d", 13: "I",
         16: "Q", 17: "q", 18: "Q"}  # fmt: skip
Tags = dict[int, tuple[int, object]]  # tag -> (field type, values: list of numbers, or bytes)


def build_tiff(
    ifds: list[Tags], *, byte_order: str = "<", bigtiff: bool = False, gap: int = 64, chain: list[int] | None = None
) -> bytes:
    """Lay out a TIFF: header, ``gap`` bytes (tile data), then each IFD followed by its values.

    ``chain[i]`` is the IFD index the i-th IFD points to next (-1 ends the chain).
    """
    bo = byte_order
    osz = 8 if bigtiff else 4
    head = (b"II" if bo == "<" else b"MM") + (
        struct.pack(bo + "HHHQ", 43, 8, 0, 0) if bigtiff else struct.pack(bo + "HI", 42, 0)
    )
    out = bytearray(head) + bytes(gap)
    starts, next_fields = [], []
    for tags in ifds:
        start = len(out)
        starts.append(start)
        entries = sorted(tags.items())
        out += struct.pack(bo + ("Q" if bigtiff else "H"), len(entries))
        extra_at = start + (8 if bigtiff else 2) + len(entries) * (20 if bigtiff else 12) + osz
        extra = bytearray()
        for tag, (ftype, values) in entries:
            if isinstance(values, bytes):
                raw, count = values, len(values)
            else:
                raw = struct.pack(f"{bo}{len(values)}{_PACK[ftype]}", *values)
                count = len(values) // 2 if ftype in (5, 10) else len(values)
            if len(raw) <= osz:
                field = raw.ljust(osz, b"\0")
            else:
                field = struct.pack(bo + ("Q" if bigtiff else "I"), extra_at + len(extra))
                extra += raw + b"\0" * (len(raw) % 2)
            out += struct.pack(bo + ("HHQ" if bigtiff else "HHI"), tag, ftype, count) + field
        next_fields.append(len(out))
        out += bytes(osz) + extra
    chain = chain if chain is not None else [*range(1, len(ifds)), -1]
    fmt = bo + ("Q" if bigtiff else "I")
    struct.pack_into(fmt, out, 8 if bigtiff else 4, starts[0] if ifds else 0)
    for field_at, target in zip(next_fields, chain, strict=False):  # a test may pass a short chain
        struct.pack_into(fmt, out, field_at, starts[target] if target >= 0 else 0)
    return bytes(out)


def strip_image(width: int = 4, height: int = 2, **extra: tuple[int, object]) -> Tags:
    """A minimal valid 8-bit striped image whose one strip lies in the gap after the header."""
    tags: Tags = {
        256: (3, [width]),
        257: (3, [height]),
        258: (3, [8]),
        273: (4, [16]),
        279: (4, [width * height]),
    }
    tags.update({int(k.removeprefix("t")): v for k, v in extra.items()})
    return tags


GEO = {"t33550": (12, [2.0, 3.0, 0.0]), "t33922": (12, [0.0, 0.0, 0.0, 100.0, 200.0, 0.0])}


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("ftype", [1, 3, 4, 6, 8, 9, 13, 16, 17, 18])
def test_integer_field_types(byte_order: str, bigtiff: bool, ftype: int) -> None:
    tags = strip_image(
        t256=(ftype, [5]), t257=(ftype, [3]), t258=(ftype, [8, 8, 8]), t277=(ftype, [3]), t279=(ftype, [45]),
        t273=(ftype, [16]),
    )
    header = parse(build_tiff([tags], byte_order=byte_order, bigtiff=bigtiff))
    image = header.image
    assert (image.width, image.height, image.samples_per_pixel, image.bits_per_sample) == (5, 3, 3, 8)
    assert image.tile_offsets.tolist() == [16] and image.tile_byte_counts.tolist() == [45]
    assert header.byte_order == byte_order and header.bigtiff == bigtiff
    assert header.size == len(build_tiff([tags], byte_order=byte_order, bigtiff=bigtiff))


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize(
    ("ftype", "scale"),
    [(11, [0.5, 0.25, 0.0]), (12, [0.5, 0.25, 0.0]), (5, [1, 2, 1, 4, 0, 1]), (10, [-1, -2, 1, 4, 0, 1])],
)
def test_real_field_types(byte_order: str, ftype: int, scale: list[float]) -> None:
    tags = strip_image(t33550=(ftype, scale), t33922=GEO["t33922"])
    header = parse(build_tiff([tags], byte_order=byte_order))
    # GDAL takes the absolute y scale; a negative x scale stays negative.
    assert header.transform == (0.5, 0.0, 100.0, 0.0, -0.25, 200.0)


def test_ascii_and_undefined_values() -> None:
    tables = bytes(range(200))
    tags = strip_image(
        t259=(3, [7]), t347=(7, tables), t42112=(2, b"<GDALMetadata></GDALMetadata>\0"), t42113=(2, b"200\0")
    )
    header = parse(build_tiff([tags]))
    assert header.image.jpeg_tables == tables
    assert header.gdal_metadata == "<GDALMetadata></GDALMetadata>"
    assert header.nodata == 200.0
    assert header.warnings == ()


@pytest.mark.parametrize(("nodata", "kept"), [(b"-10000", None), (b"256", None), (b"-1", None), (b"255", 255.0),
                                              (b"0", 0.0), (b"nan", None), (b"inf", None)])
def test_nodata_a_pixel_cannot_hold_is_ignored_with_a_warning(nodata: bytes, kept: object) -> None:
    header = parse(build_tiff([strip_image(t42113=(2, nodata + b"\0"))]))  # uint8 pixels
    if kept is None:
        assert header.nodata is None
        assert len(header.warnings) == 1 and "outside the range of uint8" in header.warnings[0]
    else:
        assert header.nodata == kept and header.warnings == ()


@pytest.mark.parametrize(
    ("text", "value"), [(b"nan", math.nan), (b"-inf", -math.inf), (b"inf", math.inf), (b" 1e20 ", 1e20), (b"0", 0.0)]
)
def test_nodata_strings(text: bytes, value: float) -> None:
    float32 = {"t258": (3, [32]), "t339": (3, [3]), "t279": (4, [4 * 2 * 4])}
    nodata = parse(build_tiff([strip_image(t42113=(2, text + b"\0"), **float32)])).nodata
    assert nodata == value or (math.isnan(nodata) and math.isnan(value))


@pytest.mark.parametrize(
    ("keys", "crs"),
    [
        ([1024, 0, 1, 1, 3072, 0, 1, 32633], "EPSG:32633"),
        ([1024, 0, 1, 2, 2048, 0, 1, 4326], "EPSG:4326"),
        ([2048, 0, 1, 4326], "EPSG:4326"),
        ([1025, 0, 1, 1], None),
    ],
)
def test_crs_from_geokeys(keys: list[int], crs: str | None) -> None:
    directory = [1, 1, 0, len(keys) // 4, *keys]
    assert parse(build_tiff([strip_image(t34735=(3, directory), **GEO)])).crs == crs


def test_crs_and_transform_match_rasterio_for_a_hand_built_file(tmp_path: Path) -> None:
    directory = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2, 3072, 0, 1, 32633]
    matrix = [10.0, 1.0, 0.0, 500000.0, 2.0, -10.0, 0.0, 6000000.0, 0, 0, 0, 0, 0, 0, 0, 1.0]
    path = tmp_path / "matrix.tif"
    path.write_bytes(build_tiff([strip_image(t34735=(3, directory), t34264=(12, matrix))]))
    header = parse(path.read_bytes())
    assert header.pixel_is_point
    assert_matches_rasterio(path, header)


@pytest.mark.parametrize(
    ("keys", "tag", "value"),
    [
        ([1024, 0, 1, 1, 3072, 0, 1, 32767], "ProjectedCSTypeGeoKey", 32767),
        ([1024, 0, 1, 1], "ProjectedCSTypeGeoKey", None),
        ([1024, 0, 1, 2, 2048, 0, 1, 32767], "GeographicTypeGeoKey", 32767),
        ([1024, 0, 1, 3], "GTModelTypeGeoKey", 3),
    ],
)
def test_user_defined_crs_is_unsupported(keys: list[int], tag: str, value: int | None) -> None:
    directory = [1, 1, 0, len(keys) // 4, *keys]
    with pytest.raises(UnsupportedTiffError) as info:
        parse(build_tiff([strip_image(t34735=(3, directory), **GEO)]))
    assert (info.value.tag, info.value.value, info.value.uri) == (tag, value, "mem://test.tif")


def test_mixed_bit_depths_are_unsupported() -> None:
    with pytest.raises(UnsupportedTiffError) as info:
        parse(build_tiff([strip_image(t277=(3, [2]), t258=(3, [8, 16]))]))
    assert (info.value.tag, info.value.value) == ("BitsPerSample", (8, 16))


def test_full_resolution_image_comes_first() -> None:
    overview = strip_image(2, 1, t254=(4, [1]))
    mask = strip_image(4, 2, t254=(4, [4]))
    header = parse(build_tiff([overview, strip_image(), mask]))
    assert [(im.width, im.subfile_type) for im in header.images] == [(4, 0), (2, 1), (4, 4)]
    assert [im.width for im in header.overviews] == [2]


def test_tiled_image_and_planar_tile_count() -> None:
    tags = {
        256: (3, [40]), 257: (3, [20]), 258: (3, [16, 16]), 277: (3, [2]), 284: (3, [2]), 322: (3, [16]),
        323: (3, [16]), 324: (4, list(range(100, 112))), 325: (4, [1] * 12), 339: (3, [2, 2]),
    }  # fmt: skip
    image = parse(build_tiff([tags], gap=200)).image
    assert (image.tiles_across, image.tiles_down, len(image.tile_offsets)) == (3, 2, 12)
    assert image.tile_index(1, 2, sample=1) == 11
    assert image.dtype == np.dtype("int16")


def test_ifd_at_the_end_of_a_large_file_is_read_sparsely() -> None:
    data = build_tiff([strip_image()], gap=50_000_000)
    store = MemoryStore(data)
    header = asyncio.run(parse_header("mem://big.tif", store))
    assert header.image.width == 4
    assert store.requests == header.header_requests <= 3
    assert header.header_bytes_read < 1_000_000


MALFORMED = {
    "empty": b"",
    "bad magic": b"PK\x03\x04" + bytes(100),
    "bad version": b"MM\x00\x2c" + bytes(100),
    "bigtiff bad offset size": b"II\x2b\x00\x04\x00\x00\x00" + bytes(100),
    "no IFD": b"II\x2a\x00\x00\x00\x00\x00",
    "IFD in header": b"II\x2a\x00\x04\x00\x00\x00" + bytes(100),
    "IFD past end": b"II\x2a\x00\x00\x01\x00\x00" + bytes(100),
    "zero entries": b"II\x2a\x00\x08\x00\x00\x00" + bytes(100),
    "truncated entries": b"II\x2a\x00\x08\x00\x00\x00\x05\x00" + bytes(20),
    "loop to self": build_tiff([strip_image()], chain=[0]),
    "loop of two": build_tiff([strip_image(), strip_image()], chain=[1, 0]),
    "missing width": build_tiff([{k: v for k, v in strip_image().items() if k != 256}]),
    "zero width": build_tiff([strip_image(0, 2)]),
    "negative width": build_tiff([strip_image(t256=(9, [-4]))]),
    "float width": build_tiff([strip_image(t256=(11, [4.0]))]),
    "unknown field type": build_tiff([strip_image(t42112=(99, b"abc\0"))]),
    "no value": build_tiff([strip_image(t257=(3, []))]),
    "missing strip offsets": build_tiff([{k: v for k, v in strip_image().items() if k != 273}]),
    "missing byte counts": build_tiff([{k: v for k, v in strip_image().items() if k != 279}]),
    "too few strips": build_tiff([strip_image(4, 20, t278=(3, [2]))]),
    "rows per strip 0": build_tiff([strip_image(t278=(3, [0]))]),
    "bits 0": build_tiff([strip_image(t258=(3, [0]))]),
    "samples 0": build_tiff([strip_image(t277=(3, [0]))]),
    "planar 3": build_tiff([strip_image(t284=(3, [3]))]),
    "tile width 0": build_tiff([strip_image(t322=(3, [0]), t323=(3, [16]))]),
    "tiled without offsets": build_tiff([strip_image(t322=(3, [16]), t323=(3, [16]))]),
    "strip past end": build_tiff([strip_image(t273=(4, [10_000]))]),
    "value past end": build_tiff([strip_image(t42112=(2, b"x" * 50))])[:-20],
    "geokeys truncated": build_tiff([strip_image(t34735=(3, [1, 1, 0, 5, 1024, 0, 1, 1]))]),
    "geokey not a short": build_tiff([strip_image(t34735=(3, [1, 1, 0, 1, 3072, 34736, 1, 0]))]),
    "transform not finite": build_tiff([strip_image(t33550=(12, [math.inf, 1.0, 0.0]), t33922=GEO["t33922"])]),
    "nodata not a number": build_tiff([strip_image(t42113=(2, b"abc\0"))]),
    "offset too large": build_tiff([strip_image(t273=(16, [2**63]))], bigtiff=True),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_raise_tiff_format_error(case: str) -> None:
    with pytest.raises(TiffFormatError) as info:
        parse(MALFORMED[case])
    assert info.value.uri == "mem://test.tif"
    assert str(info.value).startswith("mem://test.tif: ")


def test_absurd_counts_are_refused_before_reading() -> None:
    data = bytearray(build_tiff([strip_image(t42112=(2, b"x" * 50))]))
    # Make GDAL_METADATA claim 2**31 values: refused, not fetched.
    at = data.index(struct.pack("<HHI", 42112, 2, 50))
    struct.pack_into("<I", data, at + 4, 2**31)
    store = MemoryStore(bytes(data))
    with pytest.raises(TiffFormatError, match="GDAL_METADATA"):
        asyncio.run(parse_header("mem://x", store))
    assert store.requests == 1


def test_too_many_ifds() -> None:
    with pytest.raises(TiffFormatError, match="more than 1024 IFDs"):
        parse(build_tiff([strip_image()] * 1025, gap=16))


# ---- fuzzing ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cog_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "cog.tif"
    write(path, random_raster("uint16", 2, 200, 180), **WRITERS["cog-deflate-overviews"])
    return path.read_bytes()


def parse_or_rasteret_error(data: bytes, header_read: int) -> None:
    started = time.perf_counter()
    with contextlib.suppress(RasteretError):
        parse(data, header_read=header_read)
    assert time.perf_counter() - started < 1.0


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(cut=st.integers(0, 4096), header_read=st.sampled_from([16, 512, 65536]))
def test_fuzz_truncated(cog_bytes: bytes, cut: int, header_read: int) -> None:
    parse_or_rasteret_error(cog_bytes[:cut], header_read)


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=8),
    header_read=st.sampled_from([64, 65536]),
)
def test_fuzz_byte_flips(cog_bytes: bytes, flips: list[tuple[int, int]], header_read: int) -> None:
    data = bytearray(cog_bytes)
    for at, value in flips:
        data[at] = value
    parse_or_rasteret_error(bytes(data), header_read)


@FUZZ
@given(
    prefix=st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"MM\x00+\x00\x08\x00\x00"]),
    body=st.binary(max_size=600),
)
def test_fuzz_random_bytes(prefix: bytes, body: bytes) -> None:
    parse_or_rasteret_error(prefix + body, 65536)


def test_gdal_metadata_scale_offset_and_items_are_kept(tmp_path):
    import rasterio as _rio

    from rasteret_core.tiff.header import gdal_metadata_items

    path = tmp_path / "scaled.tif"
    with _rio.open(path, "w", driver="GTiff", width=64, height=64, count=2, dtype="uint16", tiled=True,
                   blockxsize=32, blockysize=32) as dst:
        dst.write(np.ones((2, 64, 64), dtype="uint16"))
        dst.scales = (0.0001, 0.5)
        dst.offsets = (-0.1, 3.0)
        dst.update_tags(PRODUCT="L2A")
    data = path.read_bytes()

    class Mem:
        async def get_range(self, uri, start, end):
            return data[start:end]

    header = asyncio.run(parse_header(str(path), Mem()))
    with _rio.open(path) as src:
        assert [header.scale_offset(i) for i in range(2)] == list(zip(src.scales, src.offsets, strict=True))
    assert gdal_metadata_items(header.gdal_metadata)[(None, "PRODUCT")] == "L2A"
    assert gdal_metadata_items("<not xml") == {} and header.scale_offset(5) == (1.0, 0.0)
