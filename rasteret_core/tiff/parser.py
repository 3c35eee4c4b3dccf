"""Parse (Geo)TIFF headers: every IFD, the tile tables, georeferencing and nodata.

:func:`parse_header` reads byte ranges through any :class:`~rasteret_core.io.store.ByteStore`.
A cloud-optimized GeoTIFF keeps its header at the start of the file, so one request
of ``header_read`` bytes usually covers it; IFDs or tag values beyond it are fetched
with a read-ahead that doubles at each further request, and fetched chunks are kept
in a sparse cache (an IFD at the end of a large file costs one more request, not a
read of the whole file).

Everything malformed raises :class:`~rasteret_core.errors.TiffFormatError`; valid
files using a feature Rasteret does not read (samples of mixed bit depth, a CRS of
another body than the Earth) raise :class:`~rasteret_core.errors.UnsupportedTiffError`.
The CRS is built from the GeoKeys as libgeotiff and GDAL build it (see `geokeys`);
keys that define no CRS Rasteret can build raise
:class:`~rasteret_core.errors.UnresolvedCRSError`, unless ``fallback_crs`` is given.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rasteret_core.errors import FetchError, RasteretError, TiffFormatError, UnresolvedCRSError, UnsupportedTiffError
from rasteret_core.io.freshness import ObjectFacts, unchanged
from rasteret_core.io.runtime import with_stores
from rasteret_core.io.store import ByteStore, IOStats, ObjectInfo, Stores
from rasteret_core.settings import Settings

from .geokeys import GT_RASTER_TYPE, CrsSource, GeoKeys, parse_geokeys, resolve_catalog_crs, resolve_crs
from .header import ByteOrder, ImageInfo, TiffHeader

__all__ = ["fetch_headers", "parse_header", "read_headers"]

log = logging.getLogger(__name__)

MAX_IFDS = 1024
MAX_ENTRIES = 4096  # tags in one IFD
MAX_TAG_VALUES = 2**28
MAX_TAG_BYTES = 2**30
MAX_READ_AHEAD = 16 * 2**20
_INT64_MAX = 2**63 - 1

NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
BITS_PER_SAMPLE = 258
COMPRESSION = 259
PHOTOMETRIC = 262
STRIP_OFFSETS = 273
SAMPLES_PER_PIXEL = 277
ROWS_PER_STRIP = 278
STRIP_BYTE_COUNTS = 279
PLANAR_CONFIG = 284
PREDICTOR = 317
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
EXTRA_SAMPLES = 338
SAMPLE_FORMAT = 339
JPEG_TABLES = 347
MODEL_PIXEL_SCALE = 33550
MODEL_TIEPOINT = 33922
MODEL_TRANSFORMATION = 34264
GEO_KEY_DIRECTORY = 34735
GEO_DOUBLE_PARAMS = 34736
GEO_ASCII_PARAMS = 34737
GDAL_METADATA = 42112
GDAL_NODATA = 42113

_TAG_NAMES = {
    NEW_SUBFILE_TYPE: "NewSubfileType",
    IMAGE_WIDTH: "ImageWidth",
    IMAGE_LENGTH: "ImageLength",
    BITS_PER_SAMPLE: "BitsPerSample",
    COMPRESSION: "Compression",
    PHOTOMETRIC: "PhotometricInterpretation",
    STRIP_OFFSETS: "StripOffsets",
    SAMPLES_PER_PIXEL: "SamplesPerPixel",
    ROWS_PER_STRIP: "RowsPerStrip",
    STRIP_BYTE_COUNTS: "StripByteCounts",
    PLANAR_CONFIG: "PlanarConfiguration",
    PREDICTOR: "Predictor",
    TILE_WIDTH: "TileWidth",
    TILE_LENGTH: "TileLength",
    TILE_OFFSETS: "TileOffsets",
    TILE_BYTE_COUNTS: "TileByteCounts",
    EXTRA_SAMPLES: "ExtraSamples",
    SAMPLE_FORMAT: "SampleFormat",
    JPEG_TABLES: "JPEGTables",
    MODEL_PIXEL_SCALE: "ModelPixelScale",
    MODEL_TIEPOINT: "ModelTiepoint",
    MODEL_TRANSFORMATION: "ModelTransformation",
    GEO_KEY_DIRECTORY: "GeoKeyDirectory",
    GEO_DOUBLE_PARAMS: "GeoDoubleParams",
    GEO_ASCII_PARAMS: "GeoAsciiParams",
    GDAL_METADATA: "GDAL_METADATA",
    GDAL_NODATA: "GDAL_NODATA",
}

# TIFF field type -> (numpy type code, numbers per value); RATIONALs are pairs.
_FIELD_TYPES: dict[int, tuple[str, int]] = {
    1: ("u1", 1),  # BYTE
    2: ("u1", 1),  # ASCII
    3: ("u2", 1),  # SHORT
    4: ("u4", 1),  # LONG
    5: ("u4", 2),  # RATIONAL
    6: ("i1", 1),  # SBYTE
    7: ("u1", 1),  # UNDEFINED
    8: ("i2", 1),  # SSHORT
    9: ("i4", 1),  # SLONG
    10: ("i4", 2),  # SRATIONAL
    11: ("f4", 1),  # FLOAT
    12: ("f8", 1),  # DOUBLE
    13: ("u4", 1),  # IFD
    16: ("u8", 1),  # LONG8
    17: ("i8", 1),  # SLONG8
    18: ("u8", 1),  # IFD8
}
_INTEGER_TYPES = frozenset({1, 3, 4, 6, 8, 9, 13, 16, 17, 18})


async def parse_header(
    uri: str, store: ByteStore, *, header_read: int = 65536, fallback_crs: str | None = None
) -> TiffHeader:
    """Parse the header of the (Geo)TIFF at ``uri``: every IFD, georeferencing, nodata.

    Args:
        uri: The file, as ``store`` names it.
        store: Serves half-open byte ranges ``[start, end)`` of ``uri``.
        header_read: Bytes read by the first request; later requests double it.
        fallback_crs: The CRS to use when the GeoKeys define none Rasteret can build
            (a catalog's ``proj:wkt2`` or ``proj:projjson``, or anything pyproj reads);
            the header then says ``crs_source="catalog"``.

    Returns:
        The header. ``images[0]`` is the full-resolution image, the others follow in
        file order (overviews and masks, told apart by ``subfile_type``). The
        transform is in rasterio order, shifted by half a pixel for PixelIsPoint
        rasters as GDAL does. ``crs`` is ``"EPSG:<code>"`` or WKT2, ``crs_source`` says
        where it came from.

    Raises:
        TiffFormatError: The file is not a TIFF, or is truncated or inconsistent.
        UnresolvedCRSError: The GeoKeys define no CRS Rasteret can build (and there is
            no ``fallback_crs``).
        UnsupportedTiffError: The file is valid but uses a feature Rasteret does not read.
        FetchError: The store could not serve a range.
    """
    reader = _Reader(uri, store, header_read)
    layout = await _read_layout(reader)
    ifds = [_IFD(entries, reader, layout) for entries in await _read_ifd_chain(reader, layout)]
    images = [await _read_image(ifd) for ifd in ifds]
    full = next((i for i, im in enumerate(images) if not im.subfile_type & 0b101), 0)
    images.insert(0, images.pop(full))
    crs, crs_source, transform, pixel_is_point = await _read_georeferencing(ifds[full], fallback_crs)
    nodata, warnings = _nodata_in_range(await _read_nodata(ifds[full]), images[0])
    gdal_metadata = await ifds[full].text(GDAL_METADATA)
    if reader.size is not None:
        for image in images:
            _check_tiles_in_file(image, reader.size, uri)
    log.debug("parsed %s: %d images, %d requests, %d bytes", uri, len(images), reader.requests, reader.bytes_read)
    return TiffHeader(
        uri=uri, byte_order=layout.byte_order, bigtiff=layout.bigtiff, images=tuple(images), crs=crs,
        crs_source=crs_source, transform=transform, nodata=nodata, pixel_is_point=pixel_is_point,
        gdal_metadata=gdal_metadata, warnings=warnings, size=reader.size, header_bytes_read=reader.bytes_read,
        header_requests=reader.requests,
    )


class _Reader:
    """Serves byte ranges of one object from a sparse cache of fetched chunks."""

    def __init__(self, uri: str, store: ByteStore, read_ahead: int) -> None:
        self.uri = uri
        self.store = store
        self.read_ahead = read_ahead
        self.size: int | None = None  # known once a read came back short
        self.requests = 0
        self.bytes_read = 0
        self._chunks: list[tuple[int, bytes]] = []  # sorted by start, disjoint, not adjacent

    async def read(self, offset: int, length: int) -> bytes:
        """Return exactly ``length`` bytes at ``offset``, fetching what the cache lacks."""
        data, fetch_from = self._lookup(offset, offset + length)
        if data is None:
            await self._fetch(fetch_from, max(offset + length, fetch_from + self.read_ahead))
            self.read_ahead = min(2 * self.read_ahead, MAX_READ_AHEAD)
            data, _ = self._lookup(offset, offset + length)
            if data is None:
                raise TiffFormatError(
                    f"bytes [{offset}, {offset + length}) lie past the end of the file ({self.size} bytes): the "
                    "TIFF is truncated or corrupt (an offset in its header points outside it); check it with gdalinfo, "
                    "or copy it again",
                    uri=self.uri,
                )
        return data

    def _lookup(self, start: int, end: int) -> tuple[bytes | None, int]:
        """Return the cached bytes ``[start, end)``, or None and where fetching should begin."""
        for chunk_start, chunk in self._chunks:
            chunk_end = chunk_start + len(chunk)
            if chunk_start <= start <= chunk_end:
                if end <= chunk_end:
                    return chunk[start - chunk_start : end - chunk_start], start
                return None, chunk_end
        return None, start

    async def _fetch(self, start: int, end: int) -> None:
        if self.size is not None:
            end = min(end, self.size)
            if start >= end:
                return
        data = await self.store.get_range(self.uri, start, end)
        self.requests += 1
        self.bytes_read += len(data)
        log.debug("header read %s [%d, %d): %d bytes", self.uri, start, end, len(data))
        if len(data) < end - start:
            self.size = start + len(data)
        if data:
            self._insert(start, bytes(data))

    def _insert(self, start: int, data: bytes) -> None:
        merged: list[tuple[int, bytes]] = []
        for chunk_start, chunk in sorted([*self._chunks, (start, data)], key=lambda c: c[0]):
            if merged and chunk_start <= merged[-1][0] + len(merged[-1][1]):
                prev_start, prev = merged[-1]
                prev_end = prev_start + len(prev)
                if chunk_start + len(chunk) > prev_end:
                    merged[-1] = (prev_start, prev + chunk[prev_end - chunk_start :])
            else:
                merged.append((chunk_start, chunk))
        self._chunks = merged


@dataclass(frozen=True, slots=True)
class _Layout:
    """Byte order and classic/BigTIFF sizes of one file."""

    byte_order: ByteOrder
    bigtiff: bool

    @property
    def endian(self) -> Literal["little", "big"]:
        return "little" if self.byte_order == "<" else "big"

    @property
    def offset_size(self) -> int:
        return 8 if self.bigtiff else 4

    @property
    def header_size(self) -> int:
        return 16 if self.bigtiff else 8

    @property
    def entry_dtype(self) -> np.dtype:
        bo = self.byte_order
        count = "u8" if self.bigtiff else "u4"
        return np.dtype(
            [("tag", bo + "u2"), ("type", bo + "u2"), ("count", bo + count), ("value", f"V{self.offset_size}")]
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    tag: int
    type: int
    count: int
    value: bytes  # the raw value field: the value itself when it fits, else its offset


async def _read_layout(reader: _Reader) -> _Layout:
    head = await reader.read(0, 8)
    marks: dict[bytes, ByteOrder] = {b"II": "<", b"MM": ">"}
    if head[:2] not in marks:
        raise TiffFormatError(f"not a TIFF file (starts with {head[:4]!r})", uri=reader.uri)
    layout = _Layout(marks[head[:2]], bigtiff=False)
    version = int.from_bytes(head[2:4], layout.endian)
    if version == 42:
        return layout
    if version == 43:
        head = await reader.read(0, 16)
        if int.from_bytes(head[4:6], layout.endian) != 8 or int.from_bytes(head[6:8], layout.endian) != 0:
            raise TiffFormatError("BigTIFF header has a bad offset size", uri=reader.uri)
        return _Layout(layout.byte_order, bigtiff=True)
    raise TiffFormatError(f"not a TIFF file (version {version}, expected 42 or 43)", uri=reader.uri)


async def _read_ifd_chain(reader: _Reader, layout: _Layout) -> list[dict[int, _Entry]]:
    """Read the entries of every IFD in the chain, in file order."""
    first = await reader.read(layout.header_size - layout.offset_size, layout.offset_size)
    offset = int.from_bytes(first, layout.endian)
    ifds: list[dict[int, _Entry]] = []
    seen: set[int] = set()
    while offset:
        if offset in seen:
            raise TiffFormatError(f"the IFD chain loops back to offset {offset}", uri=reader.uri)
        if len(ifds) == MAX_IFDS:
            raise TiffFormatError(f"more than {MAX_IFDS} IFDs", uri=reader.uri)
        if offset < layout.header_size:
            raise TiffFormatError(f"an IFD offset ({offset}) points into the file header", uri=reader.uri)
        seen.add(offset)
        entries, offset = await _read_ifd(reader, layout, offset)
        ifds.append(entries)
    if not ifds:
        raise TiffFormatError("the file holds no image (first IFD offset is 0)", uri=reader.uri)
    return ifds


async def _read_ifd(reader: _Reader, layout: _Layout, offset: int) -> tuple[dict[int, _Entry], int]:
    """Read one IFD; return its entries (first of each tag wins) and the next IFD's offset."""
    count_size = 8 if layout.bigtiff else 2
    n = int.from_bytes(await reader.read(offset, count_size), layout.endian)
    if not 0 < n <= MAX_ENTRIES:
        raise TiffFormatError(f"the IFD at offset {offset} claims {n} entries", uri=reader.uri)
    dtype = layout.entry_dtype
    block = await reader.read(offset + count_size, n * dtype.itemsize + layout.offset_size)
    entries: dict[int, _Entry] = {}
    for tag, type_, count, value in np.frombuffer(block, dtype, count=n).tolist():
        if tag in _TAG_NAMES and tag not in entries:
            entries[tag] = _Entry(tag, type_, count, bytes(value))
    return entries, int.from_bytes(block[-layout.offset_size :], layout.endian)


class _IFD:
    """Typed access to the values of one IFD's tags (values are read on demand)."""

    def __init__(self, entries: dict[int, _Entry], reader: _Reader, layout: _Layout) -> None:
        self.entries = entries
        self.reader = reader
        self.layout = layout

    def has(self, tag: int) -> bool:
        return tag in self.entries

    def count(self, tag: int) -> int:
        return self.entries[tag].count

    def error(self, tag: int, message: str) -> TiffFormatError:
        return TiffFormatError(f"tag {_TAG_NAMES[tag]} ({tag}) {message}", uri=self.reader.uri)

    async def raw(self, tag: int) -> bytes:
        """The bytes of the tag's values as stored."""
        entry = self.entries[tag]
        if entry.type not in _FIELD_TYPES:
            raise self.error(tag, f"has unknown field type {entry.type}")
        code, per_value = _FIELD_TYPES[entry.type]
        nbytes = entry.count * per_value * np.dtype(code).itemsize
        if entry.count > MAX_TAG_VALUES or nbytes > MAX_TAG_BYTES:
            raise self.error(tag, f"claims {entry.count} values ({nbytes} bytes)")
        if nbytes <= self.layout.offset_size:
            return entry.value[:nbytes]
        return await self.reader.read(int.from_bytes(entry.value, self.layout.endian), nbytes)

    async def numbers(self, tag: int) -> np.ndarray:
        """The tag's values as a numeric array (RATIONALs divided out to float64)."""
        entry = self.entries[tag]
        raw = await self.raw(tag)
        code, per_value = _FIELD_TYPES[entry.type]
        values = np.frombuffer(raw, np.dtype(code).newbyteorder(self.layout.byte_order))
        if per_value == 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios: np.ndarray = values[0::2].astype(np.float64) / values[1::2]
                return ratios
        return values

    async def ints(self, tag: int) -> np.ndarray:
        """The tag's values as non-negative int64 (must be an integer field type)."""
        entry = self.entries[tag]
        if entry.type not in _INTEGER_TYPES:
            raise self.error(tag, f"must hold integers, has field type {entry.type}")
        values = await self.numbers(tag)
        if values.size and (values.min() < 0 or values.max() > _INT64_MAX):
            raise self.error(tag, "holds a value out of range")
        return values.astype(np.int64)

    async def scalar(self, tag: int, default: int | None = None) -> int:
        """The tag's first value; ``default`` when absent (required when None)."""
        if tag not in self.entries:
            if default is None:
                raise self.error(tag, "is required but missing")
            return default
        values = await self.ints(tag)
        if values.size == 0:
            raise self.error(tag, "has no value")
        return int(values[0])

    async def same_ints(self, tag: int, default: int) -> int:
        """The tag's one value repeated per sample; UnsupportedTiffError when samples differ."""
        if tag not in self.entries:
            return default
        values = await self.ints(tag)
        if values.size == 0:
            raise self.error(tag, "has no value")
        if (values != values[0]).any():
            raise UnsupportedTiffError(
                "samples differ", uri=self.reader.uri, tag=_TAG_NAMES[tag], value=tuple(values.tolist())
            )
        return int(values[0])

    async def text(self, tag: int) -> str | None:
        """The tag's ASCII value up to the first NUL; None when absent."""
        if tag not in self.entries:
            return None
        return (await self.raw(tag)).split(b"\0", 1)[0].decode("utf-8", errors="replace")


async def _read_image(ifd: _IFD) -> ImageInfo:
    uri = ifd.reader.uri
    width = await ifd.scalar(IMAGE_WIDTH)
    height = await ifd.scalar(IMAGE_LENGTH)
    if width == 0 or height == 0:
        raise TiffFormatError(f"image has zero size ({width}x{height})", uri=uri)
    samples = await ifd.scalar(SAMPLES_PER_PIXEL, 1)
    if samples == 0:
        raise ifd.error(SAMPLES_PER_PIXEL, "is 0")
    bits = await ifd.same_ints(BITS_PER_SAMPLE, 1)
    if bits == 0:
        raise ifd.error(BITS_PER_SAMPLE, "is 0")
    sample_format = await ifd.same_ints(SAMPLE_FORMAT, 1)
    if sample_format == 4:  # "undefined": read as unsigned integers, as GDAL does
        sample_format = 1
    if sample_format not in (1, 2, 3):
        raise UnsupportedTiffError("complex samples are not read", uri=uri, tag="SampleFormat", value=sample_format)
    planar = await ifd.scalar(PLANAR_CONFIG, 1)
    if planar not in (1, 2):
        raise ifd.error(PLANAR_CONFIG, f"is {planar}, expected 1 or 2")

    tiled = ifd.has(TILE_WIDTH) or ifd.has(TILE_LENGTH)
    if tiled:
        tile_width = await ifd.scalar(TILE_WIDTH)
        tile_height = await ifd.scalar(TILE_LENGTH)
        if tile_width == 0 or tile_height == 0:
            raise TiffFormatError(f"tile size is {tile_width}x{tile_height}", uri=uri)
        offsets_tag, counts_tag = TILE_OFFSETS, TILE_BYTE_COUNTS
    else:
        rows = await ifd.scalar(ROWS_PER_STRIP, height)
        if rows == 0:
            raise ifd.error(ROWS_PER_STRIP, "is 0")
        tile_width, tile_height = width, min(rows, height)
        offsets_tag, counts_tag = STRIP_OFFSETS, STRIP_BYTE_COUNTS
    expected = -(-width // tile_width) * -(-height // tile_height) * (samples if planar == 2 else 1)
    for tag in (offsets_tag, counts_tag):
        if not ifd.has(tag):
            raise ifd.error(tag, "is required but missing")
        if ifd.count(tag) < expected:
            raise ifd.error(tag, f"has {ifd.count(tag)} values, the image needs {expected}")

    return ImageInfo(
        width=width, height=height, tile_width=tile_width, tile_height=tile_height, tiled=tiled,
        samples_per_pixel=samples, bits_per_sample=bits, sample_format=sample_format, planar_config=planar,
        compression=await ifd.scalar(COMPRESSION, 1), predictor=await ifd.scalar(PREDICTOR, 1),
        photometric=await ifd.scalar(PHOTOMETRIC, 1), subfile_type=await ifd.scalar(NEW_SUBFILE_TYPE, 0),
        tile_offsets=(await ifd.ints(offsets_tag))[:expected],
        tile_byte_counts=(await ifd.ints(counts_tag))[:expected],
        jpeg_tables=await ifd.raw(JPEG_TABLES) if ifd.has(JPEG_TABLES) else None,
        extra_samples=tuple((await ifd.ints(EXTRA_SAMPLES)).tolist()[:samples]) if ifd.has(EXTRA_SAMPLES) else (),
    )


def _check_tiles_in_file(image: ImageInfo, size: int, uri: str) -> None:
    present = image.tile_byte_counts > 0
    if (image.tile_offsets[present] > size - image.tile_byte_counts[present]).any():
        raise TiffFormatError(f"tile data lies past the end of the file ({size} bytes)", uri=uri)


async def _read_geokey_directory(ifd: _IFD) -> GeoKeys | None:
    """The GeoKeyDirectory with its DOUBLE and ASCII values; None when there is none."""
    if not ifd.has(GEO_KEY_DIRECTORY):
        return None
    directory = await ifd.ints(GEO_KEY_DIRECTORY)
    doubles = await ifd.numbers(GEO_DOUBLE_PARAMS) if ifd.has(GEO_DOUBLE_PARAMS) else np.empty(0)
    text = await ifd.raw(GEO_ASCII_PARAMS) if ifd.has(GEO_ASCII_PARAMS) else None
    return parse_geokeys(directory.tolist(), doubles.astype(np.float64).tolist(), text, uri=ifd.reader.uri)


async def _read_georeferencing(
    ifd: _IFD, fallback_crs: str | None = None
) -> tuple[str | None, CrsSource | None, tuple[float, float, float, float, float, float] | None, bool]:
    """CRS, its source, transform (rasterio order, PixelIsArea) and whether the raster is PixelIsPoint."""
    uri = ifd.reader.uri
    keys: GeoKeys | None = None
    resolved: tuple[str, CrsSource] | None
    try:
        keys = await _read_geokey_directory(ifd)
        resolved = resolve_crs(keys, uri=uri) if keys is not None else None
    except UnresolvedCRSError as exc:
        if fallback_crs is None:
            raise
        log.debug("%s: %s; using the fallback CRS", uri, exc)
        resolved = (resolve_catalog_crs(fallback_crs, uri=uri), "catalog")
    crs, crs_source = resolved if resolved is not None else (None, None)
    pixel_is_point = keys is not None and keys.short(GT_RASTER_TYPE) == 2

    transform = None
    scale = await ifd.numbers(MODEL_PIXEL_SCALE) if ifd.has(MODEL_PIXEL_SCALE) else np.empty(0)
    tiepoint = await ifd.numbers(MODEL_TIEPOINT) if ifd.has(MODEL_TIEPOINT) else np.empty(0)
    matrix = await ifd.numbers(MODEL_TRANSFORMATION) if ifd.has(MODEL_TRANSFORMATION) else np.empty(0)
    # The same precedence as GDAL: pixel scale (with a tiepoint), else a 4x4 matrix.
    if scale.size >= 2 and scale[0] != 0 and scale[1] != 0:
        if tiepoint.size >= 6:
            a, e = float(scale[0]), -abs(float(scale[1]))
            i, j, _k, x, y = (float(v) for v in tiepoint[:5])
            transform = (a, 0.0, x - i * a, 0.0, e, y - j * e)
    elif matrix.size == 16:
        m = [float(v) for v in matrix]
        transform = (m[0], m[1], m[3], m[4], m[5], m[7])
    if transform is not None:
        if not all(math.isfinite(v) for v in transform):
            raise TiffFormatError(f"the geotransform is not finite: {transform}", uri=ifd.reader.uri)
        if pixel_is_point:
            a, b, c, d, e, f = transform
            transform = (a, b, c - (a * 0.5 + b * 0.5), d, e, f - (d * 0.5 + e * 0.5))
    return crs, crs_source, transform, pixel_is_point


def _nodata_in_range(nodata: float | None, image: ImageInfo) -> tuple[float | None, tuple[str, ...]]:
    """``nodata`` if a pixel of ``image`` can hold it; else None and a warning (GDAL ignores such a value)."""
    if nodata is None:
        return None, ()
    dtype = image.dtype
    if dtype.kind == "f" and not math.isfinite(nodata):
        return nodata, ()
    info = np.iinfo(dtype) if dtype.kind in "ui" else np.finfo(dtype)
    if float(info.min) <= nodata <= float(info.max):  # False for NaN on integer pixels
        return nodata, ()
    return None, (f"GDAL_NODATA {nodata:g} is outside the range of {dtype.name} pixels; ignored, as GDAL does",)


async def _read_nodata(ifd: _IFD) -> float | None:
    text = await ifd.text(GDAL_NODATA)
    if text is None or not text.strip():
        return None
    try:
        return float(text.strip())
    except ValueError as exc:
        raise ifd.error(GDAL_NODATA, f"is not a number: {text!r}") from exc


async def fetch_headers(
    uris: Sequence[str], stores: Stores, *, on_done: Callable[[str], None] | None = None
) -> dict[str, tuple[TiffHeader, ObjectInfo] | RasteretError]:
    """Parse the header of each URI concurrently; map each URI to (header, object info) or its error.

    The object info (ETag, size, last-modified time) is what the header's first ranged
    answer says of its object: no HEAD, except for a store whose answers say nothing
    (then one per object). An object whose answers disagree (replaced while its header
    was read) gives a retryable :class:`~rasteret_core.errors.FetchError`.

    Errors are returned, not raised, so one bad file does not sink a batch; the
    caller decides what to record.
    """
    seen: dict[str, ObjectInfo] = {}

    def note(uri: str, info: ObjectInfo) -> None:
        first = seen.setdefault(uri, info)
        if not unchanged(ObjectFacts(first.etag, first.size, first.last_modified), info):
            raise FetchError("the object changed while its header was read; run again", uri=uri, retryable=True)

    view = stores.child()
    view.expect(note)

    async def one(uri: str) -> tuple[str, tuple[TiffHeader, ObjectInfo] | RasteretError]:
        try:
            header = await parse_header(uri, view, header_read=stores.settings.header_read)
            result: tuple[TiffHeader, ObjectInfo] | RasteretError = (header, seen[uri])
        except RasteretError as exc:
            result = exc
        if on_done is not None:
            on_done(uri)
        return uri, result

    try:
        return dict(await asyncio.gather(*(one(u) for u in dict.fromkeys(uris))))
    finally:
        stores.stats.include(view.stats)


def read_headers(
    uris: Sequence[str], settings: Settings, *, on_done: Callable[[str], None] | None = None
) -> tuple[dict[str, tuple[TiffHeader, ObjectInfo] | RasteretError], IOStats]:
    """:func:`fetch_headers` from sync code on the shared runtime; also return the I/O it took."""

    async def go(stores: Stores) -> tuple[dict[str, tuple[TiffHeader, ObjectInfo] | RasteretError], IOStats]:
        return await fetch_headers(uris, stores, on_done=on_done), stores.stats

    return with_stores(settings, go)
