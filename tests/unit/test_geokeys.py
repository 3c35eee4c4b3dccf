"""CRSs from GeoKeys against rasterio/GDAL: GDAL-written user-defined CRSs, hand-written key directories, fallbacks."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rasterio
import tifffile
from hypothesis import given
from hypothesis import strategies as st
from pyproj import CRS, Transformer
from rasterio.transform import Affine

import rasteret_core as rc
from rasteret_core.errors import UnresolvedCRSError, UnsupportedTiffError
from rasteret_core.tiff.geokeys import GeoKeys, parse_geokeys, resolve_catalog_crs, resolve_crs
from rasteret_core.tiff.header import TiffHeader
from rasteret_core.tiff.parser import parse_header

U = 32767  # KvUserDefined


class MemoryStore:
    """A ByteStore over one bytes object."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        return self.data[start:end]


def parse(path: Path, **options: Any) -> TiffHeader:
    return asyncio.run(parse_header(str(path), MemoryStore(path.read_bytes()), **options))


def write(path: Path, crs: str, transform: Affine, **options: Any) -> Path:
    """An 8x8 GeoTIFF written by GDAL (rasterio) with ``crs``; ``options`` are creation options."""
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs=crs, transform=transform, **options
    ) as dst:
        dst.write(np.zeros((1, 8, 8), "uint8"))
    return path


def write_keys(
    path: Path, keys: dict[int, int | float | list[float] | str], origin: tuple[float, float], pixel: float = 100.0
) -> Path:
    """A TIFF with exactly these GeoKeys (int: SHORT, float/list: DOUBLE, str: ASCII), written by tifffile."""
    entries, doubles, ascii = [], [], ""
    for key in sorted(keys):
        value = keys[key]
        if isinstance(value, str):
            entries.append((key, 34737, len(value) + 1, len(ascii)))
            ascii += value + "|"
        elif isinstance(value, int):
            entries.append((key, 0, 1, value))
        else:
            values = value if isinstance(value, list) else [value]
            entries.append((key, 34736, len(values), len(doubles)))
            doubles += [float(v) for v in values]
    directory = [1, 1, 0, len(entries), *(v for entry in entries for v in entry)]
    tags = [
        (34735, "H", len(directory), directory, False),
        (33550, "d", 3, [pixel, pixel, 0.0], False),
        (33922, "d", 6, [0.0, 0.0, 0.0, origin[0], origin[1], 0.0], False),
    ]
    if doubles:
        tags.append((34736, "d", len(doubles), doubles, False))
    if ascii:
        tags.append((34737, "s", 0, ascii, False))
    tifffile.imwrite(path, np.zeros((8, 8), "uint8"), extratags=tags, photometric="minisblack")
    return path


def assert_same_crs(path: Path, header: TiffHeader) -> None:
    """Our CRS and GDAL's take a grid over the raster to the same lon/lat (1e-7 degrees), and are equal."""
    with rasterio.open(path) as src:
        gdal = CRS.from_wkt(src.crs.to_wkt())
        t, width, height = src.transform, src.width, src.height
    ours = CRS.from_user_input(header.crs)
    cols, rows = np.meshgrid(np.linspace(0, width, 9), np.linspace(0, height, 9))
    x, y = t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e
    lon, lat = Transformer.from_crs(ours, "EPSG:4326", always_xy=True).transform(x, y)
    lon_gdal, lat_gdal = Transformer.from_crs(gdal, "EPSG:4326", always_xy=True).transform(x, y)
    assert np.isfinite(lon).all() and np.isfinite(lat).all()
    np.testing.assert_allclose(lon, lon_gdal, rtol=0, atol=1e-7)
    np.testing.assert_allclose(lat, lat_gdal, rtol=0, atol=1e-7)
    assert ours.equals(gdal, ignore_axis_order=True), f"\nours: {ours.to_wkt()}\ngdal: {gdal.to_wkt()}"


# ------------------------------------------------------------------ GeoTIFFs GDAL writes

ESRI_TM = (
    'PROJCS["custom_tm",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
    'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
    'PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",9.5],'
    'PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]'
)
ESRI_PE = {"GEOTIFF_KEYS_FLAVOR": "ESRI_PE"}


@dataclass(frozen=True)
class Case:
    """A CRS GDAL writes, where the raster lies in it, and the crs_source expected of the header."""

    crs: str
    origin: tuple[float, float] = (1e3, 5e3)
    source: str = "geokeys"
    options: dict[str, str] = field(default_factory=dict)


