"""Frozen models of a parsed (Geo)TIFF header.

The parser (`tiff.parser.parse_header`) produces them; the planner consumes them; the
collection stores them (as an Arrow struct per asset, see `table.schema`).

Conventions: affine transforms are in rasterio/affine order ``(a, b, c, d, e, f)``
with ``x = a*col + b*row + c`` and ``y = d*col + e*row + f``, referring to the
outer corner of pixel (0, 0) (PixelIsArea; PixelIsPoint rasters are shifted by
half a pixel on parse, as GDAL does). Tile tables are in file order: for planar
configuration 2 the tiles of sample 0 come first, then sample 1, and so on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["ByteOrder", "ImageInfo", "TiffHeader", "gdal_metadata_items"]

ByteOrder = Literal["<", ">"]
"""A TIFF file's byte order, as numpy spells it: ``"<"`` little endian (II), ``">"`` big endian (MM)."""


def gdal_metadata_items(xml: str | None) -> dict[tuple[int | None, str], str]:
    """The items of a GDAL_METADATA tag: ``(sample or None, role or name) -> text``.

    Band items carry ``sample`` (0-based) and usually a ``role`` (``scale``, ``offset``,
    ``description``, ``unittype``); dataset items have neither. Unparsable XML gives ``{}``.
    """
    if not xml:
        return {}
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)  # noqa: S314 - expat >= 2.4.1 refuses entity expansion; no external entities
    except ET.ParseError:
        return {}
    out: dict[tuple[int | None, str], str] = {}
    for item in root.iter("Item"):
        sample = item.get("sample")
        key = item.get("role") or item.get("name") or ""
        out[(int(sample) if sample is not None and sample.isdigit() else None, key)] = item.text or ""
    return out


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ImageInfo:
    """One image (IFD) of a TIFF: the full resolution, an overview, or a mask.

    Striped images are described as tiles one strip high and the image wide
    (``tiled=False``), so the planner treats both the same way.
    """

    width: int
    height: int
    tile_width: int
    tile_height: int
    tiled: bool
    samples_per_pixel: int
    bits_per_sample: int
    sample_format: int  # 1 unsigned int, 2 signed int, 3 IEEE float
    planar_config: int  # 1 chunky (pixel-interleaved), 2 planar (band-separate)
    compression: int
    predictor: int
    photometric: int
    subfile_type: int  # NewSubfileType: bit 0 reduced resolution, bit 2 mask
    tile_offsets: np.ndarray  # int64, one per tile (per strip)
    tile_byte_counts: np.ndarray  # int64
    jpeg_tables: bytes | None = None
    extra_samples: tuple[int, ...] = ()  # ExtraSamples: 0 unspecified, 1 associated alpha, 2 unassociated alpha

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if self.tile_width <= 0 or self.tile_height <= 0:
            raise ValueError(f"tile size must be positive, got {self.tile_width}x{self.tile_height}")
        if len(self.tile_offsets) != len(self.tile_byte_counts):
            raise ValueError("tile offsets and byte counts differ in length")

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of one sample (native byte order); 1-bit samples read as uint8 0/1, as GDAL does."""
        if self.bits_per_sample == 1:
            return np.dtype("u1")
        kind = {1: "u", 2: "i", 3: "f"}[self.sample_format]
        return np.dtype(f"{kind}{self.bits_per_sample // 8}")

    @property
    def tiles_across(self) -> int:
        """Tiles (or strips: one) in a row of the tile grid."""
        return math.ceil(self.width / self.tile_width)

    @property
    def tiles_down(self) -> int:
        """Tiles (or strips) in a column of the tile grid."""
        return math.ceil(self.height / self.tile_height)

    @property
    def is_overview(self) -> bool:
        """A reduced-resolution image (NewSubfileType bit 0) that is not a mask."""
        return bool(self.subfile_type & 1) and not self.is_mask

    @property
    def is_mask(self) -> bool:
        """A transparency mask (NewSubfileType bit 2)."""
        return bool(self.subfile_type & 4)

    @property
    def alpha_sample(self) -> int | None:
        """The sample GDAL reads as the alpha band (ExtraSamples 1 or 2), if any."""
        base = self.samples_per_pixel - len(self.extra_samples)
        for i, kind in enumerate(self.extra_samples):
            if kind in (1, 2):
                return base + i
        return None

    def tile_index(self, row: int, col: int, sample: int = 0) -> int:
        """Index into the tile tables of tile (row, col) holding ``sample``."""
        index = row * self.tiles_across + col
        if self.planar_config == 2:
            index += sample * self.tiles_across * self.tiles_down
        return index


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TiffHeader:
    """A parsed GeoTIFF header: every image, georeferencing and nodata."""

    uri: str
    byte_order: ByteOrder  # "<" little endian (II), ">" big endian (MM)
    bigtiff: bool
    images: tuple[ImageInfo, ...]  # images[0] is the full resolution; then file order
    crs: str | None  # "EPSG:<code>", else WKT; None when the file has no GeoKeys
    transform: tuple[float, float, float, float, float, float] | None
    nodata: float | None
    pixel_is_point: bool = False
    gdal_metadata: str | None = None
    crs_source: str | None = None  # where ``crs`` came from: "epsg", "geokeys", "citation" (ESRI PE) or "catalog"
    warnings: tuple[str, ...] = ()  # what the file says that GDAL ignores (an impossible nodata, say)
    size: int | None = None  # bytes in the file, when the store told us
    header_bytes_read: int = field(default=0)
    header_requests: int = field(default=0)

    @property
    def image(self) -> ImageInfo:
        """The full-resolution image."""
        return self.images[0]

    def scale_offset(self, sample: int = 0) -> tuple[float, float]:
        """The ``(scale, offset)`` GDAL_METADATA gives a band (0-based ``sample``): value = raw * scale + offset.

        ``(1.0, 0.0)`` when the file does not say, as rasterio's ``src.scales``/``src.offsets``.
        """
        items = gdal_metadata_items(self.gdal_metadata)
        return (float(items.get((sample, "scale"), 1.0)), float(items.get((sample, "offset"), 0.0)))

    @property
    def overviews(self) -> tuple[ImageInfo, ...]:
        """Reduced-resolution images, finest first (masks excluded)."""
        ovs = [im for im in self.images[1:] if im.is_overview]
        return tuple(sorted(ovs, key=lambda im: -im.width))
