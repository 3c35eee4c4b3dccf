"""Build a raster's CRS from its GeoTIFF GeoKeys, the way libgeotiff and GDAL do.

:func:`parse_geokeys` reads a whole GeoKeyDirectory (tag 34735): SHORT values held
in the directory, DOUBLE values in GeoDoubleParams (34736), ASCII values in
GeoAsciiParams (34737), with libgeotiff's rules for malformed entries.
:func:`resolve_crs` turns the keys into a CRS:

* an EPSG code (``ProjectedCSTypeGeoKey``, or ``GeographicTypeGeoKey`` for a
  geographic raster) gives ``"EPSG:<code>"``, source ``"epsg"``;
* a user-defined CRS is normalised as libgeotiff's ``GTIFGetDefn`` does
  (geo_normalize.c: which keys stand in for which, false eastings/northings into
  metres, angles into degrees, codes looked up in the EPSG database PROJ ships)
  and built as GDAL's ``GTIFGetOGISDefnAsOSR`` builds it (gt_wkt_srs.cpp: the
  ``Set<Projection>`` calls, TOWGS84 kept only on unknown datums, the axes it gives
  polar and south-oriented projections), returned as WKT2, source ``"geokeys"``;
* a user-defined model type with an ``ESRI PE String = ...`` citation is read as
  ESRI WKT (PROJ reads that dialect), source ``"citation"``.

A CRS that cannot be built raises :class:`~rasteret_core.errors.UnresolvedCRSError`
naming the key and its value (enrichment then falls back to the catalog's CRS, see
:func:`resolve_catalog_crs`). CRSs of other bodies than the Earth (Mars, the Moon)
raise :class:`~rasteret_core.errors.UnsupportedTiffError`: their footprints cannot be
given in OGC:CRS84.

Where this differs from GDAL on purpose: a missing or user-defined model type is
inferred from the keys present, and an ESRI PE string is also read from
GTCitationGeoKey (GDAL gives a LOCAL_CS, a CRS without a datum); a code Rasteret
cannot find (CRS, datum, ellipsoid, prime meridian, unit), keys that name no
ellipsoid at all, and a conic or polar projection without its standard parallel are
errors (GDAL falls back to a LOCAL_CS, to WGS 84, or to 0); GeogAngularUnitSizeGeoKey
and GeogAzimuthUnitsGeoKey are honoured;
ESRI/ERDAS state plane citations and ``LUnits =`` citation units are not read;
vertical keys are ignored (the CRS is horizontal, as are compound ESRI PE strings).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pyproj import CRS
from pyproj.crs import BoundCRS, CoordinateOperation, Datum, Ellipsoid, PrimeMeridian  # type: ignore[attr-defined]
from pyproj.crs.coordinate_operation import ToWGS84Transformation
from pyproj.database import get_units_map
from pyproj.exceptions import CRSError

from rasteret_core.errors import UnresolvedCRSError, UnsupportedTiffError

__all__ = ["CrsSource", "GeoKeys", "parse_geokeys", "resolve_catalog_crs", "resolve_crs"]

log = logging.getLogger(__name__)

CrsSource = Literal["epsg", "geokeys", "citation", "catalog"]
GeoKeyValue = int | tuple[int, ...] | tuple[float, ...] | str

# Where a key's value lives (the key entry's TIFFTagLocation).
_LOCAL = 0
GEO_KEY_DIRECTORY = 34735
GEO_DOUBLE_PARAMS = 34736
GEO_ASCII_PARAMS = 34737

USER_DEFINED = 32767
_MODEL_PROJECTED, _MODEL_GEOGRAPHIC, _MODEL_GEOCENTRIC = 1, 2, 3

# GeoKey ids (GeoTIFF 1.0 names; 1.1 renamed a few, keeping the ids).
GT_MODEL_TYPE = 1024
GT_RASTER_TYPE = 1025
GT_CITATION = 1026
GEOGRAPHIC_TYPE = 2048
GEOG_CITATION = 2049
GEOG_GEODETIC_DATUM = 2050
GEOG_PRIME_MERIDIAN = 2051
GEOG_LINEAR_UNITS = 2052
GEOG_LINEAR_UNIT_SIZE = 2053
GEOG_ANGULAR_UNITS = 2054
GEOG_ANGULAR_UNIT_SIZE = 2055
GEOG_ELLIPSOID = 2056
GEOG_SEMI_MAJOR_AXIS = 2057
GEOG_SEMI_MINOR_AXIS = 2058
GEOG_INV_FLATTENING = 2059
GEOG_AZIMUTH_UNITS = 2060
GEOG_PRIME_MERIDIAN_LONG = 2061
GEOG_TOWGS84 = 2062
PROJECTED_CS_TYPE = 3072
PCS_CITATION = 3073
PROJECTION = 3074
PROJ_COORD_TRANS = 3075
PROJ_LINEAR_UNITS = 3076
PROJ_LINEAR_UNIT_SIZE = 3077
PROJ_STD_PARALLEL1 = 3078
PROJ_STD_PARALLEL2 = 3079
PROJ_NAT_ORIGIN_LONG = 3080
PROJ_NAT_ORIGIN_LAT = 3081
PROJ_FALSE_EASTING = 3082
PROJ_FALSE_NORTHING = 3083
PROJ_FALSE_ORIGIN_LONG = 3084
PROJ_FALSE_ORIGIN_LAT = 3085
PROJ_FALSE_ORIGIN_EASTING = 3086
PROJ_FALSE_ORIGIN_NORTHING = 3087
PROJ_CENTER_LONG = 3088
PROJ_CENTER_LAT = 3089
PROJ_CENTER_EASTING = 3090
PROJ_CENTER_NORTHING = 3091
PROJ_SCALE_AT_NAT_ORIGIN = 3092
PROJ_SCALE_AT_CENTER = 3093
PROJ_AZIMUTH_ANGLE = 3094
PROJ_STRAIGHT_VERT_POLE_LONG = 3095
PROJ_RECTIFIED_GRID_ANGLE = 3096

GEOKEY_NAMES = {
    GT_MODEL_TYPE: "GTModelTypeGeoKey",
    GT_RASTER_TYPE: "GTRasterTypeGeoKey",
    GT_CITATION: "GTCitationGeoKey",
    GEOGRAPHIC_TYPE: "GeographicTypeGeoKey",
    GEOG_CITATION: "GeogCitationGeoKey",
    GEOG_GEODETIC_DATUM: "GeogGeodeticDatumGeoKey",
    GEOG_PRIME_MERIDIAN: "GeogPrimeMeridianGeoKey",
    GEOG_LINEAR_UNITS: "GeogLinearUnitsGeoKey",
    GEOG_LINEAR_UNIT_SIZE: "GeogLinearUnitSizeGeoKey",
    GEOG_ANGULAR_UNITS: "GeogAngularUnitsGeoKey",
    GEOG_ANGULAR_UNIT_SIZE: "GeogAngularUnitSizeGeoKey",
    GEOG_ELLIPSOID: "GeogEllipsoidGeoKey",
    GEOG_SEMI_MAJOR_AXIS: "GeogSemiMajorAxisGeoKey",
    GEOG_SEMI_MINOR_AXIS: "GeogSemiMinorAxisGeoKey",
    GEOG_INV_FLATTENING: "GeogInvFlatteningGeoKey",
    GEOG_AZIMUTH_UNITS: "GeogAzimuthUnitsGeoKey",
    GEOG_PRIME_MERIDIAN_LONG: "GeogPrimeMeridianLongGeoKey",
    GEOG_TOWGS84: "GeogTOWGS84GeoKey",
    PROJECTED_CS_TYPE: "ProjectedCSTypeGeoKey",
    PCS_CITATION: "PCSCitationGeoKey",
    PROJECTION: "ProjectionGeoKey",
    PROJ_COORD_TRANS: "ProjCoordTransGeoKey",
    PROJ_LINEAR_UNITS: "ProjLinearUnitsGeoKey",
    PROJ_LINEAR_UNIT_SIZE: "ProjLinearUnitSizeGeoKey",
    PROJ_STD_PARALLEL1: "ProjStdParallel1GeoKey",
    PROJ_STD_PARALLEL2: "ProjStdParallel2GeoKey",
    PROJ_NAT_ORIGIN_LONG: "ProjNatOriginLongGeoKey",
    PROJ_NAT_ORIGIN_LAT: "ProjNatOriginLatGeoKey",
    PROJ_FALSE_EASTING: "ProjFalseEastingGeoKey",
    PROJ_FALSE_NORTHING: "ProjFalseNorthingGeoKey",
    PROJ_FALSE_ORIGIN_LONG: "ProjFalseOriginLongGeoKey",
    PROJ_FALSE_ORIGIN_LAT: "ProjFalseOriginLatGeoKey",
    PROJ_FALSE_ORIGIN_EASTING: "ProjFalseOriginEastingGeoKey",
    PROJ_FALSE_ORIGIN_NORTHING: "ProjFalseOriginNorthingGeoKey",
    PROJ_CENTER_LONG: "ProjCenterLongGeoKey",
    PROJ_CENTER_LAT: "ProjCenterLatGeoKey",
    PROJ_CENTER_EASTING: "ProjCenterEastingGeoKey",
    PROJ_CENTER_NORTHING: "ProjCenterNorthingGeoKey",
    PROJ_SCALE_AT_NAT_ORIGIN: "ProjScaleAtNatOriginGeoKey",
    PROJ_SCALE_AT_CENTER: "ProjScaleAtCenterGeoKey",
    PROJ_AZIMUTH_ANGLE: "ProjAzimuthAngleGeoKey",
    PROJ_STRAIGHT_VERT_POLE_LONG: "ProjStraightVertPoleLongGeoKey",
    PROJ_RECTIFIED_GRID_ANGLE: "ProjRectifiedGridAngleGeoKey",
}

# ProjCoordTransGeoKey values (geo_ctrans.inc; 9815 is GDAL's code for Hotine variant B).
CT_TRANSVERSE_MERCATOR = 1
CT_OBLIQUE_MERCATOR = 3  # Hotine, variant A
CT_OBLIQUE_MERCATOR_LABORDE = 4
CT_MERCATOR = 7
CT_LAMBERT_CONF_CONIC_2SP = 8
CT_LAMBERT_CONF_CONIC_1SP = 9
CT_LAMBERT_AZIM_EQUAL_AREA = 10
CT_ALBERS_EQUAL_AREA = 11
CT_AZIMUTHAL_EQUIDISTANT = 12
CT_EQUIDISTANT_CONIC = 13
CT_STEREOGRAPHIC = 14
CT_POLAR_STEREOGRAPHIC = 15
CT_OBLIQUE_STEREOGRAPHIC = 16
CT_EQUIRECTANGULAR = 17
CT_CASSINI_SOLDNER = 18
CT_GNOMONIC = 19
CT_MILLER_CYLINDRICAL = 20
CT_ORTHOGRAPHIC = 21
CT_POLYCONIC = 22
CT_ROBINSON = 23
CT_SINUSOIDAL = 24
CT_VAN_DER_GRINTEN = 25
CT_NEW_ZEALAND_MAP_GRID = 26
CT_TRANSV_MERCATOR_SOUTH_ORIENTED = 27
CT_CYLINDRICAL_EQUAL_AREA = 28
CT_HOTINE_OBLIQUE_MERCATOR_AZIMUTH_CENTER = 9815

# Projection methods of the CTs that map to one method: (name, EPSG method code or None for PROJ's own).
_METHODS: dict[int, tuple[str, int | None]] = {
    CT_TRANSVERSE_MERCATOR: ("Transverse Mercator", 9807),
    CT_TRANSV_MERCATOR_SOUTH_ORIENTED: ("Transverse Mercator (South Orientated)", 9808),
    CT_LAMBERT_CONF_CONIC_1SP: ("Lambert Conic Conformal (1SP)", 9801),
    CT_OBLIQUE_STEREOGRAPHIC: ("Oblique Stereographic", 9809), CT_STEREOGRAPHIC: ("Stereographic", None),
    CT_OBLIQUE_MERCATOR: ("Hotine Oblique Mercator (variant A)", 9812),
    CT_HOTINE_OBLIQUE_MERCATOR_AZIMUTH_CENTER: ("Hotine Oblique Mercator (variant B)", 9815),
    CT_OBLIQUE_MERCATOR_LABORDE: ("Laborde Oblique Mercator", 9813), CT_CASSINI_SOLDNER: ("Cassini-Soldner", 9806),
    CT_POLYCONIC: ("American Polyconic", 9818), CT_NEW_ZEALAND_MAP_GRID: ("New Zealand Map Grid", 9811),
    CT_AZIMUTHAL_EQUIDISTANT: ("Azimuthal Equidistant", 1125), CT_GNOMONIC: ("Gnomonic", None),
    CT_LAMBERT_AZIM_EQUAL_AREA: ("Lambert Azimuthal Equal Area", 9820), CT_ORTHOGRAPHIC: ("Orthographic", 9840),
    CT_MILLER_CYLINDRICAL: ("Miller Cylindrical", None), CT_EQUIRECTANGULAR: ("Equidistant Cylindrical", 1028),
    CT_ROBINSON: ("Robinson", None), CT_SINUSOIDAL: ("Sinusoidal", None), CT_VAN_DER_GRINTEN: ("VanDerGrinten", None),
    CT_LAMBERT_CONF_CONIC_2SP: ("Lambert Conic Conformal (2SP)", 9802),
    CT_ALBERS_EQUAL_AREA: ("Albers Equal Area", 9822), CT_EQUIDISTANT_CONIC: ("Equidistant Conic", 1119),
    CT_CYLINDRICAL_EQUAL_AREA: ("Lambert Cylindrical Equal Area", 9835),
}
_MERCATOR_A = ("Mercator (variant A)", 9804)
_MERCATOR_B = ("Mercator (variant B)", 9805)
_POLAR_STEREOGRAPHIC_A = ("Polar Stereographic (variant A)", 9810)
_POLAR_STEREOGRAPHIC_B = ("Polar Stereographic (variant B)", 9829)

# Conversion parameters by EPSG code: (name, unit) in the units the key values are normalised to.
_PARAMETERS = {
    8801: ("Latitude of natural origin", "degree"),
    8802: ("Longitude of natural origin", "degree"),
    8805: ("Scale factor at natural origin", "unity"),
    8806: ("False easting", "metre"),
    8807: ("False northing", "metre"),
    8811: ("Latitude of projection centre", "degree"),
    8812: ("Longitude of projection centre", "degree"),
    8813: ("Azimuth of initial line", "degree"),
    8814: ("Angle from Rectified to Skew Grid", "degree"),
    8815: ("Scale factor on initial line", "unity"),
    8816: ("Easting at projection centre", "metre"),
    8817: ("Northing at projection centre", "metre"),
    8821: ("Latitude of false origin", "degree"),
    8822: ("Longitude of false origin", "degree"),
    8823: ("Latitude of 1st standard parallel", "degree"),
    8824: ("Latitude of 2nd standard parallel", "degree"),
    8826: ("Easting at false origin", "metre"),
    8827: ("Northing at false origin", "metre"),
    8832: ("Latitude of standard parallel", "degree"),
    8833: ("Longitude of origin", "degree"),
}

# Units libgeotiff knows without the database: code -> (name, metres or degrees per unit).
_LINEAR_UNITS = {9001: ("metre", 1.0), 9002: ("foot", 0.3048), 9003: ("US survey foot", 12.0 / 39.37)}
_ANGULAR_UNITS = {
    9101: ("radian", 180.0 / math.pi),
    9102: ("degree", 1.0),
    9103: ("arc-minute", 1 / 60.0),
    9104: ("arc-second", 1 / 3600.0),
    9105: ("grad", 180.0 / 200.0),
    9106: ("gon", 180.0 / 200.0),
    9107: ("degree", 1.0),  # degree minute second
    9108: ("degree", 1.0),  # degree minute second hemisphere
    9109: ("microradian", 180.0 / (math.pi * 1e6)),
    9110: ("degree", 1.0),  # sexagesimal DDD.MMSSsss: parameters are read as degrees, as libgeotiff does
    9122: ("degree", 1.0),
}
_SEXAGESIMAL_DMS = 9110
# Datums libgeotiff names itself rather than from the database (where WGS 84 is an "ensemble").
_DATUM_NAMES = {
    6267: "North American Datum 1927",
    6269: "North American Datum 1983",
    6326: "World Geodetic System 1984",
    6322: "World Geodetic System 1972",
}
# Keys that override what a GeographicTypeGeoKey code implies.
_GCS_OVERRIDES = (
    GEOG_GEODETIC_DATUM,
    GEOG_PRIME_MERIDIAN,
    GEOG_ANGULAR_UNITS,
    GEOG_ELLIPSOID,
    GEOG_SEMI_MAJOR_AXIS,
    GEOG_SEMI_MINOR_AXIS,
    GEOG_INV_FLATTENING,
    GEOG_PRIME_MERIDIAN_LONG,
)
# Keys beside ProjectedCSTypeGeoKey that make GDAL build the CRS from the keys, not take the EPSG one.
_PCS_OVERRIDES = (PROJECTION, PROJ_COORD_TRANS, GEOGRAPHIC_TYPE, GEOG_GEODETIC_DATUM, GEOG_ELLIPSOID)
_GEODETIC_KEYS = (GEOGRAPHIC_TYPE, GEOG_GEODETIC_DATUM, GEOG_ELLIPSOID, GEOG_SEMI_MAJOR_AXIS)

_WGS84_A, _WGS84_RF = 6378137.0, 298.257223563  # WGS 84's, kept exact when computed from the axes
_EARTH_RADIUS = 6_375_000.0  # PROJ's guess of a body: an ellipsoid within 0.8% of this radius is the Earth's
_ESRI_PE = "ESRI PE String = "


@dataclass(frozen=True, slots=True)
class GeoKeys:
    """The keys of one GeoKeyDirectory, by key id.

    Values are as stored: an ``int`` for a SHORT held in the key entry, a tuple of
    ints for SHORTs held further on in the directory, a tuple of floats for DOUBLEs
    (GeoDoubleParams) and a ``str`` for ASCII (GeoAsciiParams, its ``|`` dropped).
    """

    values: Mapping[int, GeoKeyValue] = field(default_factory=dict)
    version: tuple[int, int, int] = (1, 1, 0)

    def short(self, key: int) -> int | None:
        """The key's SHORT value; None when absent or not a SHORT (GDAL ignores a mistyped key)."""
        value = self.values.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, tuple) and value and isinstance(value[0], int):
            return value[0]
        return None

    def double(self, key: int) -> float | None:
        """The key's first DOUBLE value (a SHORT is read as one); None when absent."""
        values = self.doubles(key)
        return values[0] if values else None

    def doubles(self, key: int) -> tuple[float, ...] | None:
        """The key's values as floats; None when absent or ASCII."""
        value = self.values.get(key)
        if isinstance(value, int):
            return (float(value),)
        if isinstance(value, tuple):
            return tuple(float(v) for v in value)
        return None

    def ascii(self, key: int) -> str | None:
        """The key's ASCII value; None when absent or not ASCII."""
        value = self.values.get(key)
        return value if isinstance(value, str) else None


