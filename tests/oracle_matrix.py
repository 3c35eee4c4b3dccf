"""Write the oracle matrix: small GeoTIFFs covering every encoding and layout Rasteret reads.

The axes (codec, dtype, predictor, bands, interleave, block layout, byte order,
BigTIFF, overviews, nodata, sparse tiles, PixelIsPoint, georeferencing) are far
too many for their full product, so :func:`matrix` picks a pairwise covering
set: every feasible pair of values of two axes appears in at least one file.
The choice is greedy and seeded, so the list is the same on every run. A few
extra files carry what the tests must refuse (12-bit and complex samples) or
cannot place (no georeferencing), 1-bit samples, and an RGBA file whose binary
alpha LERC stores as its mask.

Every file is written by GDAL (through rasterio), the oracle the tests compare
Rasteret's reads with. Content is a smooth field plus noise, different per
band; nodata files hold a blob of nodata; sparse files leave some blocks empty.

Run as a script to write the files::

    python tests/oracle_matrix.py OUTDIR
"""

from __future__ import annotations

import itertools
import math
import random
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AXES", "Case", "content", "main", "matrix", "write_case", "write_matrix"]

CODECS = (
    "none", "deflate", "lzw", "packbits", "lzma", "zstd",
    "jpeg", "jpeg_ycbcr", "webp", "webp_lossless",
    "lerc", "lerc_deflate", "lerc_zstd", "lerc_lossy",
)  # fmt: skip
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float16", "float32", "float64")
# name -> (tile width, tile height), or (None, rows per strip; None = one strip)
BLOCKS: dict[str, tuple[int | None, int | None]] = {
    "tile16": (16, 16),
    "tile32": (32, 32),
    "tile48x16": (48, 16),
    "tile256": (256, 256),
    "tile512": (512, 512),
    "strip1": (None, 1),
    "strip13": (None, 13),
    "strip_all": (None, None),
}
# block -> wanted image size (width, height), before the byte budget shrinks it
_WANTED_SIZE = {
    "tile16": (150, 107),
    "tile32": (233, 170),
    "tile48x16": (203, 91),
    "tile256": (700, 500),
    "tile512": (1100, 700),
    "strip1": (123, 71),
    "strip13": (311, 203),
    "strip_all": (260, 190),
}
RAW_BUDGET = 250_000  # bytes of raw pixels per file (full resolution), at most

AXES: dict[str, tuple[Any, ...]] = {
    "codec": CODECS,
    "dtype": DTYPES,
    "predictor": (1, 2, 3),
    "bands": (1, 3, 4),
    "interleave": ("pixel", "band"),
    "block": tuple(BLOCKS),
    "endian": ("little", "big"),
    "bigtiff": (False, True),
    "overviews": ("none", "internal", "cog"),
    "nodata": ("none", "value", "nan"),
    "sparse": (False, True),
    "point": (False, True),
    "georef": ("utm", "geographic", "mercator", "rotated"),
}


def _pixel_bytes(dtype: str, bands: int) -> int:
    return bands * np.dtype(dtype).itemsize


def _tile_bytes(block: str, dtype: str, bands: int) -> int:
    tw, th = BLOCKS[block]
    return (tw or 0) * (th or 0) * _pixel_bytes(dtype, bands)


_UNCOMPRESSED = ("none", "packbits")
_IMAGE_CODECS_8BIT = ("jpeg", "jpeg_ycbcr", "webp", "webp_lossless")
_LOSSY = ("jpeg", "jpeg_ycbcr", "webp", "lerc_lossy")
_PREDICTOR_CODECS = ("deflate", "lzw", "zstd")  # GDAL writes predictors only with these (not LZMA)

