"""Write the real-world matrix: small GeoTIFFs in the shapes real archives take (issue 8).

Where ``tests/oracle_matrix.py`` covers encodings pairwise, this set covers what
real files add on top of them: validity carried by internal mask IFDs (with mask
overviews), alpha samples and nodata values GDAL ignores; YCbCr JPEG as GDAL's
COG driver and ``gdal_translate`` write it; CRSs that are not an EPSG code
(PROJ strings written as user-defined GeoKeys, an ESRI PE citation, a
``+towgs84`` datum, US survey feet); rotated and missing georeferencing; and
odd tags (PixelIsPoint on a custom CRS, 1-bit samples, GDAL_METADATA
scale/offset). Each :class:`Case` says what it exercises.

Every file is written by GDAL (through rasterio), the oracle the tests compare
Rasteret's reads with; the only exception is a nodata text rasterio refuses to
write (out of the dtype's range, NaN on integers), put into GDAL's own
GDAL_NODATA tag afterwards. Content is a smooth field plus noise; the invalid
pixels (nodata, mask 0, alpha 0) are shaped like real ones: a collar around a
rotated scene footprint, and cloud-like holes inside it.

Run as a script to write the files::

    python tests/realworld_matrix.py OUTDIR
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CASES", "Case", "Place", "content", "main", "validity", "write_case", "write_matrix"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """Where a raster lies: its CRS, the lon/lat of its centre, pixel size and rotation.

    The upper-left corner is snapped to a multiple of ``res`` in the CRS (before
    rotation), so pixel edges and centres are exact numbers there.
    """

    crs: str  # anything rasterio and pyproj accept: EPSG code, PROJ string, ESRI code
    lon: float
    lat: float
    res: float  # pixel size in the CRS's units (metres or US survey feet)
    rotation: float = 0.0  # degrees, clockwise about the upper-left corner

    def transform(self, width: int, height: int) -> Any:
        from pyproj import CRS, Transformer
        from rasterio.transform import Affine

        to_crs = Transformer.from_crs(CRS.from_user_input("OGC:CRS84"), CRS.from_user_input(self.crs),
                                      always_xy=True)
        x, y = to_crs.transform(self.lon, self.lat)
        x0 = round((x - width / 2 * self.res) / self.res) * self.res
        y0 = round((y + height / 2 * self.res) / self.res) * self.res
        return Affine.translation(x0, y0) * Affine.rotation(self.rotation) * Affine.scale(self.res, -self.res)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One file: how GDAL writes it and what it exercises.

    ``refused`` says why the build must refuse the file (GDAL cannot place it);
    every other case must read as GDAL reads it. ``lossy`` files are compared
    exactly too (Rasteret's JPEG decode is to match GDAL's libjpeg 9).
    """

    name: str
    exercises: str
    dtype: str = "uint16"
    bands: int = 1  # given to GDAL (the COG driver turns an alpha band into a mask: the file has one less)
    size: tuple[int, int] = (260, 210)  # width, height
    place: Place | None = None  # None: no geotransform (GCPs only, or nothing)
    gcps: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # GTiff creation options
    cog: Mapping[str, Any] | None = None  # COG driver options: copied from a GTiff source
    colorinterp: tuple[str, ...] | None = None
    alpha: bool = False  # the last band is alpha (ExtraSamples, colorinterp alpha)
    mask: bool = False  # an internal per-dataset mask (GDAL_TIFF_INTERNAL_MASK=YES)
    nodata: float | None = None  # written by rasterio
    nodata_text: str | None = None  # written into GDAL_NODATA afterwards (rasterio refuses these)
    overviews: tuple[int, ...] = ()  # internal overviews built after writing (GTiff cases)
    overview_config: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    scale_offset: tuple[float, float] | None = None
    nbits: int | None = None
    lossy: bool = False
    refused: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.tif"

    @property
    def has_overviews(self) -> bool:
        return bool(self.overviews) or (self.cog is not None and self.cog.get("OVERVIEWS") != "NONE")