def parse_geokeys(
    directory: Sequence[int], doubles: Sequence[float] = (), ascii: bytes | None = None, *, uri: str | None = None  # noqa: A002 - the TIFF tag's name
) -> GeoKeys:
    """Parse a GeoKeyDirectory with its GeoDoubleParams and GeoAsciiParams values.

    Args:
        directory: The GeoKeyDirectory tag's SHORTs (a header of 4, then 4 per key).
        doubles: The GeoDoubleParams tag's values (empty when the tag is absent).
        ascii: The GeoAsciiParams tag's bytes; None when the tag is absent.
        uri: The file, for error messages.

    Raises:
        UnresolvedCRSError: The directory is truncated or a key points outside its tag
            (libgeotiff then rejects the whole directory, and GDAL reads no CRS).
    """

    def bad(message: str, key: int | None = None, value: object = None) -> UnresolvedCRSError:
        tag = "GeoKeyDirectory" if key is None else GEOKEY_NAMES.get(key, f"GeoKey {key}")
        return UnresolvedCRSError(f"malformed GeoKeyDirectory: {message}", uri=uri, tag=tag, value=value)

    if len(directory) < 4:
        raise bad(f"{len(directory)} values, a directory needs at least 4", value=len(directory))
    version, revision, minor, count = (int(v) for v in directory[:4])
    if version > 1:
        raise bad(f"KeyDirectoryVersion {version}; only 1 is defined", value=version)
    if len(directory) < 4 + 4 * count:
        raise bad(f"{count} keys announced, room for {(len(directory) - 4) // 4}", value=count)
    # The tag's terminating NUL is not part of any value; "|" ends each value.
    text = ascii[:-1] if ascii and ascii.endswith(b"\0") else ascii
    values: dict[int, GeoKeyValue] = {}
    for i in range(count):
        key, location, n, offset = (int(v) for v in directory[4 + 4 * i : 8 + 4 * i])
        value: GeoKeyValue
        if location == _LOCAL:
            if n != 1:
                raise bad(f"a SHORT held in its key entry has count {n}", key, n)
            value = offset
        elif location == GEO_KEY_DIRECTORY:
            if offset + n > len(directory):
                raise bad(f"SHORTs at [{offset}, {offset + n}) lie past the directory's end", key, offset)
            value = tuple(int(v) for v in directory[offset : offset + n])
        elif location == GEO_DOUBLE_PARAMS:
            if offset + n > len(doubles):
                raise bad(f"DOUBLEs at [{offset}, {offset + n}) lie past GeoDoubleParams' {len(doubles)}", key, offset)
            value = tuple(float(v) for v in doubles[offset : offset + n])
        elif location == GEO_ASCII_PARAMS:
            if text is None:
                raise bad("an ASCII key without a GeoAsciiParams tag", key)
            if n > 0 and offset + n == len(text) + 1:
                n -= 1  # a writer that ended the value with the tag's NUL instead of "|"
            elif offset < len(text) < offset + n:
                n = len(text) - offset  # truncated, as libgeotiff does
            elif offset + n > len(text):
                raise bad(f"ASCII at [{offset}, {offset + n}) lies past GeoAsciiParams' {len(text)} bytes", key, offset)
            raw = text[offset : offset + n]
            value = (raw[:-1] if raw.endswith(b"|") else raw).split(b"\0", 1)[0].decode("utf-8", errors="replace")
        else:
            raise bad(f"a value in tag {location}, which GeoTIFF does not define", key, location)
        values[key] = value  # the last of repeated keys wins, as in libgeotiff
    return GeoKeys(values, (version, revision, minor))