# (axes, predicate over their values): what GDAL can write and what the oracle can compare.
_RULES: tuple[tuple[tuple[str, ...], Callable[..., bool]], ...] = (
    (("codec", "dtype"), lambda c, d: c not in _IMAGE_CODECS_8BIT or d == "uint8"),
    (("codec", "dtype"), lambda c, d: not c.startswith("lerc") or d != "float16"),  # GDAL 3.10 crashes
    (("codec", "predictor"), lambda c, p: p == 1 or c in _PREDICTOR_CODECS),
    (("dtype", "predictor"), lambda d, p: p != 3 or d.startswith("float")),
    (("dtype", "nodata"), lambda d, n: n != "nan" or d.startswith("float")),
    # lossy 8-bit codecs smear nodata into its neighbours: GDAL's nodata mask would differ by codec
    (("codec", "nodata"), lambda c, n: c not in _IMAGE_CODECS_8BIT or n == "none"),
    (("codec", "bands"), lambda c, b: c != "jpeg_ycbcr" or b == 3),
    (("codec", "bands"), lambda c, b: not c.startswith("webp") or b in (3, 4)),  # libtiff WebP: RGB(A)
    (("codec", "interleave"), lambda c, i: c not in ("jpeg_ycbcr", "webp", "webp_lossless") or i == "pixel"),
    (("overviews", "block"), lambda o, b: o != "cog" or b in ("tile256", "tile512")),  # BLOCKSIZE >= 128
    (("overviews", "codec"), lambda o, c: o != "cog" or c != "packbits"),
    # COG overviews are whole 512 x 512 tiles of odd padding: keep them for 1 and 2-byte pixels
    (
        ("overviews", "block", "dtype", "bands"),
        lambda o, k, d, b: o != "cog" or k != "tile512" or _pixel_bytes(d, b) <= 2,
    ),
    (("overviews", "endian"), lambda o, e: o != "cog" or e == "little"),
    (("overviews", "interleave", "bands"), lambda o, i, b: o != "cog" or i == "pixel" or b == 1),
    (("overviews", "codec", "bands"), lambda o, c, b: o != "cog" or c != "jpeg" or b != 4),  # alpha -> mask
    (("sparse", "block"), lambda s, b: not s or b not in ("tile512", "strip_all")),  # needs several blocks
    (("sparse", "dtype"), lambda s, d: not s or d != "float16"),  # GDAL writes every float16 block
    # uncompressed tiles are stored whole: keep one tile of a small image within the byte budget
    (("codec", "block", "dtype", "bands"), lambda c, k, d, b: c not in _UNCOMPRESSED or _tile_bytes(k, d, b) <= 2**16),
    (("codec", "block"), lambda c, b: not c.startswith("jpeg") or b not in ("strip1", "strip13")),  # 8/16-row MCUs
)