GDAL_CASES = {
    "tmerc-grs80-no-datum": Case("+proj=tmerc +lat_0=10 +lon_0=7 +k=0.999 +x_0=1000 +y_0=20 +ellps=GRS80"),
    "tmerc-south-oriented": Case("+proj=tmerc +lat_0=0 +lon_0=29 +k=1 +axis=wsu +ellps=WGS84"),
    "lcc-2sp": Case("+proj=lcc +lat_1=33 +lat_2=45 +lat_0=39 +lon_0=-96 +x_0=1000 +y_0=2000 +datum=NAD83"),
    "lcc-1sp": Case("+proj=lcc +lat_1=40 +lat_0=40 +lon_0=-96 +k_0=0.9999 +x_0=1000 +y_0=2000 +ellps=clrk66"),
    "aea": Case("+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +datum=NAD83"),
    "omerc-hotine-a-gamma": Case(
        "+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.0257905 +gamma=323.1301023611111 +k=0.99984 "
        "+x_0=804670.24 +y_0=0 +no_uoff +ellps=evrst69"
    ),
    "omerc-hotine-b-gamma": Case("+proj=omerc +lat_0=46 +lonc=8 +alpha=45 +gamma=40 +k=0.999 +x_0=6e5 +ellps=bessel"),
    "omerc-hotine-b": Case("+proj=omerc +lat_0=46 +lonc=8 +alpha=45 +k=0.999 +x_0=6e5 +y_0=2e5 +ellps=bessel"),
    "polar-north-a": Case("+proj=stere +lat_0=90 +lon_0=-45 +k=0.994 +x_0=2e6 +y_0=2e6 +datum=WGS84", (1e3, 1e4)),
    "polar-north-b": Case("+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +datum=WGS84", (-1e4, 1e4)),
    "polar-south-b": Case("+proj=stere +lat_0=-90 +lat_ts=-71 +lon_0=0 +datum=WGS84", (-1e4, 1e4)),
    "polar-south-a": Case("+proj=stere +lat_0=-90 +lon_0=0 +k=0.97276901289 +datum=WGS84", (-1e4, 1e4)),
    "oblique-stereographic": Case(
        "+proj=sterea +lat_0=52.15616055555555 +lon_0=5.38763888888889 +k=0.9999079 +x_0=155000 +y_0=463000 "
        "+ellps=bessel"
    ),
    "stereographic": Case("+proj=stere +lat_0=45 +lon_0=10 +k=0.9999 +ellps=WGS84"),
    "laea": Case("+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80"),
    "laea-north-pole": Case("+proj=laea +lat_0=90 +lon_0=0 +ellps=WGS84", (-1e4, 1e4)),
    "aeqd": Case("+proj=aeqd +lat_0=40 +lon_0=-100 +ellps=WGS84"),
    "eqdc": Case("+proj=eqdc +lat_0=40 +lon_0=-96 +lat_1=20 +lat_2=60 +ellps=GRS80"),
    "eqc": Case("+proj=eqc +lat_ts=30 +lon_0=10 +ellps=WGS84"),
    "eqc-lat0": Case("+proj=eqc +lat_ts=30 +lat_0=20 +lon_0=10 +ellps=WGS84"),
    "cassini": Case(
        "+proj=cass +lat_0=31.73409694444445 +lon_0=35.21208055555556 +x_0=170251.555 +y_0=126867.909 "
        "+a=6378300.789 +b=6356566.435"
    ),
    "polyconic": Case("+proj=poly +lat_0=0 +lon_0=-54 +x_0=5e6 +y_0=1e7 +ellps=aust_SA", (5e6, 1e7)),
    "nzmg": Case("+proj=nzmg +lat_0=-41 +lon_0=173 +x_0=2510000 +y_0=6023150 +ellps=intl", (2510000, 6023150)),
    "orthographic": Case("+proj=ortho +lat_0=40 +lon_0=-100 +ellps=WGS84"),
    "gnomonic": Case("+proj=gnom +lat_0=40 +lon_0=-100 +ellps=WGS84"),
    "miller": Case("+proj=mill +lon_0=10 +ellps=WGS84"),
    "sinusoidal": Case("+proj=sinu +lon_0=10 +x_0=100 +y_0=200 +ellps=WGS84"),
    "robinson": Case("+proj=robin +lon_0=10 +x_0=100 +y_0=200 +ellps=WGS84"),
    "van-der-grinten": Case("+proj=vandg +lon_0=10 +x_0=100 +y_0=200 +R=6371000"),
    "cylindrical-equal-area": Case("+proj=cea +lat_ts=30 +lon_0=10 +ellps=WGS84"),
    "mercator-1sp": Case("+proj=merc +lon_0=10 +k=0.999 +x_0=100 +y_0=200 +ellps=WGS84"),
    "mercator-2sp": Case("+proj=merc +lat_ts=30 +lon_0=10 +x_0=100 +y_0=200 +ellps=WGS84"),
    "state-plane-us-ft": Case(
        "+proj=lcc +lat_1=37.06666666666667 +lat_2=38.43333333333333 +lat_0=36.5 +lon_0=-120.5 "
        "+x_0=2000000.0001016 +y_0=500000.0001016001 +datum=NAD83 +units=us-ft",
        (6e6, 2e6),
    ),
    "state-plane-ft": Case(
        "+proj=tmerc +lat_0=31 +lon_0=-110.1666666666667 +k=0.9999 +x_0=213360 +y_0=0 +datum=NAD83 +units=ft",
        (7e5, 3e5),
    ),
    "epsg-2227-state-plane": Case("EPSG:2227", (6e6, 2e6), "epsg"),
    "epsg-3857": Case("EPSG:3857", (1e6, 5e6), "epsg"),
    "custom-unit-to-meter": Case("+proj=tmerc +lon_0=9 +k=0.9996 +x_0=5e5 +ellps=WGS84 +to_meter=0.5", (1e6, 1e7)),
    "towgs84-3": Case("+proj=tmerc +lon_0=9 +k=0.9996 +x_0=500000 +ellps=intl +towgs84=-87,-98,-121", (5e5, 5e6)),
    "towgs84-7": Case(
        "+proj=tmerc +lon_0=9 +k=0.9996 +x_0=500000 +ellps=bessel +towgs84=598.1,73.7,418.2,0.202,0.045,-2.455,6.7",
        (5e5, 5e6),
    ),
    "prime-meridian-paris": Case(
        "+proj=lcc +lat_1=46.8 +lat_0=46.8 +lon_0=0 +k_0=0.99987742 +x_0=600000 +y_0=2200000 +a=6378249.2 "
        "+b=6356515 +pm=paris",
        (6e5, 2.2e6),
    ),
    "geographic-custom-ellipsoid": Case("+proj=longlat +a=6378000 +rf=299", (2.0, 48.0)),
    "geographic-towgs84": Case("+proj=longlat +ellps=intl +towgs84=-87,-98,-121", (2.0, 48.0)),
    "geographic-epsg-4326": Case("EPSG:4326", (2.0, 48.0), "epsg"),
    "geographic-epsg-4807-grads": Case("EPSG:4807", (2.0, 48.0), "epsg"),
    "esri-pe-custom": Case(ESRI_TM, (5e5, 5e6), "citation", ESRI_PE),
    "esri-pe-state-plane-us-ft": Case(
        "+proj=lcc +lat_1=33 +lat_2=45 +lat_0=39 +lon_0=-96 +x_0=1000 +y_0=2000 +datum=NAD83 +units=us-ft",
        source="citation",
        options=ESRI_PE,
    ),
    "esri-pe-epsg": Case("EPSG:26910", (5e5, 5e6), "epsg", ESRI_PE),
}