def resolve_crs(keys: GeoKeys, *, uri: str | None = None) -> tuple[str, CrsSource] | None:
    """The CRS the keys define, and where it came from; None when they define none.

    Returns:
        ``("EPSG:<code>", "epsg")``, ``(WKT2, "geokeys")`` or ``(WKT2, "citation")``.

    Raises:
        UnresolvedCRSError: A key the CRS needs is missing, or its value is unknown.
        UnsupportedTiffError: The CRS is of another body than the Earth.
    """
    try:
        resolved, notes = _resolve_cached(tuple(sorted(keys.values.items())))
    except UnsupportedTiffError as exc:
        raise _located(exc, uri) from exc.__cause__
    for note in notes:
        log.warning("%s: %s", uri, note)
    return resolved


def resolve_catalog_crs(value: str | Mapping[str, Any], *, uri: str | None = None) -> str:
    """A catalog's CRS (``proj:wkt2``, ``proj:projjson``, or anything pyproj reads) as a header CRS.

    Returns ``"EPSG:<code>"`` for an EPSG code, else WKT2 (the horizontal part of a compound CRS).

    Raises:
        UnsupportedTiffError: The value is not a CRS, or is of another body than the Earth.
    """
    text = json.dumps(value) if isinstance(value, Mapping) else str(value).strip()
    if text.upper().startswith("EPSG:") and text[5:].isdigit():
        crs = f"EPSG:{int(text[5:])}"
    else:
        try:
            crs = _horizontal(CRS.from_user_input(text)).to_wkt()
        except CRSError as exc:
            raise UnsupportedTiffError(f"the catalog's CRS is not a CRS: {exc}", uri=uri) from exc
    _check_earth(crs, "catalog", uri)
    return crs


