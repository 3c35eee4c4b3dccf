"""JPEG tiles decode to GDAL's pixels exactly: every tile against rasterio's read of its window.

rasterio's wheels carry GDAL built on IJG libjpeg 9 (``libjpeg.so.9.6.0``); YCbCr JPEG
decodes with the same library (through jpeglib), RGB and greyscale JPEG with
libjpeg-turbo (imagecodecs), whose 8x8 integer IDCT gives the same pixels.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import Affine
from rasterio.windows import Window

from rasteret_core.errors import DecodeError
from rasteret_core.tiff import decode as _decode
from rasteret_core.tiff.decode import decode_tile
from rasteret_core.tiff.header import ImageInfo, TiffHeader
from rasteret_core.tiff.parser import parse_header

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM = {"crs": "EPSG:32633", "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)}
HEIGHT, WIDTH = 555, 701  # odd: partial tiles at the right and bottom edges


class MemoryStore:
    """A ByteStore over one bytes object."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        return self.data[start:end]


def aerial(bands: int = 3, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """Gradients, sharp-edged patches and noise: enough chroma detail for upsamplers to disagree."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    planes = [x * 0.3 + 40 * np.sin(y / 9), y * 0.4 + 30 * np.cos(x / 7), (x + y) * 0.2]
    data = np.stack(planes[:bands]) + rng.normal(0, 20, (bands, height, width))
    data[:, (x // 37 + y // 23) % 2 == 0] += 70
    data[:bands, (x // 11) % 5 == 0] = [[200], [30], [90]][:bands]
    return np.clip(data, 0, 255).astype(np.uint8)


def write(path: Path, data: np.ndarray, *, mask: np.ndarray | None = None, **profile: object) -> Path:
    profile = {"driver": "GTiff", "compress": "jpeg", **UTM, **profile}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
        path, "w", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype, **profile
    ) as dst:
        dst.write(data)
        if mask is not None:
            dst.write_mask(mask)
    return path


def read_header(path: Path) -> tuple[bytes, TiffHeader]:
    data = path.read_bytes()
    return data, asyncio.run(parse_header(str(path), MemoryStore(data)))


def tiles(data: bytes, image: ImageInfo) -> list[bytes]:
    return [data[o : o + n] for o, n in zip(image.tile_offsets.tolist(), image.tile_byte_counts.tolist(), strict=True)]


def assert_tiles_match_rasterio(path: Path, *, photometric: int, overview_levels: int = 0) -> int:
    """Decode every tile of the image (and its first overviews) and compare each with rasterio's window."""
    data, header = read_header(path)
    compared = 0
    for level, image in enumerate([header.image, *header.overviews[:overview_levels]]):
        assert (image.compression, image.photometric) == (7, photometric)
        samples = image.samples_per_pixel if image.planar_config == 1 else 1
        with rasterio.open(path, **({"overview_level": level - 1} if level else {})) as src:
            assert (src.width, src.height) == (image.width, image.height)
            for index, tile in enumerate(tiles(data, image)):
                plane, local = divmod(index, image.tiles_across * image.tiles_down)
                row, col = divmod(local, image.tiles_across)
                y, x = row * image.tile_height, col * image.tile_width
                h, w = min(image.tile_height, image.height - y), min(image.tile_width, image.width - x)
                bands = list(range(plane + 1, plane + 1 + samples))
                expected = src.read(bands, window=Window(x, y, w, h))
                decoded = decode_tile(tile, image, byte_order=header.byte_order, uri=str(path), tile=index)
                np.testing.assert_array_equal(decoded[:, :h, :w], expected, err_msg=f"level {level} tile {index}")
                compared += 1
    return compared


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
@pytest.mark.parametrize(
    "layout",
    [dict(blockxsize=128, blockysize=128), dict(blockxsize=256, blockysize=256),
     dict(blockxsize=512, blockysize=512), dict(tiled=False, blockysize=48)],
    ids=["tile128", "tile256", "tile512", "strip48"],
)
def test_ycbcr_matches_gdal(tmp_path: Path, quality: int, layout: dict[str, object]) -> None:
    layout = {"tiled": True, **layout}
    path = write(tmp_path / "y.tif", aerial(), photometric="ycbcr", jpeg_quality=quality, **layout)
    assert assert_tiles_match_rasterio(path, photometric=6) > 1


@pytest.mark.parametrize("tables_mode", [0, 1, 2, 3])
def test_ycbcr_every_jpegtablesmode_matches_gdal(tmp_path: Path, tables_mode: int) -> None:
    path = write(
        tmp_path / "y.tif", aerial(height=300, width=333), photometric="ycbcr", tiled=True, blockxsize=128,
        blockysize=128, jpegtablesmode=tables_mode,
    )
    image = read_header(path)[1].image
    assert (image.jpeg_tables is None) == (tables_mode == 0)
    assert_tiles_match_rasterio(path, photometric=6)


@pytest.mark.parametrize(
    "layout",
    [dict(tiled=True, blockxsize=256, blockysize=256), dict(tiled=False, blockysize=64)],
    ids=["tiled", "strip"],
)
def test_ycbcr_with_an_internal_mask_matches_gdal(tmp_path: Path, layout: dict[str, object]) -> None:
    mask = np.full((HEIGHT, WIDTH), 255, np.uint8)
    mask[100:300, 50:420] = 0
    path = write(tmp_path / "m.tif", aerial(), mask=mask, photometric="ycbcr", jpeg_quality=90, **layout)
    header = read_header(path)[1]
    assert any(image.is_mask for image in header.images)  # a separate IFD, not decoded here
    assert_tiles_match_rasterio(path, photometric=6)


def test_ycbcr_cog_overviews_match_gdal(tmp_path: Path) -> None:
    path = write(
        tmp_path / "cog.tif", aerial(height=900, width=1100), driver="COG", blocksize=256, quality=80,
        overview_resampling="average",
    )
    header = read_header(path)[1]
    assert len(header.overviews) >= 2 and all(o.photometric == 6 for o in header.overviews)
    assert_tiles_match_rasterio(path, photometric=6, overview_levels=2)


@pytest.mark.parametrize(
    ("bands", "photometric", "profile"),
    [
        (3, 2, dict(photometric="rgb", tiled=True, blockxsize=256, blockysize=256, jpeg_quality=90)),
        (3, 2, dict(photometric="rgb", tiled=False, blockysize=40, jpeg_quality=75)),
        (3, 2, dict(photometric="rgb", tiled=True, blockxsize=128, blockysize=128, jpegtablesmode=0)),
        (3, 2, dict(interleave="band", tiled=True, blockxsize=128, blockysize=128, jpeg_quality=50)),
        (1, 1, dict(tiled=True, blockxsize=512, blockysize=512, jpeg_quality=95)),
        (1, 1, dict(tiled=False, blockysize=32, jpeg_quality=75)),
    ],
    ids=["rgb-tile256", "rgb-strip", "rgb-tables0", "band-interleaved", "grey-tile512", "grey-strip"],
)
def test_rgb_and_greyscale_match_gdal(
    tmp_path: Path, bands: int, photometric: int, profile: dict[str, object]
) -> None:
    # These decode with libjpeg-turbo: without chroma subsampling or color conversion its pixels are IJG's.
    assert_tiles_match_rasterio(write(tmp_path / "c.tif", aerial(bands), **profile), photometric=photometric)


def test_rgb_overviews_match_gdal(tmp_path: Path) -> None:
    path = write(tmp_path / "r.tif", aerial(), photometric="rgb", tiled=True, blockxsize=128, blockysize=128)
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    assert_tiles_match_rasterio(path, photometric=2, overview_levels=2)


@pytest.mark.parametrize("subsampling", [(1, 1), (2, 1), (2, 2)])
def test_ycbcr_written_by_tifffile_matches_gdal(tmp_path: Path, subsampling: tuple[int, int]) -> None:
    # Self-contained tiles (no JPEGTables) from libjpeg-turbo. Even without subsampling
    # libjpeg-turbo's YCbCr to RGB conversion differs from IJG libjpeg 9's by 1.
    path = tmp_path / "t.tif"
    tifffile.imwrite(
        path, aerial(height=300, width=333).transpose(1, 2, 0), photometric="ycbcr", compression="jpeg",
        compressionargs={"level": 85}, subsampling=subsampling, tile=(128, 128),
    )
    assert assert_tiles_match_rasterio(path, photometric=6) == 9


def test_libjpeg_turbo_differs_from_gdal_on_ycbcr(tmp_path: Path) -> None:
    # Why YCbCr goes to IJG libjpeg: libjpeg-turbo's chroma upsampling is far from GDAL's.
    layout = dict(tiled=True, blockxsize=128, blockysize=128)
    path = write(tmp_path / "y.tif", aerial(height=128, width=128), photometric="ycbcr", **layout)
    data, header = read_header(path)
    (tile,) = tiles(data, header.image)
    turbo = imagecodecs.jpeg8_decode(tile, tables=header.image.jpeg_tables, outcolorspace="RGB")
    with rasterio.open(path) as src:
        difference = np.abs(turbo.transpose(2, 0, 1).astype(int) - src.read())
    assert difference.max() > 10 and (difference > 0).mean() > 0.05


def test_tiles_decode_alike_in_threads_and_leave_no_files(tmp_path: Path) -> None:
    path = write(tmp_path / "y.tif", aerial(), photometric="ycbcr", tiled=True, blockxsize=128, blockysize=128)
    data, header = read_header(path)
    image = header.image

    def decode(index_tile: tuple[int, bytes]) -> np.ndarray:
        return decode_tile(index_tile[1], image, byte_order="<", uri="mem", tile=index_tile[0])

    work = list(enumerate(tiles(data, image))) * 3
    sequential = [decode(item) for item in work]
    temporary = set(Path(tempfile.gettempdir()).glob("rasteret-*"))
    fds = set(os.listdir("/proc/self/fd")) if sys.platform == "linux" else set()
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(decode, work))
    for one, other in zip(sequential, threaded, strict=True):
        np.testing.assert_array_equal(one, other)
    if sys.platform == "linux":
        assert set(os.listdir("/proc/self/fd")) <= fds  # every in-memory file closed
    assert set(Path(tempfile.gettempdir()).glob("rasteret-*")) <= temporary


