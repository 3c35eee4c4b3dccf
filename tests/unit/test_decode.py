"""Tile decoding: whole images decoded tile by tile equal rasterio's (and tifffile's) reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import Affine

from rasteret_core.errors import DecodeError, UnsupportedTiffError
from rasteret_core.tiff.decode import check_supported, decode_tile
from rasteret_core.tiff.header import ImageInfo, TiffHeader
from rasteret_core.tiff.parser import parse_header

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM = {"crs": "EPSG:32633", "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)}


class MemoryStore:
    """A ByteStore over one bytes object."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        return self.data[start:end]


def decode_image(data: bytes, header: TiffHeader, index: int = 0) -> np.ndarray:
    """Decode every tile of ``header.images[index]`` and assemble ``[sample, y, x]``."""
    image = header.images[index]
    th, tw = image.tile_height, image.tile_width
    planar = image.planar_config == 2
    out = np.zeros((image.samples_per_pixel, image.tiles_down * th, image.tiles_across * tw), image.dtype)
    for tile, (offset, count) in enumerate(zip(image.tile_offsets.tolist(), image.tile_byte_counts.tolist(), strict=True)):
        plane, local = divmod(tile, image.tiles_across * image.tiles_down)
        row, col = divmod(local, image.tiles_across)
        pixels = decode_tile(data[offset : offset + count], image, byte_order=header.byte_order, uri="mem", tile=tile)
        assert pixels.shape == (1 if planar else image.samples_per_pixel, th, tw)
        assert pixels.dtype == image.dtype and pixels.dtype.isnative
        out[plane : plane + 1 if planar else None, row * th : (row + 1) * th, col * tw : (col + 1) * tw] = pixels
    return out[:, : image.height, : image.width]


def read_file(path: Path) -> tuple[bytes, TiffHeader]:
    data = path.read_bytes()
    return data, asyncio.run(parse_header(str(path), MemoryStore(data)))