@lru_cache(maxsize=1024)
def _resolve_cached(
    items: tuple[tuple[int, GeoKeyValue], ...],
) -> tuple[tuple[str, CrsSource] | None, tuple[str, ...]]:
    """:func:`resolve_crs` without a URI, memoised: the files of a collection mostly share their keys."""
    notes: list[str] = []
    resolved = _resolve(GeoKeys(dict(items)), notes)
    if resolved is not None:
        _check_earth(resolved[0], resolved[1])
    return resolved, tuple(notes)


def _located(exc: UnsupportedTiffError, uri: str | None) -> UnsupportedTiffError:
    """``exc`` (raised without a URI) as if raised for ``uri``."""
    if uri is None:
        return exc
    located = type(exc).__new__(type(exc))
    Exception.__init__(located, f"{uri}: {exc}")
    located.uri, located.tag, located.value = uri, exc.tag, exc.value
    return located


def _resolve(keys: GeoKeys, notes: list[str]) -> tuple[str, CrsSource] | None:
    if not keys.values:
        return None
    model = keys.short(GT_MODEL_TYPE)
    if model in (None, USER_DEFINED) and keys.short(PROJECTED_CS_TYPE) not in (None, 0, USER_DEFINED):
        model = _MODEL_PROJECTED  # GDAL: a PCS code without a model type is projected (ticket #3019)
    if model == _MODEL_GEOCENTRIC or model not in (None, USER_DEFINED, _MODEL_PROJECTED, _MODEL_GEOGRAPHIC):
        raise UnresolvedCRSError(
            "the model type is neither projected nor geographic", tag=GEOKEY_NAMES[GT_MODEL_TYPE], value=model
        )
    if model in (None, USER_DEFINED):
        pe = _esri_pe_string(keys)
        if pe is not None:
            return _crs_from_esri(pe), "citation"
        inferred = _infer_model(keys)
        if inferred is None:
            if model is None:
                return None  # keys, but none about a CRS
            raise UnresolvedCRSError(
                "the model type is user-defined, and neither an ESRI PE string citation nor other keys "
                "say what the CRS is",
                tag=GEOKEY_NAMES[GT_MODEL_TYPE],
                value=model,
            )
        model = inferred
    try:
        return _projected(keys, notes) if model == _MODEL_PROJECTED else _geographic(keys, notes)
    except UnresolvedCRSError:
        pe = _esri_pe_string(keys)
        if pe is None:
            raise
        return _crs_from_esri(pe), "citation"


def _infer_model(keys: GeoKeys) -> int | None:
    if any(k in keys.values for k in (PROJECTED_CS_TYPE, PROJECTION, PROJ_COORD_TRANS)):
        return _MODEL_PROJECTED
    if any(k in keys.values for k in _GEODETIC_KEYS):
        return _MODEL_GEOGRAPHIC
    return None


def _valid_code(code: int | None) -> int | None:
    """A code that names something (not 0, not user-defined, not private)."""
    return code if code is not None and 0 < code < USER_DEFINED else None


# --------------------------------------------------------------------------- citations


def _esri_pe_string(keys: GeoKeys) -> str | None:
    """The WKT of an ``ESRI PE String = ...`` citation (PCSCitationGeoKey first, where GDAL reads it)."""
    for key in (PCS_CITATION, GT_CITATION):
        text = keys.ascii(key)
        if text and _ESRI_PE in text:
            return text.split(_ESRI_PE, 1)[1].strip().rstrip("|")
    return None


def _crs_from_esri(wkt: str) -> str:
    try:
        crs = _horizontal(CRS.from_wkt(wkt))
    except CRSError as exc:
        raise UnresolvedCRSError(
            f"the ESRI PE string citation is not a CRS: {exc}", tag="ESRI PE String", value=wkt[:200]
        ) from exc
    if not (crs.is_projected or crs.is_geographic):
        raise UnresolvedCRSError(
            f"the ESRI PE string citation is a {crs.type_name}, not a projected or geographic CRS",
            tag="ESRI PE String",
            value=wkt[:200],
        )
    return crs.to_wkt()


def _horizontal(crs: CRS) -> CRS:
    """The horizontal part of a compound CRS (a vertical axis plays no part in a raster's grid)."""
    return crs.sub_crs_list[0] if crs.is_compound and crs.sub_crs_list else crs


def _citation_fields(text: str | None) -> dict[str, str]:
    """The ``Name = value`` fields of a ``|``-separated citation (GDAL's CitationStringParse)."""
    fields: dict[str, str] = {}
    for part in (text or "").split("|"):
        for name in ("PCS Name", "PRJ Name", "LUnits", "GCS Name", "Datum", "Ellipsoid", "Primem", "AUnits"):
            marker = f"{name} = "
            if marker in part and name not in fields:
                fields[name] = part.split(marker, 1)[1].strip()
    return fields


def _citation_name(text: str | None, field_name: str) -> str | None:
    """The name a citation gives: its ``field_name = `` field, or the whole text when it has no fields."""
    if not text:
        return None
    fields = _citation_fields(text)
    if field_name in fields:
        return fields[field_name] or None
    return None if fields or " = " in text else text.strip() or None


# --------------------------------------------------------------------------- the EPSG database


@lru_cache(maxsize=512)
def _epsg_crs(code: int) -> CRS | None:
    try:
        return CRS.from_epsg(code)
    except CRSError:
        return None


def _epsg_geographic(code: int) -> CRS | None:
    """The EPSG geographic CRS ``code`` in 2D (GeoTIFF 1.0 files may give a 3D one), or None."""
    crs = _epsg_crs(code)
    if crs is None or not crs.is_geographic:
        return None
    return crs if len(crs.axis_info) == 2 else crs.to_2d()


@lru_cache(maxsize=256)
def _epsg_json(kind: Literal["datum", "ellipsoid", "conversion"], code: int) -> dict[str, Any] | None:
    """A datum, ellipsoid or conversion from the EPSG database, as PROJJSON; None when unknown."""
    factory: Any = {"datum": Datum, "ellipsoid": Ellipsoid, "conversion": CoordinateOperation}[kind]
    try:
        result: dict[str, Any] = factory.from_epsg(code).to_json_dict()
    except CRSError:
        return None
    return result


@lru_cache(maxsize=64)
def _epsg_prime_meridian(code: int) -> tuple[str, float] | None:
    """An EPSG prime meridian: (name, degrees east of Greenwich); None when unknown."""
    try:
        pm = PrimeMeridian.from_epsg(code)
    except CRSError:
        return None
    return pm.name, math.degrees(float(pm.longitude) * float(pm.unit_conversion_factor))