NODATA: dict[str, float] = {
    "uint8": 0,
    "int8": -128,
    "uint16": 65535,
    "int16": -9999,
    "uint32": 4294967295,
    "int32": -2147483648,
    "float16": -1000.0,
    "float32": -9999.0,
    "float64": -1e30,
}
_RANGES: dict[str, tuple[float, float]] = {  # where the content lives, per dtype
    "uint8": (5, 250),
    "int8": (-120, 120),
    "uint16": (100, 65000),
    "int16": (-32000, 32000),
    "uint32": (1000, 4.2e9),
    "int32": (-2.1e9, 2.1e9),
    "float16": (-500, 1500),
    "float32": (-500, 1500),
    "float64": (-1e6, 1e6),
}
LERC_MAX_Z_ERROR = {"int": 2.0, "float": 0.05}
JPEG_QUALITY = 85
WEBP_LEVEL = 80
OVERVIEW_FACTORS = (2, 4)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One file of the matrix: its axis values and everything derived from them.

    ``expect`` names the (tag, value) an UnsupportedTiffError must carry for files
    Rasteret refuses; ``tolerance`` and ``overview_tolerance`` bound the difference
    from GDAL's read ((0, 0): exact).
    """

    name: str
    codec: str
    dtype: str
    predictor: int = 1
    bands: int = 1
    interleave: str = "pixel"
    block: str = "tile256"
    endian: str = "little"
    bigtiff: bool = False
    overviews: str = "none"
    nodata: str = "none"
    sparse: bool = False
    point: bool = False
    georef: str = "utm"
    nbits: int | None = None
    binary_alpha: bool = False  # band 4 only 0 or 255: libtiff stores it as the LERC mask
    expect: tuple[str, object] | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.tif"

    @property
    def tiled(self) -> bool:
        return BLOCKS[self.block][0] is not None

    @property
    def size(self) -> tuple[int, int]:
        """Image (width, height): multi-block, not a multiple of the block, within the byte budget."""
        width, height = _WANTED_SIZE[self.block]
        tw, th = BLOCKS[self.block]
        pixel_bytes = self.bands * np.dtype(self.dtype).itemsize
        scale = min(1.0, math.sqrt(RAW_BUDGET / (width * height * pixel_bytes)))
        width, height = max(int(width * scale), 24), max(int(height * scale), 24)
        if tw is not None and self.codec in _UNCOMPRESSED:  # whole tiles are stored: count their padding
            def padded() -> int:
                return math.ceil(width / tw) * tw * math.ceil(height / th) * th * pixel_bytes

            while width > tw * (2 if self.sparse else 1) and padded() > RAW_BUDGET:
                width, height = int(width * 0.9), int(height * 0.9)
        if tw is not None and self.sparse:  # a checkerboard of empty blocks needs two blocks at least
            width = max(width, tw + tw // 3)
        if tw is not None and width % tw == 0:
            width += 3
        if th is not None and height % th == 0:
            height += 3
        return width, height

    @property
    def nodata_value(self) -> float | None:
        if self.nodata == "none":
            return None
        return math.nan if self.nodata == "nan" else NODATA[self.dtype]

    @property
    def ycbcr(self) -> bool:
        """JPEG in YCbCr: asked for, or chosen by the COG driver for RGB."""
        return self.codec == "jpeg_ycbcr" or (self.codec == "jpeg" and self.overviews == "cog" and self.bands == 3)

    @property
    def max_z_error(self) -> float:
        if self.codec != "lerc_lossy":
            return 0
        return LERC_MAX_Z_ERROR["float" if self.dtype.startswith("float") else "int"]

    @property
    def tolerance(self) -> tuple[float, float]:
        """Largest (per-pixel, mean) difference from GDAL's decode at full resolution.

        Lossless codecs, and the lossy ones whose bitstream one library decodes on
        both sides (WebP, LERC), and JPEG without YCbCr (libjpeg 9 in GDAL and
        libjpeg-turbo in imagecodecs share the integer IDCT): exact. JPEG YCbCr:
        libjpeg 9 upsamples chroma in the DCT domain, block by block, libjpeg-turbo
        with a triangle filter across blocks; they differ at 16-pixel MCU edges,
        by up to 9 levels on this content.
        """
        return (12, 1.0) if self.ycbcr else (0, 0)

    @property
    def overview_tolerance(self) -> tuple[float, float]:
        """As :attr:`tolerance`, for overviews: a reduced image has more chroma per MCU,
        so the upsampling differences at MCU edges grow (up to 25 levels, 2.8 on average here)."""
        return (32, 3.0) if self.ycbcr else (0, 0)


def _ok(partial: Mapping[str, Any], axis: str | None = None) -> bool:
    """Whether ``partial`` breaks no rule over axes it sets (only rules on ``axis``, if given)."""
    rules = _RULES if axis is None else _RULES_BY_AXIS[axis]
    return all(rule(*(partial[a] for a in axes)) for axes, rule in rules if all(a in partial for a in axes))


_RULES_BY_AXIS = {axis: tuple(r for r in _RULES if axis in r[0]) for axis in AXES}


def _complete(fixed: Mapping[str, Any], rng: random.Random, tries: int = 30) -> dict[str, Any] | None:
    """A random full assignment of the axes holding ``fixed``, or None if none was found."""
    if not _ok(fixed):
        return None
    for _ in range(tries):
        case = dict(fixed)
        for axis, values in AXES.items():
            if axis not in case:
                options = [v for v in values if _ok({**case, axis: v}, axis)]
                if not options:
                    break
                case[axis] = rng.choice(options)
        else:
            return case
    return None


def _pairs(case: Mapping[str, Any]) -> set[tuple[int, int, int, int]]:
    names = list(AXES)
    idx = [(i, AXES[n].index(case[n])) for i, n in enumerate(names)]
    return {(a, va, b, vb) for (a, va), (b, vb) in itertools.combinations(idx, 2)}


@lru_cache(maxsize=1)
def matrix(seed: int = 3, candidates: int = 40) -> tuple[Case, ...]:
    """The oracle matrix: a seeded greedy pairwise covering set, then the refused files.

    Args:
        seed: Seed of the candidate draws (the list is deterministic for a seed).
        candidates: Random completions scored per pick.
    """
    rng = random.Random(seed)
    names = list(AXES)
    uncovered: set[tuple[int, int, int, int]] = set()
    for (a, an), (b, bn) in itertools.combinations(enumerate(names), 2):
        for va, vb in itertools.product(range(len(AXES[an])), range(len(AXES[bn]))):
            if _complete({an: AXES[an][va], bn: AXES[bn][vb]}, rng) is not None:
                uncovered.add((a, va, b, vb))
    chosen: list[dict[str, Any]] = []
    while uncovered:
        a, va, b, vb = min(uncovered)
        fixed = {names[a]: AXES[names[a]][va], names[b]: AXES[names[b]][vb]}
        draws = [c for c in (_complete(fixed, rng) for _ in range(candidates)) if c is not None]
        best = max(draws, key=lambda c: len(_pairs(c) & uncovered))
        uncovered -= _pairs(best)
        chosen.append(best)
    cases = [Case(name=_name(i, c), **c) for i, c in enumerate(chosen)]
    n = len(cases)
    cases += [
        Case(name=f"{n:03d}_nogeo_deflate_uint16", codec="deflate", dtype="uint16", predictor=2, bands=3,
             block="tile32", georef="none"),
        Case(name=f"{n + 1:03d}_nogeo_strip_float32", codec="lzw", dtype="float32", predictor=3, block="strip13",
             georef="none", overviews="internal"),
        Case(name=f"{n + 2:03d}_lerc_rgba_alpha_mask", codec="lerc", dtype="uint8", bands=4, block="tile32",
             binary_alpha=True),
        Case(name=f"{n + 3:03d}_1bit", codec="none", dtype="uint8", nbits=1, block="strip13"),
        Case(name=f"{n + 4:03d}_refused_12bit", codec="deflate", dtype="uint16", nbits=12, block="tile32",
             expect=("BitsPerSample", 12)),
        Case(name=f"{n + 5:03d}_refused_complex64", codec="none", dtype="complex64", block="tile32",
             expect=("SampleFormat", 6)),
    ]  # fmt: skip
    return tuple(cases)


def _name(index: int, c: Mapping[str, Any]) -> str:
    parts = [
        f"{index:03d}", c["codec"], c["dtype"], f"p{c['predictor']}", f"{c['bands']}{c['interleave']}", c["block"],
        "be" if c["endian"] == "big" else "le", "big" if c["bigtiff"] else "classic", f"ov-{c['overviews']}",
        f"nd-{c['nodata']}", "sparse" if c["sparse"] else "dense", "point" if c["point"] else "area", c["georef"],
    ]  # fmt: skip
    return "_".join(parts)


def _georeferencing(case: Case) -> dict[str, Any]:
    from rasterio.transform import Affine

    if case.georef == "none":
        return {}
    crs, transform = {
        "utm": ("EPSG:32632", Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_100_000.0)),
        "geographic": ("EPSG:4326", Affine(0.00012, 0.0, 11.0, 0.0, -0.0001, 46.0)),
        "mercator": ("EPSG:3857", Affine(30.0, 0.0, 1_200_000.0, 0.0, -20.0, 5_800_000.0)),
        "rotated": ("EPSG:32632", Affine(9.0, 2.5, 600_000.0, 1.5, -10.0, 5_100_000.0)),
    }[case.georef]
    return {"crs": crs, "transform": transform}


def content(case: Case) -> np.ndarray:
    """The pixels of ``case``, ``[band, row, col]`` in the dtype GDAL is given.

    Float16 files are written as float32 values already rounded to float16
    (GDAL stores them with NBITS=16).
    """
    width, height = case.size
    rng = np.random.default_rng(_seed_of(case.name))
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    bands = []
    for b in range(case.bands):
        waves = np.sin(x / (9 + 4 * b) + b) * np.cos(y / (13 + 3 * b) - b)
        smooth = 0.5 + 0.25 * waves + 0.2 * (x / width - y / height)
        noise = rng.normal(0.0, 0.01 if case.codec in _LOSSY else 0.03, (height, width))
        bands.append(np.clip(smooth + noise, 0.0, 1.0))
    unit = np.stack(bands)
    if case.dtype == "complex64":
        return (unit * 100 + 1j * unit).astype(np.complex64)
    lo, hi = _RANGES[case.dtype]
    if case.nbits is not None:
        lo, hi = 0, 2**case.nbits - 1
    values = lo + unit * (hi - lo)
    dtype = np.dtype(case.dtype)
    if dtype.kind == "f":
        values = values.astype(dtype).astype(np.float32 if dtype.itemsize == 2 else dtype)
    else:
        values = np.round(values).astype(dtype)
    if case.binary_alpha:
        values[3] = np.where(values[3] > 127, 255, 0)
    elif case.dtype == "uint8" and case.bands == 4:
        values[3] = np.maximum(values[3], 16)  # GDAL takes band 4 as alpha: keep every pixel valid
    fill = case.nodata_value
    if fill is not None:
        blob = ((x - 0.3 * width) / (0.15 * width)) ** 2 + ((y - 0.6 * height) / (0.2 * height)) ** 2 < 1
        values[:, blob] = fill
    if case.sparse:
        tw, th = BLOCKS[case.block]
        tw = tw or width
        th = th or height
        rows, cols = y.astype(int) // th, x.astype(int) // tw
        values[:, (rows + cols) % 2 == 1] = 0 if fill is None else fill  # a checkerboard of empty blocks
    return values


def _seed_of(name: str) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(name))


def _gtiff_options(case: Case) -> dict[str, Any]:
    tw, th = BLOCKS[case.block]
    opts: dict[str, Any] = {"interleave": case.interleave}
    if tw is None:
        opts.update(tiled=False, blockysize=th or case.size[1])
    else:
        opts.update(tiled=True, blockxsize=tw, blockysize=th)
    codec = {"jpeg_ycbcr": "jpeg", "webp_lossless": "webp", "lerc_lossy": "lerc"}.get(case.codec, case.codec)
    opts["compress"] = codec
    if case.predictor != 1:
        opts["predictor"] = case.predictor
    if case.codec == "jpeg_ycbcr":
        opts["photometric"] = "YCBCR"
    if codec == "jpeg":
        opts["jpeg_quality"] = JPEG_QUALITY
    if case.codec == "webp":
        opts["webp_level"] = WEBP_LEVEL
    if case.codec == "webp_lossless":
        opts["webp_lossless"] = True
    if case.codec == "lerc_lossy":
        opts["max_z_error"] = case.max_z_error
    if case.dtype == "float16":
        opts["nbits"] = 16
    if case.nbits is not None:
        opts["nbits"] = case.nbits
    if case.endian == "big":
        opts["endianness"] = "BIG"
    if case.bigtiff:
        opts["bigtiff"] = "YES"
    if case.sparse:
        opts["sparse_ok"] = True
    return opts


def _cog_options(case: Case) -> dict[str, Any]:
    codec = {"jpeg_ycbcr": "jpeg", "webp_lossless": "webp", "lerc_lossy": "lerc"}.get(case.codec, case.codec)
    opts: dict[str, Any] = {
        "BLOCKSIZE": BLOCKS[case.block][0],
        "COMPRESS": codec.upper(),
        "OVERVIEW_COUNT": len(OVERVIEW_FACTORS),
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "YES" if case.bigtiff else "NO",
    }
    if case.predictor != 1:
        opts["PREDICTOR"] = {2: "STANDARD", 3: "FLOATING_POINT"}[case.predictor]
    if codec == "jpeg":
        opts["QUALITY"] = JPEG_QUALITY
    if case.codec == "webp":
        opts["QUALITY"] = WEBP_LEVEL
    if case.codec == "webp_lossless":
        opts["QUALITY"] = 100  # lossless WebP in the COG driver
    if case.codec == "lerc_lossy":
        opts["MAX_Z_ERROR"] = case.max_z_error
        opts["MAX_Z_ERROR_OVERVIEW"] = case.max_z_error
    if case.dtype == "float16":
        opts["NBITS"] = 16
    if case.sparse:
        opts["SPARSE_OK"] = "TRUE"
    return opts


def write_case(case: Case, outdir: Path) -> Path:
    """Write the file of ``case`` into ``outdir`` with GDAL; return its path."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning

    path = Path(outdir) / case.filename
    data = content(case)
    width, height = case.size
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": case.bands,
        "dtype": "float32" if case.dtype == "float16" else case.dtype,
        "nodata": case.nodata_value,
        **_georeferencing(case),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if case.overviews == "cog":
            with rasterio.MemoryFile() as mem:
                with mem.open(**profile, interleave="pixel", tiled=True) as src:
                    src.write(data)
                    if case.point:
                        src.update_tags(AREA_OR_POINT="Point")
                with mem.open() as src:
                    rasterio.shutil.copy(src, path, driver="COG", **_cog_options(case))
            return path
        with rasterio.open(path, "w", **profile, **_gtiff_options(case)) as dst:
            dst.write(data)
            if case.point:
                dst.update_tags(AREA_OR_POINT="Point")
        if case.overviews == "internal":
            # GDAL tiles the overviews of a striped file, 128 x 128 unless told: keep them small
            config = {} if case.tiled else {"GDAL_TIFF_OVR_BLOCKSIZE": "64"}
            with rasterio.Env(**config), rasterio.open(path, "r+") as dst:
                dst.build_overviews(list(OVERVIEW_FACTORS), Resampling.average)
    return path


def write_matrix(outdir: str | Path, cases: Sequence[Case] | None = None) -> list[Path]:
    """Write every file of the matrix (or of ``cases``) into ``outdir``; return their paths."""
    root = Path(outdir)
    root.mkdir(parents=True, exist_ok=True)
    return [write_case(case, root) for case in (matrix() if cases is None else cases)]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python tests/oracle_matrix.py OUTDIR``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python tests/oracle_matrix.py OUTDIR\n")
        return 2
    paths = write_matrix(args[0])
    total = sum(p.stat().st_size for p in paths)
    sys.stdout.write(f"wrote {len(paths)} files ({total / 1e6:.1f} MB) to {args[0]}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