# ------------------------------------------------------------------ places

UTM32 = Place(crs="EPSG:32632", lon=11.4, lat=45.6, res=10.0)
UTM33 = Place(crs="EPSG:32633", lon=14.6, lat=46.1, res=20.0)
NAD83_UTM10 = Place(crs="EPSG:26910", lon=-122.05, lat=38.2, res=5.0)  # NAIP-like
TMERC = Place(crs="+proj=tmerc +lat_0=0 +lon_0=15.75 +k=0.99985 +x_0=420000 +y_0=-4500000 +ellps=GRS80 "
                  "+units=m +no_defs", lon=15.9, lat=46.2, res=15.0)
LCC = Place(crs="+proj=lcc +lat_0=47 +lon_0=5 +lat_1=45.5 +lat_2=48.5 +x_0=600000 +y_0=200000 +ellps=GRS80 "
                "+units=m +no_defs", lon=5.2, lat=47.1, res=15.0)
AEA = Place(crs="+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +x_0=0 +y_0=0 +datum=NAD83 +units=m "
                "+no_defs", lon=-100.3, lat=40.2, res=30.0)
OMERC = Place(crs="+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.025796466667 +gamma=323.130102361111 "
                  "+k=0.99984 +x_0=804671 +y_0=0 +ellps=GRS80 +units=m +no_defs", lon=101.7, lat=3.1, res=15.0)
POLAR = Place(crs="+proj=stere +lat_0=90 +lat_ts=71 +lon_0=-39 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m "
                  "+no_defs", lon=-40.5, lat=72.5, res=20.0)
STATE_PLANE_FT = Place(crs="+proj=lcc +lat_0=36.5 +lon_0=-120.5 +lat_1=38.4333333333333 +lat_2=37.0666666666667 "
                           "+x_0=2000000.0001016 +y_0=500000.0001016 +datum=NAD83 +units=us-ft +no_defs",
                       lon=-122.27, lat=37.81, res=50.0)  # California zone III, US survey feet
ESRI_ALBERS = Place(crs="ESRI:102003", lon=-95.2, lat=38.1, res=30.0)  # USA Contiguous Albers Equal Area Conic
TOWGS84 = Place(crs="+proj=tmerc +lat_0=0 +lon_0=9 +k=1 +x_0=3500000 +y_0=0 +ellps=bessel "
                    "+towgs84=598.1,73.7,418.2,0.202,0.045,-2.455,6.7 +units=m +no_defs",
                lon=9.25, lat=50.1, res=10.0)  # DHDN / Gauss-Kruger zone 3 with its Helmert shift
ROTATED = Place(crs="EPSG:32632", lon=11.8, lat=45.9, res=12.0, rotation=15.0)

_DEFLATE_TILED = {"compress": "deflate", "tiled": True, "blockxsize": 128, "blockysize": 128}
_RGB = ("red", "green", "blue")


def _jpeg_cog(quality: int = 80, **more: Any) -> dict[str, Any]:
    return {"COMPRESS": "JPEG", "QUALITY": quality, "BLOCKSIZE": 256, **more}


def _ycbcr(quality: int, tile: int, tables: int) -> dict[str, Any]:
    return {"compress": "jpeg", "photometric": "YCBCR", "jpeg_quality": quality, "jpegtablesmode": tables,
            "tiled": True, "blockxsize": tile, "blockysize": tile}


def _jpeg_overview_config(quality: int, tables: int) -> dict[str, str]:
    # Overviews built in update mode take their JPEG settings from configuration options
    return {"COMPRESS_OVERVIEW": "JPEG", "PHOTOMETRIC_OVERVIEW": "YCBCR", "JPEG_QUALITY_OVERVIEW": str(quality),
            "JPEGTABLESMODE_OVERVIEW": str(tables), "INTERLEAVE_OVERVIEW": "PIXEL"}