@lru_cache(maxsize=2)
def _epsg_units(category: Literal["linear", "angle"]) -> dict[int, tuple[str, float]]:
    """EPSG units of ``category``: code -> (name, metres or radians per unit)."""
    return {
        int(unit.code): (unit.name, unit.conv_factor)
        for unit in get_units_map(auth_name="EPSG", category=category).values()
        if unit.code.isdigit()
    }


def _id_code(obj: Mapping[str, Any]) -> int | None:
    ident = obj.get("id")
    if isinstance(ident, Mapping) and ident.get("authority") == "EPSG":
        return int(ident["code"])
    return None


# --------------------------------------------------------------------------- units


def _linear_unit(keys: GeoKeys) -> tuple[str, float, int | None]:
    """The projected CRS's linear unit as libgeotiff's UOMLength: (name, metres, EPSG code)."""
    code, key = None, PROJ_LINEAR_UNITS
    for k in (GEOG_LINEAR_UNITS, PROJ_LINEAR_UNITS):  # libgeotiff lets the Geog key set it too
        if keys.short(k) is not None:
            code, key = keys.short(k), k
    if code is None or code == USER_DEFINED:
        size = keys.double(PROJ_LINEAR_UNIT_SIZE)
        if size is None:
            if code == USER_DEFINED:
                raise UnresolvedCRSError(
                    "a user-defined linear unit needs ProjLinearUnitSizeGeoKey", tag=GEOKEY_NAMES[key], value=code
                )
            return "metre", 1.0, 9001
        if not (size > 0 and math.isfinite(size)):
            raise UnresolvedCRSError(
                "the linear unit size is not a positive number", tag=GEOKEY_NAMES[PROJ_LINEAR_UNIT_SIZE], value=size
            )
        return ("metre", 1.0, 9001) if size == 1.0 else ("unknown", size, None)
    if code in _LINEAR_UNITS:
        return (*_LINEAR_UNITS[code], code)
    if code in _epsg_units("linear"):
        return (*_epsg_units("linear")[code], code)
    raise UnresolvedCRSError("unknown linear unit code", tag=GEOKEY_NAMES[key], value=code)


def _angular_unit(keys: GeoKeys, default: int | None) -> tuple[str, float, int | None]:
    """The geographic CRS's angular unit: (name, degrees per unit, EPSG code)."""
    code = keys.short(GEOG_ANGULAR_UNITS) if GEOG_ANGULAR_UNITS in keys.values else default
    if code is None:
        return "degree", 1.0, 9122
    if code == USER_DEFINED:
        radians = keys.double(GEOG_ANGULAR_UNIT_SIZE)
        if radians is None:
            return "degree", 1.0, 9122  # libgeotiff keeps degrees
        if not (radians > 0 and math.isfinite(radians)):
            raise UnresolvedCRSError(
                "the angular unit size is not a positive number",
                tag=GEOKEY_NAMES[GEOG_ANGULAR_UNIT_SIZE],
                value=radians,
            )
        return "unknown", math.degrees(radians), None
    return (*_angular_unit_by_code(code, GEOG_ANGULAR_UNITS), code)


def _angular_unit_by_code(code: int, key: int) -> tuple[str, float]:
    if code in _ANGULAR_UNITS:
        return _ANGULAR_UNITS[code]
    if code in _epsg_units("angle"):
        name, radians = _epsg_units("angle")[code]
        return name, math.degrees(radians)
    raise UnresolvedCRSError("unknown angular unit code", tag=GEOKEY_NAMES[key], value=code)


def _azimuth_degrees_per_unit(keys: GeoKeys) -> float:
    """GeogAzimuthUnitsGeoKey's unit in degrees; libgeotiff reads azimuths as degrees, as without the key."""
    code = keys.short(GEOG_AZIMUTH_UNITS)
    if code is None or code == USER_DEFINED:
        return 1.0
    return _angular_unit_by_code(code, GEOG_AZIMUTH_UNITS)[1]


def _dms_to_degrees(value: float) -> float:
    """A sexagesimal DDD.MMSSsss angle (EPSG unit 9110) in degrees, as libgeotiff's GTIFAngleToDD."""
    sign = -1.0 if value < 0 else 1.0
    whole, frac = f"{abs(value):.7f}".split(".")
    seconds = float(f"{frac[2:4]}.{frac[4:]}")
    return sign * (int(whole) + int(frac[:2]) / 60.0 + seconds / 3600.0)


def _linear_unit_json(name: str, metres: float, code: int | None) -> Any:
    if metres == 1.0:
        return "metre"
    unit: dict[str, Any] = {"type": "LinearUnit", "name": name, "conversion_factor": metres}
    if code is not None:
        unit["id"] = {"authority": "EPSG", "code": code}
    return unit


def _angular_unit_json(name: str, degrees: float, code: int | None) -> Any:
    if degrees == 1.0:
        return "degree"
    unit: dict[str, Any] = {"type": "AngularUnit", "name": name, "conversion_factor": math.radians(degrees)}
    if code is not None:
        unit["id"] = {"authority": "EPSG", "code": code}
    return unit


# --------------------------------------------------------------------------- geographic


@dataclass(frozen=True, slots=True)
class _Geodetic:
    """A geographic CRS (PROJJSON), its angular unit, and a TOWGS84 to bind it with (unknown datums only)."""

    crs: dict[str, Any]
    degrees_per_unit: float
    towgs84: tuple[float, ...] | None = None
    is_epsg: bool = False  # the EPSG CRS a GCS code names, no key overriding it


def _geographic(keys: GeoKeys, notes: list[str]) -> tuple[str, CrsSource]:
    geodetic = _geodetic(keys)
    crs = CRS.from_json_dict(geodetic.crs)
    gcs = _valid_code(keys.short(GEOGRAPHIC_TYPE))
    epsg = _epsg_geographic(gcs) if gcs is not None else None
    if gcs is not None and epsg is not None and not geodetic.towgs84:
        if geodetic.is_epsg or crs.equals(epsg, ignore_axis_order=True):
            # A 3D code is given as its 2D CRS.
            return (f"EPSG:{gcs}", "epsg") if epsg is _epsg_crs(gcs) else (epsg.to_wkt(), "epsg")
        notes.append(
            f"the GeoKeys define another CRS than their GeographicTypeGeoKey EPSG:{gcs}; "
            "using the keys' definition, as GDAL does"
        )
    if geodetic.towgs84:
        crs = _bound(crs, geodetic.towgs84)
    return crs.to_wkt(), "geokeys"