@pytest.fixture
def ycbcr_tile(tmp_path: Path) -> tuple[bytes, ImageInfo]:
    path = write(
        tmp_path / "y.tif", aerial(height=64, width=64), photometric="ycbcr", tiled=True, blockxsize=64, blockysize=64
    )
    data, header = read_header(path)
    return tiles(data, header.image)[0], header.image


def test_header_check_accepts_what_libjpeg_writes(ycbcr_tile: tuple[bytes, ImageInfo]) -> None:
    tile, image = ycbcr_tile
    stream = _decode._jpeg_stream(tile, image.jpeg_tables)
    assert stream is not None and _decode._parse_ycbcr_jpeg_header(stream) == (64, 64)
    alone = imagecodecs.jpeg8_encode(aerial(height=40, width=24).transpose(1, 2, 0).copy(), level=90)  # JFIF, 2x2
    assert _decode._parse_ycbcr_jpeg_header(alone) == (40, 24)


def test_unusual_headers_fall_back_to_libjpeg_turbo(ycbcr_tile: tuple[bytes, ImageInfo]) -> None:
    tile, image = ycbcr_tile
    padded = tile[:2] + b"\xff" + tile[2:]  # a fill byte before the first marker: legal, not checked
    assert _decode._parse_ycbcr_jpeg_header(_decode._jpeg_stream(padded, image.jpeg_tables) or b"") is None
    exact = decode_tile(tile, image, byte_order="<", uri="mem", tile=0)
    close = decode_tile(padded, image, byte_order="<", uri="mem", tile=0)
    assert np.abs(close.astype(int) - exact).max() < 100