@pytest.mark.parametrize("case", list(GDAL_CASES))
def test_gdal_written_crs_is_gdals(tmp_path: Path, case: str) -> None:
    spec = GDAL_CASES[case]
    pixel = 0.01 if spec.origin[1] < 90 else 100.0  # geographic rasters lie at (2, 48)
    transform = Affine(pixel, 0.0, spec.origin[0], 0.0, -pixel, spec.origin[1])
    path = write(tmp_path / f"{case}.tif", spec.crs, transform, **spec.options)
    header = parse(path)
    assert header.crs_source == spec.source
    if spec.source == "epsg":
        assert header.crs is not None and header.crs.startswith("EPSG:")
    else:
        assert CRS.from_wkt(header.crs).to_wkt() == header.crs  # WKT2, as pyproj writes it
    assert_same_crs(path, header)


def test_a_mars_crs_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "mars.tif", "+proj=eqc +a=3396190 +b=3376200", Affine(100.0, 0.0, 0.0, 0.0, -100.0, 0.0))
    with pytest.raises(UnsupportedTiffError, match="another body than the Earth") as info:
        parse(path)
    assert not isinstance(info.value, UnresolvedCRSError)  # no catalog CRS can make it placeable in CRS84
    assert info.value.uri == str(path)
    # ... nor through a fallback, nor from a catalog.
    with pytest.raises(UnsupportedTiffError, match="another body"):
        parse(path, fallback_crs="EPSG:4326")
    with pytest.raises(UnsupportedTiffError, match="another body"):
        resolve_catalog_crs("IAU_2015:49900")