def _geodetic(keys: GeoKeys) -> _Geodetic:
    """The geographic CRS the Geog* keys define: libgeotiff's GTIFGetDefn, then GDAL's SetGeogCS."""
    gcs = _valid_code(keys.short(GEOGRAPHIC_TYPE))
    # What a GCS code implies (libgeotiff's GTIFGetGCSInfo); the Geog* keys override it one by one.
    default_datum = default_pm = default_unit = None
    gcs_name: str | None = None
    if gcs is not None:
        epsg = _epsg_geographic(gcs)
        if epsg is None:
            if not any(k in keys.values for k in _GEODETIC_KEYS[1:]):
                raise UnresolvedCRSError("unknown geographic CRS code", tag=GEOKEY_NAMES[GEOGRAPHIC_TYPE], value=gcs)
        else:
            degrees = math.degrees(epsg.axis_info[0].unit_conversion_factor)
            if not any(k in keys.values for k in _GCS_OVERRIDES):
                return _Geodetic(epsg.to_json_dict(), degrees, is_epsg=True)
            gcs_name = epsg.name
            default_datum = _id_code(epsg.datum.to_json_dict()) if epsg.datum is not None else None
            default_pm = _id_code(epsg.prime_meridian.to_json_dict()) if epsg.prime_meridian is not None else None
            axis_unit = epsg.axis_info[0].unit_code
            default_unit = int(axis_unit) if axis_unit and axis_unit.isdigit() else None

    citation = _citation_fields(keys.ascii(GEOG_CITATION))
    gcs_name = gcs_name or citation.get("GCS Name") or _citation_name(keys.ascii(GEOG_CITATION), "GCS Name")

    # The datum, and the ellipsoid it implies.
    datum_code = _valid_code(keys.short(GEOG_GEODETIC_DATUM)) if GEOG_GEODETIC_DATUM in keys.values else default_datum
    datum_name = citation.get("Datum")
    datum_json: dict[str, Any] | None = None
    ellipsoid_code: int | None = None
    if datum_code is not None:
        datum_json = _epsg_json("datum", datum_code)
        if datum_json is None or "ellipsoid" not in datum_json:
            raise UnresolvedCRSError(
                "unknown geodetic datum code", tag=GEOKEY_NAMES[GEOG_GEODETIC_DATUM], value=datum_code
            )
        datum_name = datum_name or _DATUM_NAMES.get(datum_code, datum_json["name"])
        ellipsoid_code = _id_code(datum_json["ellipsoid"])
    if GEOG_ELLIPSOID in keys.values:
        ellipsoid_code = _valid_code(keys.short(GEOG_ELLIPSOID))

    ellipsoid_name = citation.get("Ellipsoid")
    a = b = 0.0
    if ellipsoid_code is not None:
        ellipsoid = _epsg_json("ellipsoid", ellipsoid_code)
        if ellipsoid is None:
            raise UnresolvedCRSError("unknown ellipsoid code", tag=GEOKEY_NAMES[GEOG_ELLIPSOID], value=ellipsoid_code)
        ellipsoid_name = ellipsoid_name or ellipsoid["name"]
        a, b = _ellipsoid_axes(ellipsoid)
    elif datum_json is not None and GEOG_ELLIPSOID not in keys.values:
        ellipsoid_name = ellipsoid_name or datum_json["ellipsoid"].get("name")
        a, b = _ellipsoid_axes(datum_json["ellipsoid"])
    # Explicit axes override the coded ellipsoid, as libgeotiff lets them.
    a = _or(keys.double(GEOG_SEMI_MAJOR_AXIS), a)
    b = _or(keys.double(GEOG_SEMI_MINOR_AXIS), b)
    rf = keys.double(GEOG_INV_FLATTENING)
    if rf is not None and math.isinf(rf):
        rf = 0.0
    if rf is not None:
        b = a * (1 - 1 / rf) if rf != 0 else a
    if a == 0.0:
        raise UnresolvedCRSError(
            "no key says which ellipsoid (no GCS, datum or ellipsoid code, no semi-major axis; "
            "GDAL would assume WGS 84)",
            tag=GEOKEY_NAMES[GEOGRAPHIC_TYPE],
            value=keys.short(GEOGRAPHIC_TYPE),
        )
    if rf is None:
        rf = 0.0 if b in (a, 0.0) else a / (a - b)
        if abs(a - _WGS84_A) < 1e-10 and abs(rf - _WGS84_RF) < 1e-10:
            rf = _WGS84_RF
    if not (math.isfinite(a) and a > 0 and math.isfinite(rf) and rf >= 0):
        raise UnresolvedCRSError(
            "the ellipsoid is not a valid one", tag=GEOKEY_NAMES[GEOG_SEMI_MAJOR_AXIS], value=(a, rf)
        )

    unit_name, degrees, unit_code = _angular_unit(keys, default_unit)
    pm_name, pm_degrees, pm_code = _prime_meridian(keys, citation.get("Primem"), default_pm, unit_code, degrees)

    ellipsoid_json: dict[str, Any] = {"name": ellipsoid_name or "unknown"}
    ellipsoid_json.update({"radius": a} if rf == 0.0 else {"semi_major_axis": a, "inverse_flattening": rf})
    if ellipsoid_code is not None:
        ellipsoid_json["id"] = {"authority": "EPSG", "code": ellipsoid_code}
    datum: dict[str, Any] = {
        "type": "GeodeticReferenceFrame",
        "name": datum_name or "unknown",
        "ellipsoid": ellipsoid_json,
    }
    unit = _angular_unit_json(unit_name, degrees, unit_code)
    if pm_name != "Greenwich" or pm_degrees != 0.0 or degrees != 1.0:
        # In the CRS's angular unit: WKT2 carries a projected CRS's base unit by its prime meridian.
        datum["prime_meridian"] = {"name": pm_name, "longitude": {"value": pm_degrees / degrees, "unit": unit}}
        if pm_code is not None:
            datum["prime_meridian"]["id"] = {"authority": "EPSG", "code": pm_code}
    if datum_code is not None:
        datum["id"] = {"authority": "EPSG", "code": datum_code}
    crs = {
        "type": "GeographicCRS",
        "name": gcs_name or datum_name or "unknown",
        "datum": datum,
        "coordinate_system": {
            "subtype": "ellipsoidal",
            "axis": [
                {"name": "Geodetic latitude", "abbreviation": "Lat", "direction": "north", "unit": unit},
                {"name": "Geodetic longitude", "abbreviation": "Lon", "direction": "east", "unit": unit},
            ],
        },
    }
    towgs84 = keys.doubles(GEOG_TOWGS84)
    if towgs84 is not None and len(towgs84) not in (3, 7):
        raise UnresolvedCRSError("TOWGS84 needs 3 or 7 values", tag=GEOKEY_NAMES[GEOG_TOWGS84], value=towgs84)
    # GDAL drops TOWGS84 from datums it knows (StripTOWGS84IfKnownDatumAndAllowed).
    return _Geodetic(crs, degrees, towgs84 if towgs84 and datum_code is None else None)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _ellipsoid_axes(ellipsoid: Mapping[str, Any]) -> tuple[float, float]:
    """Semi-major and semi-minor axes (metres) of a PROJJSON ellipsoid."""

    def metres(value: Any) -> float:
        if isinstance(value, Mapping):
            unit = value.get("unit")
            factor = unit.get("conversion_factor", 1.0) if isinstance(unit, Mapping) else 1.0
            return float(value["value"]) * float(factor)
        return float(value)

    if "radius" in ellipsoid:
        r = metres(ellipsoid["radius"])
        return r, r
    a = metres(ellipsoid["semi_major_axis"])
    if "semi_minor_axis" in ellipsoid:
        return a, metres(ellipsoid["semi_minor_axis"])
    rf = float(ellipsoid["inverse_flattening"])
    return a, a * (1 - 1 / rf) if rf else a


def _prime_meridian(
    keys: GeoKeys, cited: str | None, default: int | None, unit_code: int | None, degrees_per_unit: float
) -> tuple[str, float, int | None]:
    """The prime meridian: (name, degrees east of Greenwich, EPSG code)."""
    code = _valid_code(keys.short(GEOG_PRIME_MERIDIAN)) if GEOG_PRIME_MERIDIAN in keys.values else default
    if code is not None:
        pm = _epsg_prime_meridian(code)
        if pm is None:
            raise UnresolvedCRSError("unknown prime meridian code", tag=GEOKEY_NAMES[GEOG_PRIME_MERIDIAN], value=code)
        return cited or pm[0], pm[1], code
    raw = _or(keys.double(GEOG_PRIME_MERIDIAN_LONG), 0.0)
    degrees = _dms_to_degrees(raw) if unit_code == _SEXAGESIMAL_DMS else raw * degrees_per_unit
    return cited or ("Greenwich" if degrees == 0.0 else "unnamed"), degrees, None