CASES: tuple[Case, ...] = (
    # ---- internal masks
    Case(name="mask_jpeg_ycbcr_cog", dtype="uint8", bands=3, size=(600, 520), place=NAD83_UTM10, mask=True,
         colorinterp=_RGB, cog=_jpeg_cog(OVERVIEWS="NONE"), lossy=True,
         exercises="COG driver, JPEG YCbCr RGB with an internal mask IFD (no overviews)"),
    Case(name="mask_jpeg_ycbcr_cog_ovr", dtype="uint8", bands=3, size=(600, 520), place=NAD83_UTM10, mask=True,
         colorinterp=_RGB, cog=_jpeg_cog(OVERVIEW_COUNT=2, OVERVIEW_RESAMPLING="AVERAGE"), lossy=True,
         exercises="COG driver, JPEG YCbCr RGB with an internal mask, overviews and mask overviews"),
    Case(name="mask_deflate_uint16", place=UTM33, mask=True, options=_DEFLATE_TILED,
         exercises="DEFLATE uint16 single band, internal mask IFD, data kept under the mask"),
    Case(name="mask_deflate_uint16_ovr", place=UTM33, mask=True, options=_DEFLATE_TILED, overviews=(2, 4),
         exercises="DEFLATE uint16 single band, internal mask with internal overviews and mask overviews"),
    Case(name="mask_and_nodata_uint16", place=UTM33, mask=True, nodata=0, options=_DEFLATE_TILED,
         exercises="nodata 0 (the collar) and an internal mask (the holes, data kept under them): GDAL's "
                   "GTiff mask band is the internal mask, nodata is not applied"),
    Case(name="cog_from_rgba_jpeg", dtype="uint8", bands=4, size=(600, 520), place=NAD83_UTM10, alpha=True,
         colorinterp=(*_RGB, "alpha"),
         cog=_jpeg_cog(75, OVERVIEW_COUNT=2, OVERVIEW_RESAMPLING="AVERAGE"), lossy=True,
         exercises="COG driver from an RGBA source: JPEG YCbCr RGB, alpha turned into a mask, overviews"),
    # ---- alpha samples (ExtraSamples = unassociated alpha)
    Case(name="rgba_uint8_strips_pixel", dtype="uint8", bands=4, place=UTM32, alpha=True,
         colorinterp=(*_RGB, "alpha"), options={"compress": "deflate", "photometric": "RGB", "blockysize": 16},
         exercises="RGBA uint8, strips of 16 rows, pixel-interleaved: alpha 0 masks, partial alpha is valid"),
    Case(name="rgba_uint8_tiles_band", dtype="uint8", bands=4, place=UTM32, alpha=True,
         colorinterp=(*_RGB, "alpha"), options={"compress": "lzw", "photometric": "RGB", "interleave": "band",
                                                "tiled": True, "blockxsize": 64, "blockysize": 64},
         exercises="RGBA uint8, 64x64 tiles, band-interleaved (alpha in its own plane)"),
    Case(name="rgba_uint16_tiles_pixel", dtype="uint16", bands=4, size=(220, 180), place=UTM32, alpha=True,
         colorinterp=(*_RGB, "alpha"), options={"compress": "deflate", "predictor": 2, "photometric": "RGB",
                                                "tiled": True, "blockxsize": 128, "blockysize": 128},
         exercises="RGBA uint16 with predictor 2, tiles, pixel-interleaved: alpha 1..256 is still valid "
                   "(GDAL rescales 16-bit alpha)"),
    Case(name="rgba_uint16_strips_band", dtype="uint16", bands=4, size=(220, 180), place=UTM32, alpha=True,
         colorinterp=(*_RGB, "alpha"), options={"compress": "deflate", "photometric": "RGB", "interleave": "band",
                                                "blockysize": 32},
         exercises="RGBA uint16, strips of 32 rows, band-interleaved"),
    Case(name="gray_alpha_uint8", dtype="uint8", bands=2, place=UTM32, alpha=True, colorinterp=("gray", "alpha"),
         options={"compress": "deflate", "photometric": "MINISBLACK", "tiled": True, "blockxsize": 128,
                  "blockysize": 128},
         exercises="gray + alpha (2 samples, ExtraSamples alpha), tiles"),
    # ---- YCbCr JPEG as gdal_translate writes it, with overviews
    Case(name="jpeg_q50_t128_tables0_ovr", dtype="uint8", bands=3, size=(420, 340), place=NAD83_UTM10,
         colorinterp=_RGB, options=_ycbcr(50, 128, 0), overviews=(2, 4),
         overview_config=_jpeg_overview_config(50, 0), lossy=True,
         exercises="YCbCr JPEG quality 50, 128 tiles, JPEGTABLESMODE=0 (tables in every tile), overviews"),
    Case(name="jpeg_q75_t256_tables1_ovr", dtype="uint8", bands=3, size=(600, 520), place=NAD83_UTM10,
         colorinterp=_RGB, options=_ycbcr(75, 256, 1), overviews=(2, 4),
         overview_config=_jpeg_overview_config(75, 1), lossy=True,
         exercises="YCbCr JPEG quality 75, 256 tiles, JPEGTABLESMODE=1 (quantisation tables shared), overviews"),
    Case(name="jpeg_q90_t512_tables3_ovr", dtype="uint8", bands=3, size=(700, 560), place=NAD83_UTM10,
         colorinterp=_RGB, options=_ycbcr(90, 512, 3), overviews=(2, 4),
         overview_config=_jpeg_overview_config(90, 3), lossy=True,
         exercises="YCbCr JPEG quality 90, 512 tiles, JPEGTABLESMODE=3 (quantisation and Huffman shared), "
                   "overviews"),
    # ---- CRSs that are not an EPSG code
    Case(name="crs_tmerc", place=TMERC, nodata=0, options=_DEFLATE_TILED,
         exercises="user-defined transverse Mercator (PROJ string -> user-defined GeoKeys)"),
    Case(name="crs_lcc", place=LCC, nodata=0, options=_DEFLATE_TILED,
         exercises="user-defined Lambert conformal conic, 2 standard parallels"),
    Case(name="crs_aea", place=AEA, nodata=0, options=_DEFLATE_TILED,
         exercises="user-defined Albers equal area on NAD83"),
    Case(name="crs_omerc", place=OMERC, nodata=0, options=_DEFLATE_TILED,
         exercises="user-defined Hotine oblique Mercator with a rectified grid angle"),
    Case(name="crs_polar_stereo", place=POLAR, nodata=0, options=_DEFLATE_TILED,
         exercises="user-defined polar stereographic (north, latitude of true scale 71)"),
    Case(name="crs_stateplane_usft", place=STATE_PLANE_FT, nodata=0, options=_DEFLATE_TILED,
         exercises="a state plane as a PROJ string in US survey feet (linear units GeoKey)"),
    Case(name="crs_esri_pe", place=ESRI_ALBERS, nodata=0, options={**_DEFLATE_TILED, "geotiff_keys_flavor": "ESRI_PE"},
         exercises="ESRI WKT written as an ESRI PE citation (GEOTIFF_KEYS_FLAVOR=ESRI_PE)"),
    Case(name="crs_towgs84", place=TOWGS84, nodata=0, options=_DEFLATE_TILED,
         exercises="Bessel datum with +towgs84 (GeogTOWGS84GeoKey): the datum shift moves AOIs ~100 m"),
    # ---- nodata GDAL ignores
    Case(name="nodata_uint8_minus10000", dtype="uint8", place=UTM32, nodata_text="-10000",
         options={"compress": "deflate", "tiled": True, "blockxsize": 128, "blockysize": 128},
         exercises="nodata -10000 on uint8: out of range, GDAL ignores it; the collar holds 240 (-10000 cast)"),
    Case(name="nodata_uint16_70000", place=UTM32, nodata_text="70000", options=_DEFLATE_TILED,
         exercises="nodata 70000 on uint16: out of range, ignored; the collar holds 4464 (70000 cast)"),
    Case(name="nodata_uint16_minus1", place=UTM32, nodata_text="-1", options={"compress": "lzw", "blockysize": 32},
         exercises="nodata -1 on uint16 (strips): out of range, ignored; the collar holds 65535"),
    Case(name="nodata_int16_nan", dtype="int16", place=UTM32, nodata_text="nan", options=_DEFLATE_TILED,
         exercises="nodata NaN on int16 (as GDAL's SetNoDataValue writes it): ignored; the collar holds -32768"),
    # ---- georeferencing
    Case(name="rotated_geotransform", place=ROTATED, nodata=0, options=_DEFLATE_TILED,
         exercises="rotated geotransform (ModelTransformationTag), nodata collar"),
    Case(name="gcps_only", place=None, gcps=True, options=_DEFLATE_TILED,
         refused="GCPs only: GDAL has no geotransform for it",
         exercises="GCP georeferencing only (tiepoints, no pixel scale): refused at build"),
    Case(name="no_georeferencing", place=None, options=_DEFLATE_TILED,
         refused="no georeferencing at all",
         exercises="no GeoKeys, no tiepoints, no transform: refused at build"),
    # ---- odd tags
    Case(name="point_custom_crs", place=LCC, nodata=0, tags={"AREA_OR_POINT": "Point"}, options=_DEFLATE_TILED,
         exercises="PixelIsPoint raster type on a user-defined CRS (GDAL shifts the transform by half a pixel)"),
    Case(name="nbits1", dtype="uint8", place=UTM32, nbits=1, options={"compress": "deflate", "blockysize": 64},
         exercises="1-bit samples (NBITS=1), strips: GDAL reads 0/1 bytes"),
    Case(name="scale_offset_int16", dtype="int16", place=UTM33, nodata=-32768, scale_offset=(0.01, -50.0),
         options={"compress": "lzw", "predictor": 2, "tiled": True, "blockxsize": 128, "blockysize": 128},
         exercises="GDAL_METADATA scale/offset (raw values read, as rasterio reads them), nodata -32768"),
)