def test_a_mars_esri_pe_string_is_refused(tmp_path: Path) -> None:
    mars = (
        'GEOGCS["GCS_Mars_2000",DATUM["D_Mars_2000",SPHEROID["Mars_2000_IAU_IAG",3396190.0,169.8944472236118]],'
        'PRIMEM["Reference_Meridian",0.0],UNIT["Degree",0.0174532925199433]]'
    )
    path = write_keys(tmp_path / "mars.tif", {1024: U, 3073: f"ESRI PE String = {mars}"}, (0.0, 0.0), 0.01)
    with pytest.raises(UnsupportedTiffError, match="another body"):
        parse(path)


# ------------------------------------------------------------------ hand-written key directories, GDAL as oracle

TM = {3075: 1, 3081: 0.0, 3080: 9.0, 3092: 0.9996, 3082: 500000.0, 3083: 0.0}
HAND_CASES: dict[str, tuple[dict[int, Any], tuple[float, float], str]] = {
    # ProjectionGeoKey: an EPSG conversion code under a user-defined PCS
    "projection-key-utm": ({1024: 1, 2048: 4326, 3072: U, 3074: 16031, 3076: 9001}, (5e5, 5e6), "geokeys"),
    "projection-key-spcs27-us-ft": ({1024: 1, 2048: 4267, 3072: U, 3074: 10406, 3076: 9003}, (6e6, 1.8e6), "geokeys"),
    "projection-key-in-metres": ({1024: 1, 2048: 4269, 3072: U, 3074: 10406, 3076: 9001}, (1.9e6, 6e5), "geokeys"),
    "projection-key-polar-south": ({1024: 1, 2048: 4326, 3072: U, 3074: 19992}, (-1e5, 1e5), "geokeys"),
    "projection-key-tm-south": ({1024: 1, 2048: 4148, 3072: U, 3074: 17529}, (-1e5, 3e6), "geokeys"),
    "projection-key-and-coord-trans": ({1024: 1, 2048: 4326, 3072: U, 3074: 16031, **TM}, (5e5, 5e6), "geokeys"),
    # linear units
    "linear-unit-size": ({1024: 1, 2048: 4326, 3072: U, 3076: U, 3077: 0.5, **TM, 3082: 1e6}, (1e6, 1e7), "geokeys"),
    "linear-unit-size-alone": ({1024: 1, 2048: 4326, 3072: U, 3077: 0.5, **TM, 3082: 1e6}, (1e6, 1e7), "geokeys"),
    "geog-linear-units-feet": ({1024: 1, 2048: 4326, 3072: U, 2052: 9002, **TM}, (5e5, 5e6), "geokeys"),
    "epsg-pcs-other-linear-unit": ({1024: 1, 3072: 2227, 3076: 9001}, (1.9e6, 6e5), "geokeys"),
    "epsg-pcs-same-linear-unit": ({1024: 1, 3072: 2227, 3076: 9003}, (6e6, 2e6), "epsg"),
    # angular units
    "radians": (
        {1024: 1, 2048: U, 2050: 6326, 2054: 9101, 3072: U, **TM, 3080: 0.15707963267948966},
        (5e5, 5e6),
        "geokeys",
    ),
    "grads": ({1024: 1, 2048: U, 2050: 6326, 2054: 9105, 3072: U, **TM, 3080: 10.0}, (5e5, 5e6), "geokeys"),
    "grads-paris-lcc": (
        {
            1024: 1,
            2048: U,
            2050: 6807,
            2051: 8903,
            2054: 9105,
            3072: U,
            3075: 9,
            3081: 52.0,
            3080: 0.0,
            3092: 0.99987742,
            3082: 6e5,
            3083: 2.2e6,
            3076: 9001,
        },
        (6e5, 2.2e6),
        "geokeys",
    ),
    "grads-hotine": (
        {
            1024: 1,
            2048: U,
            2050: 6326,
            2054: 9105,
            3072: U,
            3075: 3,
            3089: 50.0,
            3088: 10.0,
            3094: 40.0,
            3096: 45.0,
            3093: 0.999,
            3082: 5e5,
            3083: 1e5,
        },
        (5e5, 1e5),
        "geokeys",
    ),
    "geographic-grads-paris": ({1024: 2, 2048: U, 2050: 6807, 2051: 8903, 2054: 9105}, (2.0, 50.0), "geokeys"),
    "geographic-radians": ({1024: 2, 2048: U, 2050: 6326, 2054: 9101}, (0.03, 0.8), "geokeys"),
    "geographic-dms-prime-meridian": ({1024: 2, 2048: U, 2056: 7030, 2054: 9110, 2061: 2.2014}, (2.0, 50.0), "geokeys"),
    "geographic-user-prime-meridian": ({1024: 2, 2048: U, 2056: 7030, 2051: U, 2061: 2.5}, (2.0, 50.0), "geokeys"),
    "geographic-axes-only": ({1024: 2, 2048: U, 2057: 6378200.0, 2058: 6356800.0}, (2.0, 50.0), "geokeys"),
    # optional parameters take libgeotiff's defaults
    "tm-without-central-meridian": (
        {1024: 1, 2048: 4326, 3072: U, 3075: 1, 3092: 0.9996, 3082: 5e5},
        (5e5, 5e6),
        "geokeys",
    ),
    "mercator-without-scale": ({1024: 1, 2048: 4326, 3072: U, 3075: 7, 3080: 10.0}, (0.0, 5e6), "geokeys"),
    "mercator-origin-latitude": (
        {1024: 1, 2048: 4326, 3072: U, 3075: 7, 3080: 10.0, 3081: 30.0},
        (0.0, 5e6),
        "geokeys",
    ),
    # EPSG codes with other keys: GDAL builds from the keys and keeps the code when they agree
    "pcs-without-model": ({3072: 32633}, (5e5, 5e6), "epsg"),
    "pcs-with-its-gcs": ({1024: 1, 2048: 4326, 3072: 32633, 3076: 9001}, (5e5, 5e6), "epsg"),
    "pcs-with-another-gcs": ({1024: 1, 2048: 4267, 3072: 32633}, (5e5, 5e6), "geokeys"),
    "tm-on-epsg-gcs": ({1024: 1, 2048: 4269, 3072: U, **TM}, (5e5, 5e6), "geokeys"),
    "known-datum-drops-towgs84": ({1024: 2, 2048: U, 2050: 6230, 2062: [-87.0, -98.0, -121.0]}, (2.0, 50.0), "geokeys"),
}


