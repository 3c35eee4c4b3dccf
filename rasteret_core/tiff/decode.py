"""Decode TIFF tiles (and strips) on the CPU, to the pixels GDAL reads.

:func:`decode_tile` turns the bytes of one tile into a native-byte-order array
``[sample, row, column]`` of the full tile size; :func:`check_supported` tells at
plan time whether an image can be decoded at all.

Codecs come from imagecodecs, except JPEG with YCbCr samples (PHOTOMETRIC=YCBCR).
Those tiles decode with IJG libjpeg 9f, bundled by PyPI ``jpeglib``: the libjpeg
in rasterio's wheels (``libjpeg.so.9.6.0``), so they match GDAL exactly. libjpeg-turbo
(imagecodecs) differs there by tens of grey levels: for subsampled chroma IJG libjpeg 7
and later scale the chroma IDCT up (16x16 for 2x2 subsampling) where libjpeg-turbo
upsamples with a triangle filter, and even without subsampling its YCbCr to RGB
conversion differs by 1. A GDAL built on libjpeg-turbo (as some Linux distributions
ship it) gives libjpeg-turbo's pixels, not these. RGB and greyscale JPEG decode with
libjpeg-turbo, whose 8x8 integer IDCT gives IJG libjpeg 9's pixels.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import imagecodecs
import numpy as np

from rasteret_core.errors import DecodeError, UnsupportedTiffError

from .header import ByteOrder, ImageInfo

__all__ = ["check_supported", "decode_tile"]

logger = logging.getLogger(__name__)

# TIFF compression code -> imagecodecs codec that decodes it.
_BYTE_CODECS = {  # these return bytes, unpacked here (and un-predicted)
    1: "NONE",
    5: "LZW",
    8: "DEFLATE",
    32946: "DEFLATE",  # the old code for deflate
    32773: "PACKBITS",
    34925: "LZMA",
    50000: "ZSTD",  # GDAL's code
}
_IMAGE_CODECS = {  # these return pixels
    7: "JPEG8",
    34712: "JPEG2K",
    34887: "LERC",  # also LERC_DEFLATE / LERC_ZSTD: lerc_decode detects the outer codec
    50001: "WEBP",
    50002: "JPEGXL",  # GDAL's code
}
_BITS_READ = (1, 8, 16, 32, 64)  # 1-bit (masks, bilevel images) unpacks to uint8 0/1, as GDAL reads it
_NATIVE_ORDER: ByteOrder = "<" if sys.byteorder == "little" else ">"


def check_supported(image: ImageInfo, *, uri: str) -> None:
    """Raise if :func:`decode_tile` cannot decode ``image`` (call at plan time).

    Raises:
        UnsupportedTiffError: Naming the tag (Compression, Predictor, BitsPerSample,
            SampleFormat, PhotometricInterpretation) and the value Rasteret does not read.
    """
    bits, sample_format, compression, predictor = (
        image.bits_per_sample,
        image.sample_format,
        image.compression,
        image.predictor,
    )
    if sample_format not in (1, 2, 3):
        raise UnsupportedTiffError(
            "only integer and float samples are read", uri=uri, tag="SampleFormat", value=sample_format
        )
    if bits == 1 and (sample_format != 1 or compression in _IMAGE_CODECS or predictor != 1):
        raise UnsupportedTiffError(
            "1-bit samples are read unsigned, without a predictor or an image codec",
            uri=uri, tag="BitsPerSample", value=bits,
        )
    if bits not in _BITS_READ or (sample_format == 3 and bits == 8):
        raise UnsupportedTiffError(
            "only 1, 8, 16, 32 and 64-bit samples are read", uri=uri, tag="BitsPerSample", value=bits
        )
    name = _BYTE_CODECS.get(compression) or _IMAGE_CODECS.get(compression)
    if name is None:
        raise UnsupportedTiffError("unknown compression", uri=uri, tag="Compression", value=compression)
    if name != "NONE" and not getattr(imagecodecs, name).available:
        raise UnsupportedTiffError(
            f"this imagecodecs build lacks the {name} codec", uri=uri, tag="Compression", value=compression
        )
    if compression in _IMAGE_CODECS:
        if predictor != 1:
            raise UnsupportedTiffError(
                f"a predictor with {name} compression", uri=uri, tag="Predictor", value=predictor
            )
        if compression in (7, 50001) and (bits != 8 or sample_format != 1):
            raise UnsupportedTiffError(
                f"{name} compression of samples other than 8-bit unsigned", uri=uri, tag="BitsPerSample", value=bits
            )
    elif predictor not in (1, 2, 3):
        raise UnsupportedTiffError("unknown predictor", uri=uri, tag="Predictor", value=predictor)
    elif predictor == 3 and sample_format != 3:
        raise UnsupportedTiffError(
            "the floating-point predictor on integer samples", uri=uri, tag="Predictor", value=predictor
        )
    if image.photometric == 6 and compression != 7:
        raise UnsupportedTiffError(
            "YCbCr samples without JPEG compression", uri=uri, tag="PhotometricInterpretation", value=6
        )


def decode_tile(
    data: bytes, image: ImageInfo, *, byte_order: ByteOrder, uri: str, tile: int, offset: int | None = None
) -> np.ndarray:
    """Decode the bytes of one tile (or strip) of ``image``.

    Args:
        data: The tile's bytes as stored (not empty: sparse tiles are the caller's).
        image: The image the tile belongs to.
        byte_order: The file's byte order, ``"<"`` or ``">"``.
        uri: The file, for errors.
        tile: The tile's index in the image's tile tables, for errors.
        offset: Where the tile's bytes start in the file, for errors.

    Returns:
        A native-byte-order array ``[sample, row, column]`` of shape
        ``(samples_per_pixel, tile_height, tile_width)`` for chunky images and
        ``(1, tile_height, tile_width)`` (the one sample the tile holds) for planar
        ones. Rows the data does not hold (a short last strip) are 0. JPEG
        YCbCr tiles come back as RGB, as GDAL reads them. 1-bit samples (rows padded
        to whole bytes, most significant bit first) come back as uint8 0/1.

    Raises:
        UnsupportedTiffError: The image uses a codec, predictor or sample type not read.
        DecodeError: The codec failed, or the data does not fit the tile.
    """
    check_supported(image, uri=uri)
    samples = image.samples_per_pixel if image.planar_config == 1 else 1
    shape = (image.tile_height, image.tile_width, samples)
    row_bytes = -(-image.tile_width * samples * image.bits_per_sample // 8)
    decoded: np.ndarray

    def failure(message: str) -> DecodeError:
        return DecodeError(message, uri=uri, tile=tile, codec=image.compression, offset=offset)

    try:
        if image.compression in _IMAGE_CODECS:
            decoded = _IMAGE_DECODERS[image.compression](data, image, samples, byte_order)
        elif image.compression == 1:
            decoded = np.frombuffer(data, np.uint8)
        else:
            # Straight into an aligned buffer of its own: the codec returns the part it filled,
            # which the predictor then undoes in place (no copy of the tile's pixels).
            codec: Callable[..., np.ndarray] = getattr(imagecodecs, _BYTE_CODECS[image.compression].lower() + "_decode")
            decoded = codec(data, out=np.empty(row_bytes * image.tile_height, np.uint8))
    except Exception as exc:  # imagecodecs raises RuntimeError subclasses, ValueError on bad input
        raise failure(f"{type(exc).__name__}: {exc}") from exc

    if image.compression in _IMAGE_CODECS:
        pixels = decoded[..., np.newaxis] if decoded.ndim == 2 else decoded
        fits = pixels.ndim == 3 and pixels.shape[1:] == shape[1:] and 0 < pixels.shape[0] <= shape[0]
        if not fits or pixels.dtype != image.dtype:
            raise failure(f"decoded {decoded.dtype} pixels of shape {decoded.shape}, expected {image.dtype} of {shape}")
    else:
        rows = min(len(decoded) // row_bytes, image.tile_height)
        if rows == 0 or (rows < image.tile_height and len(decoded) % row_bytes):
            raise failure(f"decoded {len(decoded)} bytes, not whole rows of {row_bytes} bytes (tile {shape})")
        pixels = _unpack(decoded, image, (rows, *shape[1:]), byte_order, row_bytes)

    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    if pixels.shape[0] == image.tile_height:
        return pixels.transpose(2, 0, 1)  # a view: [sample, row, column]
    out = np.empty((samples, image.tile_height, image.tile_width), image.dtype)
    out[:, : pixels.shape[0]] = pixels.transpose(2, 0, 1)
    out[:, pixels.shape[0] :] = 0
    return out


def _unpack(
    buffer: np.ndarray, image: ImageInfo, shape: tuple[int, int, int], byte_order: ByteOrder, row_bytes: int
) -> np.ndarray:
    """View ``buffer`` as pixels ``[row, column, sample]`` and undo the predictor."""
    count = int(np.prod(shape))
    if image.bits_per_sample == 1:
        rows = np.frombuffer(buffer, np.uint8, shape[0] * row_bytes).reshape(shape[0], row_bytes)
        bits = np.unpackbits(rows, axis=1, count=shape[1] * shape[2])
        return bits.reshape(shape)
    if image.predictor == 3:
        # The floating-point predictor shuffles bytes itself: view them raw, as tifffile does.
        shuffled = np.frombuffer(buffer, image.dtype, count).reshape(shape)
        return imagecodecs.floatpred_decode(shuffled, axis=-2)
    pixels = np.frombuffer(buffer, image.dtype.newbyteorder(byte_order), count).reshape(shape)
    if image.predictor == 2:
        # Horizontal differencing works on the bit patterns (as libtiff does, also for floats); in place
        # when the bytes are a writable buffer in native order, else on a native copy.
        unsigned = np.dtype(f"u{image.dtype.itemsize}")
        pixels = pixels.view(unsigned.newbyteorder(byte_order))
        if not (pixels.dtype.isnative and pixels.flags.writeable):
            pixels = pixels.astype(unsigned)
        imagecodecs.delta_decode(pixels, axis=-2, out=pixels)
        return pixels.view(image.dtype)
    return pixels


def _decode_jpeg(data: bytes, image: ImageInfo, samples: int, byte_order: ByteOrder) -> np.ndarray:
    if image.photometric == 6 and samples == 3:
        # YCbCr: IJG libjpeg 9, as GDAL. A header outside the form checked below (never written by
        # libtiff, libjpeg or libjpeg-turbo) decodes with libjpeg-turbo instead: close, not exact.
        stream = _jpeg_stream(data, image.jpeg_tables)
        size = None if stream is None else _parse_ycbcr_jpeg_header(stream)
        if stream is not None and size is not None and size[1] == image.tile_width and size[0] <= image.tile_height:
            return _decode_jpeg_ijg(stream, *size)
        logger.debug("YCbCr JPEG tile with an unusual header (size %s): decoding with libjpeg-turbo", size)
    # libtiff writes RGB JPEG without a JFIF marker, so say it is RGB; YCbCr converts to RGB.
    colorspace = "RGB" if image.photometric == 2 and samples == 3 else None
    outcolorspace = "RGB" if image.photometric in (2, 6) and samples == 3 else None
    return imagecodecs.jpeg8_decode(
        data, tables=image.jpeg_tables, colorspace=colorspace, outcolorspace=outcolorspace
    )


# IJG libjpeg 9f as PyPI jpeglib (1.0.2) bundles it, with its C wrapper around libjpeg (cjpeglib):
# the wrapper turns libjpeg errors into a C++ exception it catches, so a bad tile cannot end
# the process. Calling libjpeg itself through ctypes (jpeg_mem_src and friends) cannot be made
# safe: libjpeg's error_exit must not return, and nothing in ctypes can unwind it.
_IJG_VERSION = "9f"
_JCS_RGB = 2  # libjpeg's J_COLOR_SPACE for RGB output
_DO_FANCY_UPSAMPLING = 1  # jpeglib's flag bit: set it, on (libjpeg's default, and GDAL's)
_JPEG_MAX_DIMENSION = 65500
_SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC9, 0xCA)  # the frames libjpeg 9 decodes (Huffman or arithmetic)


def _decode_jpeg_ijg(stream: bytes, height: int, width: int) -> np.ndarray:
    """Decode a YCbCr JPEG stream (checked by :func:`_parse_ycbcr_jpeg_header`) to RGB with IJG libjpeg 9f.

    jpeglib's wrapper reads a file path: the stream goes to an in-memory file
    (``memfd_create``) opened through ``/proc/self/fd``, so nothing touches the disk.
    ctypes releases the GIL for the call and each call has its own libjpeg state,
    so tiles decode in parallel threads without a lock.
    """
    out = np.empty((height, width, 3), np.uint8)
    with _stream_path(stream) as path:
        status = _ijg_library().read_jpeg_spatial(
            os.fsencode(path), out.ctypes.data, None, None, _JCS_RGB, -1, -1, _DO_FANCY_UPSAMPLING, _DO_FANCY_UPSAMPLING
        )
    if status != 1:
        raise RuntimeError(f"IJG libjpeg {_IJG_VERSION} could not decode the JPEG stream (its message is on stderr)")
    return out


@functools.cache
def _ijg_library() -> ctypes.CDLL:
    """Load jpeglib's libjpeg 9f library (once), without importing jpeglib or switching its global version."""
    spec = importlib.util.find_spec("jpeglib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("YCbCr JPEG needs the jpeglib package (pip install jpeglib==1.0.2)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "cjpeglib"
    found = [f for f in folder.glob(f"cjpeglib_{_IJG_VERSION}.*") if f.suffix in (".so", ".pyd", ".dll")]
    if len(found) != 1:
        raise RuntimeError(f"jpeglib in {folder} lacks libjpeg {_IJG_VERSION}")
    library = ctypes.CDLL(str(found[0]))
    library.read_jpeg_spatial.argtypes = [
        ctypes.c_char_p,  # source file
        ctypes.c_void_p,  # out: height * width * components bytes
        ctypes.c_void_p,  # colormap out (unused)
        ctypes.c_void_p,  # colormap in (unused)
        ctypes.c_int,  # out_color_space
        ctypes.c_int,  # dither_mode (-1: libjpeg's default)
        ctypes.c_int,  # dct_method (-1: libjpeg's default, JDCT_ISLOW, as libtiff leaves it)
        ctypes.c_uint,  # flags to set
        ctypes.c_uint,  # their values
    ]
    library.read_jpeg_spatial.restype = ctypes.c_int
    return library


@contextmanager
def _stream_path(stream: bytes) -> Iterator[str]:
    """Yield a path that reads as ``stream``: an in-memory file where the OS has one, else a temporary file."""
    if hasattr(os, "memfd_create"):  # Linux
        fd = os.memfd_create("rasteret-jpeg", os.MFD_CLOEXEC)
        try:
            _write_all(fd, stream)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(suffix=".jpg", prefix="rasteret-")
    try:
        _write_all(fd, stream)
        os.close(fd)
        fd = -1
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _jpeg_stream(data: bytes, tables: bytes | None) -> bytes | None:
    """Join the image's JPEGTables and a tile into one JPEG stream, as libtiff feeds them to libjpeg."""
    if not tables:
        return data
    if tables[:2] != b"\xff\xd8" or tables[-2:] != b"\xff\xd9" or data[:2] != b"\xff\xd8":
        return None
    return tables[:-2] + data[2:]  # the tables' SOI and segments, then the tile after its SOI


def _parse_ycbcr_jpeg_header(stream: bytes) -> tuple[int, int] | None:
    """Return ``(height, width)`` of a YCbCr JPEG stream whose header IJG libjpeg 9 reads without error, else None.

    jpeglib's wrapper crashes the process when libjpeg fails inside jpeg_read_header
    (it then closes an uninitialised FILE pointer); errors later in the stream are
    caught. So a stream reaches it only when this stricter reading of the header
    passes every check libjpeg 9f makes there (jdmarker.c, and initial_setup in
    jdinput.c): SOI; whole DQT, DHT, DRI, APPn and COM segments, no fill bytes; one
    8-bit SOF of 3 components with ids 1, 2, 3 (which libjpeg takes for YCbCr, as
    libtiff does) and sampling factors 1 to 4; then an SOS naming some of them.
    """
    if stream[:2] != b"\xff\xd8":
        return None
    pos, frame, marker_of_frame = 2, None, 0
    while pos + 4 <= len(stream):
        marker, length = stream[pos + 1], int.from_bytes(stream[pos + 2 : pos + 4], "big")
        body = stream[pos + 4 : pos + 2 + length]
        if stream[pos] != 0xFF or length < 2 or len(body) != length - 2:
            return None
        pos += 2 + length
        if marker == 0xDA:  # SOS: where jpeg_read_header stops
            if frame is None or not _sos_ok(body, marker_of_frame):
                return None
            return frame
        if marker in _SOF_MARKERS and frame is None:
            frame, marker_of_frame = _parse_sof(body), marker
            ok = frame is not None
        elif marker == 0xDB:
            ok = _dqt_ok(body)
        elif marker == 0xC4:
            ok = _dht_ok(body)
        else:
            ok = (marker == 0xDD and length == 4) or 0xE0 <= marker <= 0xEF or marker == 0xFE  # DRI, APPn, COM
        if not ok:
            return None
    return None


def _parse_sof(body: bytes) -> tuple[int, int] | None:
    if len(body) != 6 + 3 * 3 or body[0] != 8 or body[5] != 3:
        return None
    height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
    if not (0 < height <= _JPEG_MAX_DIMENSION and 0 < width <= _JPEG_MAX_DIMENSION):
        return None
    for i, (component, sampling, table) in enumerate(zip(body[6::3], body[7::3], body[8::3], strict=True)):
        if component != i + 1 or not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 15 <= 4) or table > 3:
            return None
    return height, width