def sample_data(dtype: str, bands: int = 3, height: int = 37, width: int = 45, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        data = (rng.normal(0, 1000, (bands, height, width))).astype(dtype)
        data[0, 0, :3] = [np.nan, np.inf, -np.inf]
        return data
    info = np.iinfo(kind)
    smooth = np.cumsum(rng.integers(-3, 4, (bands, height, width)), axis=-1)  # what predictors are for
    noise = rng.integers(info.min, info.max, (bands, height, width), dtype=dtype, endpoint=True)
    data = (smooth + info.min // 2 + info.max // 2).astype(dtype)
    data[:, ::3] = noise[:, ::3]
    return data


def write(path: Path, data: np.ndarray, **profile: object) -> Path:
    profile.setdefault("driver", "GTiff")
    with rasterio.open(
        path, "w", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype, **profile
    ) as dst:
        dst.write(data)
    return path


def assert_decodes_like_rasterio(path: Path, *, overview_levels: int = 0) -> None:
    data, header = read_file(path)
    with rasterio.open(path) as src:
        expected = src.read()
    np.testing.assert_array_equal(decode_image(data, header), expected)
    for level, overview in enumerate(header.overviews[:overview_levels]):
        with rasterio.open(path, overview_level=level) as src:
            expected = src.read()
        np.testing.assert_array_equal(decode_image(data, header, header.images.index(overview)), expected)


DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float64"]
CODECS = ["none", "deflate", "lzw", "zstd", "packbits", "lzma"]


def codec_cases() -> list[tuple[str, str, int]]:
    cases = []
    for dtype in DTYPES:
        for codec in CODECS:
            predictors = [1] if codec in ("none", "packbits") else [1, 2, 3] if dtype.startswith("float") else [1, 2]
            cases += [(dtype, codec, predictor) for predictor in predictors]
    return cases


@pytest.mark.parametrize("interleave", ["pixel", "band"])
@pytest.mark.parametrize(("dtype", "codec", "predictor"), codec_cases())
def test_tiled_matches_rasterio(tmp_path: Path, dtype: str, codec: str, predictor: int, interleave: str) -> None:
    path = write(
        tmp_path / "t.tif", sample_data(dtype), tiled=True, blockxsize=16, blockysize=16, compress=codec,
        predictor=predictor, interleave=interleave, **UTM,
    )
    assert_decodes_like_rasterio(path)


@pytest.mark.parametrize(("dtype", "codec", "predictor"), [c for c in codec_cases() if c[1] != "lzma"])
def test_striped_matches_rasterio(tmp_path: Path, dtype: str, codec: str, predictor: int) -> None:
    # 37 rows in strips of 5: the last strip holds 2 rows.
    path = write(tmp_path / "s.tif", sample_data(dtype), tiled=False, blockysize=5, compress=codec, predictor=predictor)
    assert_decodes_like_rasterio(path)


@pytest.mark.parametrize("interleave", ["pixel", "band"])
@pytest.mark.parametrize(("dtype", "codec", "predictor"), [c for c in codec_cases() if c[1] in ("none", "zstd")])
def test_big_endian_matches_rasterio(tmp_path: Path, dtype: str, codec: str, predictor: int, interleave: str) -> None:
    path = write(
        tmp_path / "be.tif", sample_data(dtype), tiled=True, blockxsize=16, blockysize=32, compress=codec,
        predictor=predictor, interleave=interleave, endianness="BIG",
    )
    assert read_file(path)[1].byte_order == ">"
    assert_decodes_like_rasterio(path)


@pytest.mark.parametrize(("dtype", "predictor"), [("uint16", 2), ("float32", 3)])
def test_cog_overviews_match_rasterio(tmp_path: Path, dtype: str, predictor: int) -> None:
    path = write(
        tmp_path / "cog.tif", sample_data(dtype, 2, 300, 260), driver="COG", blocksize=64, compress="deflate",
        predictor=predictor, overview_resampling="average", **UTM,
    )
    assert_decodes_like_rasterio(path, overview_levels=2)


@pytest.mark.parametrize(
    "profile",
    [
        dict(compress="webp", webp_lossless=True, tiled=True, blockxsize=16, blockysize=16),
        dict(compress="lerc", max_z_error=0, tiled=True, blockxsize=16, blockysize=16),
        dict(compress="lerc_deflate", max_z_error=0, tiled=True, blockxsize=16, blockysize=16, interleave="band"),
        dict(compress="lerc_zstd", max_z_error=0, tiled=False, blockysize=8),
    ],
    ids=["webp", "lerc", "lerc-deflate-band", "lerc-zstd-striped"],
)
def test_lossless_image_codecs_match_rasterio(tmp_path: Path, profile: dict[str, object]) -> None:
    assert_decodes_like_rasterio(write(tmp_path / "i.tif", sample_data("uint8", 3), **profile))


@pytest.mark.parametrize("bands", [3, 4])
def test_webp_with_and_without_alpha(tmp_path: Path, bands: int) -> None:
    data = sample_data("uint8", bands)
    if bands == 4:
        data[3] = 255  # an all-opaque alpha: WebP may drop it
    profile = dict(compress="webp", webp_lossless=True, tiled=True, blockxsize=16, blockysize=16)
    path = write(tmp_path / "w.tif", data, **profile)
    assert_decodes_like_rasterio(path)


def test_lerc_float_matches_rasterio(tmp_path: Path) -> None:
    data = sample_data("float32", 2)
    data[0, 0, :3] = 1.0  # LERC masks non-finite values; keep this a plain lossless comparison
    assert_decodes_like_rasterio(write(tmp_path / "l.tif", data, compress="lerc", max_z_error=0, tiled=True))


def smooth_rgb(height: int = 37, width: int = 45) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 5, y * 6, (x + y) * 3]).astype(np.uint8)