@pytest.mark.parametrize("case", list(HAND_CASES))
def test_hand_written_keys_give_gdals_crs(tmp_path: Path, case: str) -> None:
    keys, origin, source = HAND_CASES[case]
    geographic = keys.get(1024) == 2
    path = write_keys(tmp_path / f"{case}.tif", keys, origin, 0.01 if geographic else 100.0)
    header = parse(path)
    assert header.crs_source == source
    assert_same_crs(path, header)


def test_conflicting_keys_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_keys(tmp_path / "conflict.tif", {1024: 1, 2048: 4267, 3072: 32633}, (5e5, 5e6))
    with caplog.at_level(logging.WARNING, logger="rasteret_core.tiff.geokeys"):
        parse(path)
        parse(path)  # memoised resolution, still one warning per file
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all(str(path) in m and "EPSG:32633" in m for m in messages)


def test_pixel_is_point_with_a_user_defined_crs(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "point.tif", {1024: 1, 1025: 2, 2048: 4326, 3072: U, **TM}, (5e5, 5e6))
    header = parse(path)
    with rasterio.open(path) as src:
        assert header.transform == tuple(src.transform)[:6]
    assert header.pixel_is_point and header.crs_source == "geokeys"


# ------------------------------------------------------------------ what cannot be resolved


def keys(**by_id: Any) -> GeoKeys:
    """GeoKeys as parse_geokeys gives them: ``k3075=1`` for a SHORT, ``k3081=(0.0,)`` for DOUBLEs, str for ASCII."""
    return GeoKeys({int(k.removeprefix("k")): v for k, v in by_id.items()})