def _sos_ok(body: bytes, frame_marker: int) -> bool:
    count = body[0] if body else 0
    if not 1 <= count <= 3 or len(body) != 4 + 2 * count:
        return False
    ids = body[1 : 1 + 2 * count : 2]
    if len(set(ids)) != count or not set(ids) <= {1, 2, 3}:
        return False
    # Sequential frames other than baseline take the block size from Se: 63 is 8x8.
    return frame_marker not in (0xC1, 0xC9) or body[2 + 2 * count] == 63


def _dqt_ok(body: bytes) -> bool:
    pos = 0
    while pos < len(body):
        precision, index = divmod(body[pos], 16)
        size = 64 * (precision + 1)
        if index > 3 or precision > 1 or len(body) - pos - 1 < size:  # whole 8- or 16-bit tables 0 to 3
            return False
        pos += 1 + size
    return True


def _dht_ok(body: bytes) -> bool:
    pos = 0
    while len(body) - pos > 16:
        index, count = body[pos], sum(body[pos + 1 : pos + 17])
        pos += 17
        if index & 0xEC or count > min(256, len(body) - pos):  # DC tables 0 to 3 (0x00-0x03), AC 0x10-0x13
            return False
        pos += count
    return pos == len(body)


def _decode_webp(data: bytes, image: ImageInfo, samples: int, byte_order: ByteOrder) -> np.ndarray:
    # GDAL may drop an all-opaque alpha channel from a WebP tile; ask for it back.
    return imagecodecs.webp_decode(data, hasalpha=samples == 4 or None)