# ------------------------------------------------------------------ content

_RANGES = {"uint8": (5, 250), "uint16": (300, 60000), "int16": (-3000, 12000)}
_HOLES = ((0.30, 0.36, 0.09, 0.07), (0.68, 0.62, 0.07, 0.10), (0.52, 0.80, 0.04, 0.03))  # cx, cy, rx, ry


def validity(width: int, height: int) -> np.ndarray:
    """Which pixels hold data: a footprint rotated 11 degrees with a collar around it, less three holes.

    Float ``[row, col]``: 1 inside, 0 outside, and in between across a two-pixel
    band at the footprint's edge (antialiased, as alpha bands of warped scenes are).
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    u, v = x / width - 0.5, y / height - 0.5
    angle = math.radians(11)
    along, across = u * math.cos(angle) + v * math.sin(angle), -u * math.sin(angle) + v * math.cos(angle)
    # distance (in pixels) inside the footprint's edge: positive inside
    inside = np.minimum((0.43 - np.abs(along)) * width, (0.45 - np.abs(across)) * height)
    value = np.clip(inside / 2 + 0.5, 0.0, 1.0)
    for cx, cy, rx, ry in _HOLES:
        value[((u + 0.5 - cx) / rx) ** 2 + ((v + 0.5 - cy) / ry) ** 2 < 1] = 0.0
    return value


def content(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of ``case`` ``[band, row, col]`` in its dtype, and its validity ``[row, col]`` (0..1)."""
    width, height = case.size
    rng = np.random.default_rng(sum((i + 1) * ord(ch) for i, ch in enumerate(case.name)))
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    valid = validity(width, height)
    data_bands = case.bands - 1 if case.alpha else case.bands
    unit = []
    for b in range(data_bands):
        waves = np.sin(x / (23 + 5 * b) + b) * np.cos(y / (31 + 4 * b) - b)
        smooth = 0.5 + 0.25 * waves + 0.2 * (x / width - y / height)
        unit.append(np.clip(smooth + rng.normal(0.0, 0.01 if case.lossy else 0.03, (height, width)), 0, 1))
    field_ = np.stack(unit)
    if case.nbits == 1:
        return (field_ > 0.5).astype(np.uint8), valid
    lo, hi = _RANGES[case.dtype]
    values = np.round(lo + field_ * (hi - lo)).astype(case.dtype)
    if case.alpha:
        top = np.iinfo(case.dtype).max
        alpha = np.round(valid * top).astype(case.dtype)
        if case.dtype == "uint16":  # alpha GDAL rescales to 8 bits: 1..256 must still be valid
            alpha[(valid > 0) & (valid < 0.5)] = rng.integers(1, 257, int(((valid > 0) & (valid < 0.5)).sum()))
        if case.cog is not None:  # the COG driver keeps alpha > 0 as valid in its mask: keep it binary here
            alpha = np.where(valid > 0, top, 0).astype(case.dtype)
        values = np.concatenate([values, alpha[None]])
    elif case.mask:
        if case.nodata is not None:  # the collar is nodata, the holes are masked with data under them
            values[:, _collar(valid)] = case.nodata
        elif case.lossy:  # imagery under a mask is usually black
            values[:, valid < 0.5] = 0
    elif case.nodata is not None:
        values[:, valid < 0.5] = case.nodata
    elif case.nodata_text is not None:  # the collar holds the nodata wrapped into the dtype, as C casts it
        values[:, valid < 0.5] = _wrapped(case.nodata_text, case.dtype)
    return values, valid