def _bound(crs: CRS, towgs84: Sequence[float]) -> CRS:
    """``crs`` bound to WGS 84 by its TOWGS84 Helmert transformation, as GDAL's SetTOWGS84."""
    params = list(towgs84)
    if len(params) == 7 and not any(params[3:]):
        params = params[:3]
    transformation = ToWGS84Transformation(crs.geodetic_crs or crs, *params)
    return BoundCRS(source_crs=crs, target_crs="EPSG:4326", transformation=transformation)


# --------------------------------------------------------------------------- projected


def _projected(keys: GeoKeys, notes: list[str]) -> tuple[str, CrsSource]:
    pcs = _valid_code(keys.short(PROJECTED_CS_TYPE))
    epsg: CRS | None = None
    if pcs is not None:
        epsg = _epsg_crs(pcs)
        if epsg is None or not epsg.is_projected:
            if PROJ_COORD_TRANS not in keys.values and _valid_code(keys.short(PROJECTION)) is None:
                raise UnresolvedCRSError("unknown projected CRS code", tag=GEOKEY_NAMES[PROJECTED_CS_TYPE], value=pcs)
            epsg = None
        elif not any(k in keys.values for k in _PCS_OVERRIDES):
            return _epsg_projected(epsg, pcs, keys)

    if epsg is None and keys.short(PROJ_COORD_TRANS) is None and _valid_code(keys.short(PROJECTION)) is None:
        raise UnresolvedCRSError(
            "a user-defined projected CRS needs ProjCoordTransGeoKey (and its parameters) or an EPSG ProjectionGeoKey",
            tag=GEOKEY_NAMES[PROJECTION if PROJECTION in keys.values else PROJECTED_CS_TYPE],
            value=keys.short(PROJECTION if PROJECTION in keys.values else PROJECTED_CS_TYPE),
        )
    # libgeotiff: what the PCS code implies, overridden key by key.
    if epsg is not None and epsg.geodetic_crs is not None and not any(k in keys.values for k in _GEODETIC_KEYS[:3]):
        base = epsg.geodetic_crs.to_2d()
        geodetic = _Geodetic(base.to_json_dict(), math.degrees(base.axis_info[0].unit_conversion_factor))
    else:
        geodetic = _geodetic(keys)
    if epsg is not None and GEOG_LINEAR_UNITS not in keys.values and PROJ_LINEAR_UNITS not in keys.values:
        axis = epsg.axis_info[0]
        unit_code = int(axis.unit_code) if axis.unit_auth_code == "EPSG" and axis.unit_code.isdigit() else None
        unit_name, metres = axis.unit_name, axis.unit_conversion_factor
    else:
        unit_name, metres, unit_code = _linear_unit(keys)
    if epsg is not None and epsg.coordinate_operation is not None and PROJ_COORD_TRANS not in keys.values:
        conversion: dict[str, Any] = epsg.coordinate_operation.to_json_dict()
    else:
        conversion = _conversion(keys, geodetic.degrees_per_unit, metres)
    name = (
        (epsg.name if epsg is not None else None)
        or _citation_name(keys.ascii(PCS_CITATION), "PCS Name")
        or _citation_name(keys.ascii(GT_CITATION), "PCS Name")
        or "unnamed"
    )
    crs = _build_projected(name, geodetic, conversion, _linear_unit_json(unit_name, metres, unit_code), keys)
    if epsg is not None:
        if crs.equals(epsg, ignore_axis_order=True):
            return f"EPSG:{pcs}", "epsg"
        notes.append(
            f"the GeoKeys define another CRS than their ProjectedCSTypeGeoKey EPSG:{pcs}; "
            "using the keys' definition, as GDAL does"
        )
    return crs.to_wkt(), "geokeys"


def _epsg_projected(crs: CRS, pcs: int, keys: GeoKeys) -> tuple[str, CrsSource]:
    """An EPSG projected CRS, its linear unit replaced when ProjLinearUnitsGeoKey says another (GDAL #6210)."""
    if PROJ_LINEAR_UNITS not in keys.values:
        return f"EPSG:{pcs}", "epsg"
    unit_name, metres, unit_code = _linear_unit(keys)
    if abs(metres - crs.axis_info[0].unit_conversion_factor) <= 1e-15 * metres:
        return f"EPSG:{pcs}", "epsg"
    projjson = crs.to_json_dict()
    for axis in projjson["coordinate_system"]["axis"]:
        axis["unit"] = _linear_unit_json(unit_name, metres, unit_code)
    projjson.pop("id", None)
    return CRS.from_json_dict(projjson).to_wkt(), "geokeys"


def _build_projected(name: str, geodetic: _Geodetic, conversion: dict[str, Any], unit: Any, keys: GeoKeys) -> CRS:
    x_direction, y_direction = _axis_directions(conversion)
    projjson = {
        "type": "ProjectedCRS",
        "name": name,
        "base_crs": geodetic.crs,
        "conversion": conversion,
        "coordinate_system": {
            "subtype": "Cartesian",
            "axis": [
                {"name": "Easting", "abbreviation": "E", "direction": x_direction, "unit": unit},
                {"name": "Northing", "abbreviation": "N", "direction": y_direction, "unit": unit},
            ],
        },
    }
    try:
        crs = CRS.from_json_dict(projjson)
    except CRSError as exc:
        raise UnresolvedCRSError(
            f"PROJ cannot build the CRS: {exc}", tag=GEOKEY_NAMES[PROJ_COORD_TRANS], value=keys.short(PROJ_COORD_TRANS)
        ) from exc
    return _bound(crs, geodetic.towgs84) if geodetic.towgs84 else crs


def _axis_directions(conversion: Mapping[str, Any]) -> tuple[str, str]:
    """The axis directions GDAL gives a projection: polar at the poles, westing/southing for TM south.

    They describe the axes, they do not flip them: PROJ computes the same coordinates either way.
    """
    method = _id_code(conversion.get("method", {}))
    values = {_id_code(p): p.get("value", 0.0) for p in conversion.get("parameters", [])}
    if method == 9808:
        return "west", "south"
    if method in (9810, 9829):
        latitude = values.get(8801 if method == 9810 else 8832, 0.0)
        return ("south", "south") if latitude > 0 else ("north", "north")
    latitude = values.get(8801, 0.0)
    if method == 9820 and values.get(8802) == 0.0 and abs(abs(latitude) - 90.0) < 1e-10:
        return ("south", "south") if latitude > 0 else ("north", "north")
    return "east", "north"


def _conversion(keys: GeoKeys, degrees_per_unit: float, metres: float) -> dict[str, Any]:
    """The map projection: ProjCoordTransGeoKey and its parameters, else the EPSG ProjectionGeoKey."""
    ct = keys.short(PROJ_COORD_TRANS)
    if ct is not None:
        return _conversion_from_keys(ct, keys, degrees_per_unit, metres)
    code = _valid_code(keys.short(PROJECTION))
    conversion = _epsg_json("conversion", code) if code is not None else None
    if conversion is None or conversion.get("type") != "Conversion":
        raise UnresolvedCRSError("unknown projection (conversion) code", tag=GEOKEY_NAMES[PROJECTION], value=code)
    return conversion


def _method(method: tuple[str, int | None], params: Mapping[int, float]) -> dict[str, Any]:
    name, code = method
    return {
        "type": "Conversion",
        "name": "unnamed",
        "method": {"name": name} if code is None else {"name": name, "id": {"authority": "EPSG", "code": code}},
        "parameters": [
            {
                "name": _PARAMETERS[p][0],
                "value": value,
                "unit": _PARAMETERS[p][1],
                "id": {"authority": "EPSG", "code": p},
            }
            for p, value in params.items()
        ],
    }