def test_a_truncated_ycbcr_tile_decodes_what_it_holds(ycbcr_tile: tuple[bytes, ImageInfo]) -> None:
    # libjpeg warns (on stderr) and fills the rest, as GDAL does: the rows before the cut survive.
    tile, image = ycbcr_tile
    intact = decode_tile(tile, image, byte_order="<", uri="mem", tile=0)
    cut = decode_tile(tile[: len(tile) // 2], image, byte_order="<", uri="mem", tile=0)
    np.testing.assert_array_equal(cut[:, :16], intact[:, :16])


def bogus_huffman_table(tile: bytes) -> bytes:
    """Give every code of the tile's first Huffman table length 1: more codes than fit (same segment size)."""
    at = tile.index(b"\xff\xc4") + 5  # FF C4, length, class and index, then the counts of codes of length 1-16
    count = sum(tile[at : at + 16])
    assert count > 2
    return tile[:at] + bytes([count] + [0] * 15) + tile[at + 16 :]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (bogus_huffman_table, "IJG libjpeg 9f could not decode"),  # libjpeg fails after its header: caught
        (lambda t: t.replace(b"\xff\xda", b"\xff\xd9", 1), "missing SOS"),  # header check fails: libjpeg-turbo
        (lambda _t: b"\xff\xd8" + bytes(30), "no image"),
    ],
    ids=["bogus-huffman-table", "no-sos", "no-header"],
)
def test_corrupt_ycbcr_tiles_raise_decode_error(
    ycbcr_tile: tuple[bytes, ImageInfo], corrupt: Callable[[bytes], bytes], message: str
) -> None:
    tile, image = ycbcr_tile
    with pytest.raises(DecodeError, match=message) as info:
        decode_tile(corrupt(tile), image, byte_order="<", uri="s3://b/k.tif", tile=3)
    assert (info.value.uri, info.value.tile, info.value.codec) == ("s3://b/k.tif", 3, 7)