def _wrapped(text: str, dtype: str) -> int:
    """An out-of-range nodata cast into ``dtype`` (-10000 -> 240 in uint8; NaN -> the minimum)."""
    info = np.iinfo(dtype)
    value = float(text)
    if math.isnan(value):
        return int(info.min)
    return int((int(value) - info.min) % (int(info.max) - int(info.min) + 1) + info.min)


def _collar(valid: np.ndarray) -> np.ndarray:
    """The invalid pixels connected to the raster's border (not the holes)."""
    height, width = valid.shape
    y, x = np.mgrid[0:height, 0:width] + 0.5
    no_holes = validity(width, height)
    for cx, cy, rx, ry in _HOLES:  # fill the holes back in
        no_holes[((x / width - cx) / rx) ** 2 + ((y / height - cy) / ry) ** 2 < 1] = 1.0
    return no_holes < 0.5


def mask_of(case: Case) -> np.ndarray:
    """The internal mask GDAL is given (255 valid, 0 invalid): the holes only when the collar is nodata."""
    _, valid = content(case)
    if case.nodata is not None:
        width, height = case.size
        y, x = np.mgrid[0:height, 0:width] + 0.5
        holes = np.zeros((height, width), dtype=bool)
        for cx, cy, rx, ry in _HOLES:
            holes |= ((x / width - cx) / rx) ** 2 + ((y / height - cy) / ry) ** 2 < 1
        return np.where(holes, 0, 255).astype(np.uint8)
    return np.where(valid >= 0.5, 255, 0).astype(np.uint8)