@pytest.mark.parametrize(
    ("geokeys", "tag", "value"),
    [
        (keys(k1024=1, k2048=4326, k3072=U), "ProjectedCSTypeGeoKey", U),  # no projection at all
        (keys(k1024=1, k2048=4326, k3072=U, k3074=U), "ProjectionGeoKey", U),
        (keys(k1024=1, k2048=4326, k3072=U, k3074=1), "ProjectionGeoKey", 1),  # not a conversion code
        (keys(k1024=1, k2048=4326, k3072=U, k3075=2), "ProjCoordTransGeoKey", 2),  # Alaska: libgeotiff maps none
        (keys(k1024=1, k2048=4326, k3072=U, k3075=8, k3078=(33.0,), k3084=(-96.0,)), "ProjStdParallel2GeoKey", None),
        (keys(k1024=1, k2048=4326, k3072=U, k3075=11, k3079=(45.0,)), "ProjStdParallel1GeoKey", None),
        (keys(k1024=1, k2048=4326, k3072=U, k3075=15, k3080=(0.0,)), "ProjNatOriginLatGeoKey", None),
        (keys(k1024=1, k3072=U, k3075=1), "GeographicTypeGeoKey", None),  # GDAL would assume WGS 84
        (keys(k1024=1, k3072=1234), "ProjectedCSTypeGeoKey", 1234),
        (keys(k1024=2, k2048=1234), "GeographicTypeGeoKey", 1234),
        (keys(k1024=2, k2048=U), "GeographicTypeGeoKey", U),
        (keys(k1024=2, k2048=U, k2050=1), "GeogGeodeticDatumGeoKey", 1),
        (keys(k1024=2, k2048=U, k2056=1), "GeogEllipsoidGeoKey", 1),
        (keys(k1024=2, k2048=U, k2056=7030, k2051=1), "GeogPrimeMeridianGeoKey", 1),
        (keys(k1024=2, k2048=U, k2056=7030, k2054=1), "GeogAngularUnitsGeoKey", 1),
        (
            keys(
                k1024=1,
                k2048=4326,
                k3072=U,
                k3076=1,
                **{f"k{k}": (v,) if isinstance(v, float) else v for k, v in TM.items()},
            ),
            "ProjLinearUnitsGeoKey",
            1,
        ),
        (keys(k1024=1, k2048=4326, k3072=U, k3076=U, k3075=1), "ProjLinearUnitsGeoKey", U),  # no unit size
        (keys(k1024=2, k2048=U, k2056=7030, k2062=(1.0, 2.0)), "GeogTOWGS84GeoKey", (1.0, 2.0)),
        (keys(k1024=U), "GTModelTypeGeoKey", U),
        (keys(k1024=3, k2048=4326), "GTModelTypeGeoKey", 3),  # geocentric
        (keys(k1024=7, k2048=4326), "GTModelTypeGeoKey", 7),
        (keys(k1024=U, k3073="ESRI PE String = PROJCS[nonsense"), "ESRI PE String", "PROJCS[nonsense"),
    ],
)
def test_unresolvable_keys_name_the_key(geokeys: GeoKeys, tag: str, value: object) -> None:
    with pytest.raises(UnresolvedCRSError) as info:
        resolve_crs(geokeys, uri="mem://x.tif")
    assert (info.value.tag, info.value.value, info.value.uri) == (tag, value, "mem://x.tif")
    assert str(info.value).startswith("mem://x.tif: ")
    with pytest.raises(UnresolvedCRSError) as again:  # a memoised resolution still names each file
        resolve_crs(geokeys, uri="mem://y.tif")
    assert str(again.value).startswith("mem://y.tif: ")


def test_keys_without_a_crs_give_none() -> None:
    assert resolve_crs(GeoKeys()) is None
    assert resolve_crs(keys(k1025=1, k1026="a citation")) is None


@pytest.mark.parametrize(
    ("geokeys", "expected"),
    [
        (keys(k2048=4326), ("EPSG:4326", "epsg")),  # no model type: GDAL reads a LOCAL_CS; the GCS says it all
        (keys(k3072=32633), ("EPSG:32633", "epsg")),
        (keys(k1024=U, k3072=26910, k3073="ESRI PE String = PROJCS[...]"), ("EPSG:26910", "epsg")),  # GDAL ESRI_PE
        (keys(k1024=2, k2048=4979), (CRS.from_epsg(4979).to_2d().to_wkt(), "epsg")),  # a 3D code, read 2D
    ],
)
def test_codes(geokeys: GeoKeys, expected: tuple[str, str]) -> None:
    assert resolve_crs(geokeys) == expected


def test_esri_pe_string_in_gt_citation() -> None:
    # GDAL reads a PE string only from PCSCitationGeoKey; GTCitationGeoKey holds them too in the wild.
    crs, source = resolve_crs(keys(k1024=U, k1026=f"ESRI PE String = {ESRI_TM}|")) or ("", "")
    assert source == "citation"
    assert CRS.from_wkt(crs).equals(CRS.from_wkt(ESRI_TM))