def test_header_check_keeps_libjpeg_from_failing_in_its_header(
    tmp_path: Path, ycbcr_tile: tuple[bytes, ImageInfo]
) -> None:
    """Fuzz: every mutated header the check accepts goes through IJG libjpeg, in a child process.

    jpeglib's wrapper crashes when libjpeg fails in jpeg_read_header, so a header the
    check wrongly accepts would kill the child (and fail this test), not pass quietly.
    """
    tile, image = ycbcr_tile
    stream = _decode._jpeg_stream(tile, image.jpeg_tables)
    assert stream is not None
    rng = np.random.default_rng(1)
    header_end = stream.index(b"\xff\xda") + 14
    accepted = []
    for _ in range(4000):
        mutated = bytearray(stream)
        for _ in range(int(rng.integers(1, 4))):
            at, kind = int(rng.integers(2, header_end)), int(rng.integers(0, 3))
            if kind == 0:
                mutated[at] = int(rng.integers(0, 256))
            elif kind == 1:
                del mutated[at]
            else:
                mutated.insert(at, int(rng.choice([0x00, 0x01, 0x03, 0x10, 0x22, 0xC4, 0xD8, 0xDA, 0xDB, 0xFF])))
        size = _decode._parse_ycbcr_jpeg_header(bytes(mutated))
        if size is not None and size[0] <= 64 and size[1] == 64:  # what _decode_jpeg lets through for this tile
            accepted.append(bytes(mutated))
    assert 100 < len(accepted) < 4000
    (tmp_path / "streams.bin").write_bytes(b"".join(len(s).to_bytes(4, "big") + s for s in accepted))
    child = textwrap.dedent(
        """
        import sys
        from rasteret_core.tiff import decode as _decode
        data, pos, decoded = open(sys.argv[1], "rb").read(), 0, 0
        while pos < len(data):
            size = int.from_bytes(data[pos : pos + 4], "big")
            stream, pos = data[pos + 4 : pos + 4 + size], pos + 4 + size
            height, width = _decode._parse_ycbcr_jpeg_header(stream)
            try:
                _decode._decode_jpeg_ijg(stream, height, width)
                decoded += 1
            except RuntimeError:
                pass
        print(decoded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path / "streams.bin")], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).parents[2], check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) > 0