# ------------------------------------------------------------------ writing


def _gcps(width: int, height: int) -> list[Any]:
    from rasterio.control import GroundControlPoint

    corners = [(0, 0, 11.30, 45.70), (width, 0, 11.34, 45.70), (0, height, 11.30, 45.67),
               (width, height, 11.34, 45.67), (width / 2, height / 2, 11.32, 45.685)]
    return [GroundControlPoint(row=r, col=c, x=lon, y=lat, z=0.0) for c, r, lon, lat in corners]


def _patch_nodata(path: Path, text: str) -> None:
    """Replace the GDAL_NODATA text of every IFD that has one (GDAL's tag 42113)."""
    import tifffile

    with tifffile.TiffFile(path, mode="r+") as tif:
        for page in tif.pages:
            tag = page.tags.get(42113)
            if tag is not None:
                tag.overwrite(text)


def write_case(case: Case, outdir: Path) -> Path:
    """Write the file of ``case`` into ``outdir`` with GDAL; return its path."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.errors import NotGeoreferencedWarning

    path = Path(outdir) / case.filename
    data, _ = content(case)
    width, height = case.size
    profile: dict[str, Any] = {"driver": "GTiff", "width": width, "height": height, "count": case.bands,
                               "dtype": case.dtype}
    if case.place is not None:
        profile.update(crs=case.place.crs, transform=case.place.transform(width, height))
    if case.gcps:
        profile.update(gcps=_gcps(width, height), crs="EPSG:4326")
    if case.nodata is not None:
        profile["nodata"] = case.nodata
    if case.nodata_text is not None:
        profile["nodata"] = 1  # a placeholder in the GDAL_NODATA tag, replaced below
    if case.nbits is not None:
        profile["nbits"] = case.nbits
    config = {"GDAL_TIFF_INTERNAL_MASK": "YES", **case.overview_config}

    def fill(dst: Any) -> None:
        if case.colorinterp:  # before writing: GDAL sets ExtraSamples from it
            dst.colorinterp = [ColorInterp[c] for c in case.colorinterp]
        dst.write(data)
        if case.mask:
            dst.write_mask(mask_of(case))
        if case.tags:
            dst.update_tags(**case.tags)
        if case.scale_offset is not None:
            dst.scales = (case.scale_offset[0],) * case.bands
            dst.offsets = (case.scale_offset[1],) * case.bands

    with warnings.catch_warnings(), rasterio.Env(**config):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if case.cog is not None:
            with rasterio.MemoryFile() as mem:
                with mem.open(**profile, tiled=True, photometric="RGB" if case.bands >= 3 else "MINISBLACK") as src:
                    fill(src)
                with mem.open() as src:
                    rasterio.shutil.copy(src, path, driver="COG", **case.cog)
        else:
            with rasterio.open(path, "w", **profile, **case.options) as dst:
                fill(dst)
            if case.overviews:
                with rasterio.open(path, "r+") as dst:
                    dst.build_overviews(list(case.overviews), Resampling.average)
    if case.nodata_text is not None:
        _patch_nodata(path, case.nodata_text)
    return path


def write_matrix(outdir: str | Path, cases: Sequence[Case] | None = None) -> list[Path]:
    """Write every file of the matrix (or of ``cases``) into ``outdir``; return their paths."""
    root = Path(outdir)
    root.mkdir(parents=True, exist_ok=True)
    return [write_case(case, root) for case in (CASES if cases is None else cases)]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python tests/realworld_matrix.py OUTDIR``; lists each file and what it exercises."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python tests/realworld_matrix.py OUTDIR\n")
        return 2
    start = time.perf_counter()
    paths = write_matrix(args[0])
    for case, path in zip(CASES, paths, strict=True):
        sys.stdout.write(f"{path.stat().st_size / 1e3:7.1f} kB  {case.name}: {case.exercises}\n")
    total = sum(p.stat().st_size for p in paths)
    sys.stdout.write(f"wrote {len(paths)} files ({total / 1e6:.1f} MB) to {args[0]} "
                     f"in {time.perf_counter() - start:.1f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