def _conversion_from_keys(ct: int, keys: GeoKeys, degrees_per_unit: float, metres: float) -> dict[str, Any]:
    """Libgeotiff's GTIFFetchProjParms (which keys stand in for which), then GDAL's Set<Projection> calls."""

    def first(*ids: int, default: float = 0.0) -> float:
        for key in ids:
            value = keys.double(key)
            if value is not None:
                return value
        return default

    def angle(*ids: int, default: float = 0.0) -> float:
        return first(*ids, default=default) * degrees_per_unit

    def require(*ids: int) -> None:
        if all(keys.double(key) is None for key in ids):
            raise UnresolvedCRSError(
                f"ProjCoordTransGeoKey {ct} ({_METHODS.get(ct, ('', None))[0]}) needs "
                f"{' or '.join(GEOKEY_NAMES[k] for k in ids)}: libgeotiff would read 0, a degenerate projection",
                tag=GEOKEY_NAMES[ids[0]],
                value=None,
            )

    nat_long = (PROJ_NAT_ORIGIN_LONG, PROJ_FALSE_ORIGIN_LONG, PROJ_CENTER_LONG)
    nat_lat = (PROJ_NAT_ORIGIN_LAT, PROJ_FALSE_ORIGIN_LAT, PROJ_CENTER_LAT)
    lon0, lat0 = angle(*nat_long), angle(*nat_lat)
    fe = first(PROJ_FALSE_EASTING, PROJ_CENTER_EASTING, PROJ_FALSE_ORIGIN_EASTING) * metres
    fn = first(PROJ_FALSE_NORTHING, PROJ_CENTER_NORTHING, PROJ_FALSE_ORIGIN_NORTHING) * metres

    if ct in (
        CT_TRANSVERSE_MERCATOR,
        CT_TRANSV_MERCATOR_SOUTH_ORIENTED,
        CT_LAMBERT_CONF_CONIC_1SP,
        CT_OBLIQUE_STEREOGRAPHIC,
        CT_STEREOGRAPHIC,
    ):
        k = first(PROJ_SCALE_AT_NAT_ORIGIN, *(() if ct == CT_STEREOGRAPHIC else (PROJ_SCALE_AT_CENTER,)), default=1.0)
        return _method(_METHODS[ct], {8801: lat0, 8802: lon0, 8805: k, 8806: fe, 8807: fn})
    if ct == CT_MERCATOR:
        sp1 = keys.double(PROJ_STD_PARALLEL1)
        if sp1 is not None:  # GDAL: a standard parallel makes it Mercator 2SP
            return _method(_MERCATOR_B, {8823: sp1 * degrees_per_unit, 8802: lon0, 8806: fe, 8807: fn})
        k = first(PROJ_SCALE_AT_NAT_ORIGIN, default=1.0)
        if lat0 != 0.0 and k == 1.0:  # GDAL's SetMercator reads a 1SP origin latitude as the standard parallel
            return _method(_MERCATOR_B, {8823: lat0, 8802: lon0, 8806: fe, 8807: fn})
        return _method(_MERCATOR_A, {8801: lat0, 8802: lon0, 8805: k, 8806: fe, 8807: fn})
    if ct in (CT_OBLIQUE_MERCATOR, CT_HOTINE_OBLIQUE_MERCATOR_AZIMUTH_CENTER, CT_OBLIQUE_MERCATOR_LABORDE):
        centre = {8811: lat0, 8812: lon0, 8813: first(PROJ_AZIMUTH_ANGLE) * _azimuth_degrees_per_unit(keys)}
        k = first(PROJ_SCALE_AT_NAT_ORIGIN, PROJ_SCALE_AT_CENTER, default=1.0)
        if ct == CT_OBLIQUE_MERCATOR_LABORDE:
            return _method(_METHODS[ct], {**centre, 8815: k, 8806: fe, 8807: fn})
        gamma = _or(keys.double(PROJ_RECTIFIED_GRID_ANGLE), 90.0 / degrees_per_unit) * degrees_per_unit
        if ct == CT_OBLIQUE_MERCATOR:
            return _method(_METHODS[ct], {**centre, 8814: gamma, 8815: k, 8806: fe, 8807: fn})
        return _method(_METHODS[ct], {**centre, 8814: gamma, 8815: k, 8816: fe, 8817: fn})
    if ct in (
        CT_CASSINI_SOLDNER,
        CT_POLYCONIC,
        CT_NEW_ZEALAND_MAP_GRID,
        CT_AZIMUTHAL_EQUIDISTANT,
        CT_GNOMONIC,
        CT_LAMBERT_AZIM_EQUAL_AREA,
        CT_ORTHOGRAPHIC,
    ):
        return _method(_METHODS[ct], {8801: lat0, 8802: lon0, 8806: fe, 8807: fn})
    if ct in (CT_MILLER_CYLINDRICAL, CT_ROBINSON, CT_SINUSOIDAL, CT_VAN_DER_GRINTEN):
        return _method(_METHODS[ct], {8802: lon0, 8806: fe, 8807: fn})
    if ct == CT_EQUIRECTANGULAR:
        sp1 = angle(PROJ_STD_PARALLEL1)
        if lat0 != 0.0:  # GDAL's SetEquirectangular2 keeps a non-zero origin latitude
            return _method(_METHODS[ct], {8823: sp1, 8801: lat0, 8802: lon0, 8806: fe, 8807: fn})
        return _method(_METHODS[ct], {8823: sp1, 8802: lon0, 8806: fe, 8807: fn})
    if ct == CT_POLAR_STEREOGRAPHIC:
        require(*nat_lat)
        lon = angle(PROJ_STRAIGHT_VERT_POLE_LONG, *nat_long)
        k = first(PROJ_SCALE_AT_NAT_ORIGIN, PROJ_SCALE_AT_CENTER, default=1.0)
        if k == 1.0 and abs(abs(lat0) - 90.0) > 1e-8:  # GDAL's SetPS: a standard parallel, variant B
            return _method(_POLAR_STEREOGRAPHIC_B, {8832: lat0, 8833: lon, 8806: fe, 8807: fn})
        return _method(_POLAR_STEREOGRAPHIC_A, {8801: lat0, 8802: lon, 8805: k, 8806: fe, 8807: fn})
    if ct in (CT_LAMBERT_CONF_CONIC_2SP, CT_ALBERS_EQUAL_AREA, CT_EQUIDISTANT_CONIC):
        require(PROJ_STD_PARALLEL1)
        require(PROJ_STD_PARALLEL2)
        sp1, sp2 = angle(PROJ_STD_PARALLEL1), angle(PROJ_STD_PARALLEL2)
        return _method(_METHODS[ct], {8821: lat0, 8822: lon0, 8823: sp1, 8824: sp2, 8826: fe, 8827: fn})
    if ct == CT_CYLINDRICAL_EQUAL_AREA:
        return _method(_METHODS[ct], {8823: angle(PROJ_STD_PARALLEL1), 8802: lon0, 8806: fe, 8807: fn})
    raise UnresolvedCRSError(
        "a coordinate transformation (projection method) libgeotiff does not map",
        tag=GEOKEY_NAMES[PROJ_COORD_TRANS],
        value=ct,
    )


# --------------------------------------------------------------------------- the Earth only


def _check_earth(crs: str, source: str, uri: str | None = None) -> None:
    """Refuse a CRS of another body: its footprints cannot be given in OGC:CRS84."""
    if crs.startswith("EPSG:"):
        return  # the EPSG registry describes the Earth only
    parsed = CRS.from_user_input(crs)
    ellipsoid = parsed.ellipsoid
    if ellipsoid is None:
        return
    a = ellipsoid.semi_major_metre
    if abs(a - _EARTH_RADIUS) > 0.008 * _EARTH_RADIUS:
        raise UnsupportedTiffError(
            f"the CRS is of another body than the Earth (ellipsoid {ellipsoid.name!r}, semi-major axis {a:.0f} m): "
            "Rasteret keeps every footprint in OGC:CRS84, which only the Earth has",
            uri=uri,
            tag=f"CRS ({source})",
            value=parsed.name,
        )