@pytest.mark.parametrize(
    ("bands", "profile"),
    [
        (3, dict(compress="jpeg", photometric="rgb", tiled=True, blockxsize=16, blockysize=16)),
        (3, dict(compress="jpeg", interleave="band", tiled=True, blockxsize=16, blockysize=16)),
        (1, dict(compress="jpeg", tiled=True, blockxsize=16, blockysize=16)),
    ],
    ids=["rgb", "band", "gray"],
)
def test_jpeg_matches_rasterio(tmp_path: Path, bands: int, profile: dict[str, object]) -> None:
    assert_decodes_like_rasterio(write(tmp_path / "j.tif", smooth_rgb()[:bands], **profile))


@pytest.mark.parametrize(
    "profile",
    [dict(driver="COG", compress="jpeg"), dict(compress="jpeg", photometric="ycbcr", tiled=False, blockysize=16)],
    ids=["cog", "striped"],
)
def test_jpeg_ycbcr_equals_rasterio(tmp_path: Path, profile: dict[str, object]) -> None:
    # YCbCr tiles decode with IJG libjpeg 9, as rasterio's GDAL does (DCT-scaled chroma upsampling).
    path = write(tmp_path / "j.tif", smooth_rgb(), **profile)
    data, header = read_file(path)
    assert header.image.photometric == 6
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(decode_image(data, header), src.read())


@pytest.mark.parametrize(
    ("dtype", "kwargs"),
    [
        ("float16", dict(compression="zlib", predictor=3, tile=(16, 16))),
        ("float64", dict(compression="zlib", predictor=3, byteorder=">", rowsperstrip=6)),
        ("int8", dict(compression="lzw", predictor=2, tile=(16, 32))),
        ("uint64", dict(compression="zstd", predictor=2, byteorder=">", tile=(16, 16))),
        ("int64", dict(compression="packbits", rowsperstrip=4, planarconfig="separate")),
        ("uint8", dict(compression="jpeg2000", compressionargs={"level": 0}, tile=(16, 16))),
        ("uint16", dict(compression="jpegxl", compressionargs={"lossless": True}, tile=(16, 16))),
    ],
)
def test_tifffile_written_files_match_tifffile(tmp_path: Path, dtype: str, kwargs: dict[str, object]) -> None:
    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "f":
        data = rng.normal(0, 100, (37, 45, 3)).astype(dtype)
    else:
        data = rng.integers(0, 120, (37, 45, 3)).astype(dtype)
    separate = kwargs.get("planarconfig") == "separate"
    path = tmp_path / "tf.tif"
    tifffile.imwrite(path, np.moveaxis(data, -1, 0) if separate else data, photometric="rgb", **kwargs)
    file_bytes, header = read_file(path)
    expected = tifffile.imread(path)
    expected = expected if separate else np.moveaxis(expected, -1, 0)
    np.testing.assert_array_equal(decode_image(file_bytes, header), expected)
    with tifffile.TiffFile(path) as tif:
        assert header.image.compression == tif.pages[0].compression


# ---- edge cases on hand-made images -------------------------------------------------------------


def image_info(**changes: object) -> ImageInfo:
    fields: dict[str, object] = dict(
        width=8, height=4, tile_width=8, tile_height=4, tiled=False, samples_per_pixel=1, bits_per_sample=8,
        sample_format=1, planar_config=1, compression=1, predictor=1, photometric=1, subfile_type=0,
        tile_offsets=np.zeros(1, np.int64), tile_byte_counts=np.zeros(1, np.int64),
    )  # fmt: skip
    fields.update(changes)
    return ImageInfo(**fields)  # type: ignore[arg-type]


def test_short_strip_is_padded_with_zeros() -> None:
    image = image_info(bits_per_sample=16)
    rows = np.arange(16, dtype=">u2").reshape(2, 8)
    tile = decode_tile(rows.tobytes(), image, byte_order=">", uri="mem", tile=0)
    assert tile.shape == (1, 4, 8) and tile.dtype == np.dtype("uint16")
    np.testing.assert_array_equal(tile[0, :2], rows)
    assert not tile[0, 2:].any()