def test_an_unresolvable_projection_falls_back_to_an_esri_pe_string() -> None:
    crs, source = resolve_crs(keys(k1024=1, k2048=4326, k3072=U, k3075=2, k3073=f"ESRI PE String = {ESRI_TM}")) or (
        "",
        "",
    )
    assert source == "citation" and CRS.from_wkt(crs).equals(CRS.from_wkt(ESRI_TM))


def test_geog_azimuth_units_are_honoured() -> None:
    hotine = {"k1024": 1, "k2048": 4326, "k3072": U, "k3075": 3, "k3089": (50.0,), "k3088": (10.0,), "k3096": (45.0,)}
    in_degrees = CRS(resolve_crs(keys(**hotine, k3094=(40.0,)))[0])  # type: ignore[index]
    in_grads = CRS(resolve_crs(keys(**hotine, k2060=9105, k3094=(40.0 / 0.9,)))[0])  # type: ignore[index]
    assert in_degrees.equals(in_grads)


# ------------------------------------------------------------------ parsing the directory


def test_parse_reads_short_double_and_ascii_values() -> None:
    directory = [1, 1, 0, 5,
                 1024, 0, 1, 1,
                 3075, 0, 1, 1,
                 3080, 34736, 1, 1,
                 2062, 34736, 3, 2,
                 3073, 34737, 6, 0,
                 ]  # fmt: skip
    geokeys = parse_geokeys(directory, [0.9996, 9.0, 1.0, 2.0, 3.0], b"hello|\0")
    assert geokeys.values == {1024: 1, 3075: 1, 3080: (9.0,), 2062: (1.0, 2.0, 3.0), 3073: "hello"}
    assert geokeys.short(3075) == 1 and geokeys.double(3080) == 9.0 and geokeys.ascii(3073) == "hello"
    assert geokeys.short(3080) is None and geokeys.double(3073) is None  # mistyped: ignored, as GDAL does
    assert geokeys.version == (1, 1, 0)


def test_parse_follows_libgeotiff_on_odd_ascii_and_repeated_keys() -> None:
    # A value ended by the tag's NUL instead of "|", a value running past the end (truncated), a repeated key.
    assert parse_geokeys([1, 1, 0, 1, 1026, 34737, 4, 0], ascii=b"abc\0").values == {1026: "abc"}
    assert parse_geokeys([1, 1, 0, 1, 1026, 34737, 9, 2], ascii=b"abcdef").values == {1026: "cdef"}
    assert parse_geokeys([1, 1, 0, 2, 1024, 0, 1, 1, 1024, 0, 1, 2]).values == {1024: 2}
    # SHORTs held in the directory itself.
    assert parse_geokeys([1, 1, 0, 1, 2062, 34735, 2, 8, 7, 9]).values == {2062: (7, 9)}


KEY_VALUES = st.one_of(
    st.integers(0, 65535),
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=7).map(tuple),
    st.text(st.sampled_from('abc XYZ=_[]",.09é°\n'), max_size=40),
)


@given(st.dictionaries(st.integers(1024, 5120), KEY_VALUES, max_size=12))
def test_parse_gives_back_the_keys_written(written: dict[int, int | tuple[float, ...] | str]) -> None:
    entries, doubles, ascii = [], [], b""
    for key, value in written.items():
        if isinstance(value, int):
            entries += [key, 0, 1, value]
        elif isinstance(value, tuple):
            entries += [key, 34736, len(value), len(doubles)]
            doubles += value
        else:
            raw = value.encode() + b"|"
            entries += [key, 34737, len(raw), len(ascii)]
            ascii += raw
    parsed = parse_geokeys([1, 1, 0, len(written), *entries], doubles, ascii + b"\0")
    assert parsed.values == written


@pytest.mark.parametrize(
    ("directory", "doubles", "ascii", "match"),
    [
        ([1, 1, 0], [], None, "at least 4"),
        ([1, 1, 0, 2, 1024, 0, 1, 1], [], None, "2 keys announced"),
        ([2, 1, 0, 0], [], None, "KeyDirectoryVersion 2"),
        ([1, 1, 0, 1, 1024, 0, 2, 1], [], None, "count 2"),
        ([1, 1, 0, 1, 3080, 34736, 1, 3], [1.0], None, "past GeoDoubleParams"),
        ([1, 1, 0, 1, 1026, 34737, 3, 0], [], None, "without a GeoAsciiParams"),
        ([1, 1, 0, 1, 1026, 34737, 3, 9], [], b"abc|", "past GeoAsciiParams"),
        ([1, 1, 0, 1, 2062, 34735, 3, 8], [], None, "past the directory"),
        ([1, 1, 0, 1, 1024, 33550, 1, 0], [], None, "tag 33550"),
    ],
)
def test_malformed_directories_are_unresolved(
    directory: list[int], doubles: list[float], ascii: bytes | None, match: str
) -> None:
    with pytest.raises(UnresolvedCRSError, match=match):
        parse_geokeys(directory, doubles, ascii, uri="mem://x.tif")