def _decode_lerc(data: bytes, image: ImageInfo, samples: int, byte_order: ByteOrder) -> np.ndarray:
    """Decode a LERC (or LERC_DEFLATE / LERC_ZSTD) tile as libtiff does.

    libtiff stores float NaNs as LERC masks: one mask for the tile (or one per
    sample, the samples then being LERC bands), decoded back to NaN. An 8-bit
    alpha sample holding only 0 and 255 is stored as the mask too. LERC encodes
    the samples libtiff hands it, which for big-endian files are already byte
    swapped: swap them back after decoding, as libtiff does.
    """
    pixels, masks = imagecodecs.lerc_decode(data, masks=True)
    if image.sample_format == 3 and masks is not None:
        pixels = pixels.copy()
        pixels[~masks] = np.nan  # one mask for all samples of a pixel, or one per sample
        if masks.ndim == 3:  # one LERC band per sample: [sample, row, col]
            pixels = pixels.transpose(1, 2, 0)
    elif pixels.dtype == np.uint8 and samples > 1 and image.planar_config == 1:
        rows, cols = pixels.shape[:2]
        depth = 1 if pixels.ndim == 2 else pixels.shape[2]
        if depth == samples - 1:  # the alpha sample was stored as the mask (none: all opaque)
            alpha = np.full((rows, cols, 1), 255, np.uint8) if masks is None else masks[..., np.newaxis] * np.uint8(255)
            pixels = np.concatenate([pixels.reshape(rows, cols, depth), alpha], axis=2)
    if byte_order != _NATIVE_ORDER and pixels.dtype.itemsize > 1:
        pixels = pixels.byteswap()
    return pixels


_IMAGE_DECODERS: dict[int, Callable[[bytes, ImageInfo, int, ByteOrder], np.ndarray]] = {
    7: _decode_jpeg,
    34712: lambda data, image, samples, byte_order: imagecodecs.jpeg2k_decode(data),
    34887: _decode_lerc,
    50001: _decode_webp,
    50002: lambda data, image, samples, byte_order: imagecodecs.jpegxl_decode(data),
}