def test_predictor_2_on_a_short_strip() -> None:
    image = image_info(bits_per_sample=16, sample_format=2, samples_per_pixel=2, compression=8, predictor=2)
    pixels = np.random.default_rng(0).integers(-3000, 3000, (3, 8, 2)).astype("<i2")
    encoded = imagecodecs.zlib_encode(imagecodecs.delta_encode(pixels, axis=-2).tobytes())
    tile = decode_tile(encoded, image, byte_order="<", uri="mem", tile=0)
    np.testing.assert_array_equal(tile[:, :3], pixels.transpose(2, 0, 1))
    assert tile.shape == (2, 4, 8) and not tile[:, 3:].any()


@pytest.mark.parametrize(
    ("data", "changes"),
    [
        (b"\x01\x02\x03", {}),  # not a whole row
        (b"", {}),
        (b"not deflate at all", dict(compression=8)),
        (b"garbage", dict(compression=50000)),
        (b"\xff\xd8 broken jpeg", dict(compression=7)),
        (bytes(100), dict(compression=34887)),
    ],
)
def test_bad_data_raises_decode_error(data: bytes, changes: dict[str, object]) -> None:
    image = image_info(**changes)
    with pytest.raises(DecodeError) as info:
        decode_tile(data, image, byte_order="<", uri="s3://b/k.tif", tile=5)
    assert (info.value.uri, info.value.tile, info.value.codec) == ("s3://b/k.tif", 5, image.compression)
    if image.compression != 1:
        assert info.value.__cause__ is not None


def test_image_codec_of_the_wrong_shape_raises_decode_error() -> None:
    image = image_info(compression=50001, samples_per_pixel=3, photometric=2)
    other = imagecodecs.webp_encode(np.zeros((4, 16, 3), np.uint8), lossless=True)
    with pytest.raises(DecodeError, match="shape"):
        decode_tile(other, image, byte_order="<", uri="mem", tile=0)


@pytest.mark.parametrize(
    ("changes", "tag", "value"),
    [
        (dict(compression=999), "Compression", 999),
        (dict(compression=3), "Compression", 3),  # CCITT fax
        (dict(predictor=4, compression=8), "Predictor", 4),
        (dict(predictor=3, compression=8), "Predictor", 3),  # on integers
        (dict(predictor=2, compression=7), "Predictor", 2),
        (dict(bits_per_sample=1, predictor=2, compression=8), "BitsPerSample", 1),
        (dict(bits_per_sample=1, compression=7), "BitsPerSample", 1),
        (dict(bits_per_sample=12), "BitsPerSample", 12),
        (dict(bits_per_sample=24, sample_format=3), "BitsPerSample", 24),
        (dict(bits_per_sample=8, sample_format=3), "BitsPerSample", 8),
        (dict(bits_per_sample=16, compression=7), "BitsPerSample", 16),  # 12/16-bit JPEG
        (dict(sample_format=6, bits_per_sample=64), "SampleFormat", 6),
        (dict(photometric=6, samples_per_pixel=3, compression=8), "PhotometricInterpretation", 6),
    ],
)
def test_unsupported_images_are_refused_at_plan_time(changes: dict[str, object], tag: str, value: int) -> None:
    image = image_info(**changes)
    with pytest.raises(UnsupportedTiffError) as info:
        check_supported(image, uri="s3://b/k.tif")
    assert (info.value.tag, info.value.value, info.value.uri) == (tag, value, "s3://b/k.tif")
    with pytest.raises(UnsupportedTiffError):
        decode_tile(b"\0" * 64, image, byte_order="<", uri="s3://b/k.tif", tile=0)


@pytest.mark.parametrize("compression", [1, 5, 7, 8, 32946, 32773, 34925, 50000, 50001, 34887, 34712, 50002])
def test_supported_codecs_pass_the_check(compression: int) -> None:
    check_supported(image_info(compression=compression), uri="mem")