# ------------------------------------------------------------------ the catalog's CRS


ALASKA = {1024: 1, 2048: 4326, 3072: U, 3075: 2}  # a projection method libgeotiff does not map


def test_parse_header_takes_a_fallback_crs_only_when_the_keys_do_not_resolve(tmp_path: Path) -> None:
    unresolved = write_keys(tmp_path / "alaska.tif", ALASKA, (5e5, 5e6))
    with pytest.raises(UnresolvedCRSError, match="ProjCoordTransGeoKey=2"):
        parse(unresolved)
    wkt2 = CRS.from_epsg(32632).to_wkt()
    header = parse(unresolved, fallback_crs=wkt2)
    assert header.crs_source == "catalog" and CRS(header.crs).equals(CRS(wkt2))
    assert parse(unresolved, fallback_crs="EPSG:32632").crs == "EPSG:32632"
    projjson = json.dumps(CRS("+proj=tmerc +lon_0=9 +ellps=GRS80").to_json_dict())
    assert CRS(parse(unresolved, fallback_crs=projjson).crs).equals(CRS("+proj=tmerc +lon_0=9 +ellps=GRS80"))
    resolved = write_keys(tmp_path / "tm.tif", {1024: 1, 2048: 4326, 3072: U, **TM}, (5e5, 5e6))
    assert parse(resolved, fallback_crs=wkt2).crs_source == "geokeys"
    with pytest.raises(UnsupportedTiffError, match="not a CRS"):
        parse(unresolved, fallback_crs="not a crs")


def _records(path: Path, properties: dict[str, Any] | None = None) -> pa.Table:
    item = {
        "type": "Feature",
        "id": path.stem,
        "geometry": {"type": "Point", "coordinates": [9.0, 45.0]},
        "properties": {"datetime": "2024-01-01T00:00:00Z", **(properties or {})},
        "assets": {"data": {"href": str(path), "type": "image/tiff; application=geotiff", "roles": ["data"]}},
    }
    return rc.engine.records_from_items([item])


def _enriched_header(table: pa.Table) -> tuple[dict[str, Any] | None, tuple[rc.engine.HeaderFailure, ...]]:
    result = rc.engine.enrich_records(table, settings=rc.Settings.from_env({}))
    return result.table.column("assets")[0].as_py()["data"]["header"], result.failures


def test_enrichment_falls_back_to_the_records_proj_wkt2(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "alaska.tif", ALASKA, (5e5, 5e6))
    wkt2 = CRS("+proj=tmerc +lon_0=-150 +k=0.9999 +ellps=clrk66").to_wkt()
    header, failures = _enriched_header(_records(path, {"proj:wkt2": wkt2}))
    assert not failures and header is not None
    assert header["crs_source"] == "catalog" and CRS(header["crs"]).equals(CRS(wkt2))


def test_enrichment_falls_back_to_proj_projjson_in_properties_or_columns(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "alaska.tif", ALASKA, (5e5, 5e6))
    projjson = CRS("+proj=tmerc +lon_0=-150 +k=0.9999 +ellps=clrk66").to_json_dict()
    bare = _records(path)  # the catalog says nothing: the failure stands
    header, failures = _enriched_header(bare)
    assert header is None and len(failures) == 1 and "ProjCoordTransGeoKey=2" in failures[0].error

    in_properties = bare.set_column(
        bare.schema.get_field_index("properties"), "properties", pa.array([json.dumps({"proj:projjson": projjson})])
    )
    header, failures = _enriched_header(in_properties)
    assert not failures and header is not None and header["crs_source"] == "catalog"
    assert CRS(header["crs"]).equals(CRS.from_json_dict(projjson))

    as_column = bare.append_column("proj:projjson", pa.array([json.dumps(projjson)]))
    header, failures = _enriched_header(as_column)
    assert not failures and header is not None and CRS(header["crs"]).equals(CRS.from_json_dict(projjson))


def test_enrichment_keeps_the_failure_when_the_catalog_crs_is_unusable(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "alaska.tif", ALASKA, (5e5, 5e6))
    header, failures = _enriched_header(_records(path, {"proj:code": "IAU_2015:49900"}))
    assert header is None and len(failures) == 1 and "another body" in failures[0].error
