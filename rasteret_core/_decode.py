"""Decode TIFF tiles (and strips) on the CPU with imagecodecs.

:func:`decode_tile` turns the bytes of one tile into a native-byte-order array
``[sample, row, column]`` of the full tile size; :func:`check_supported` tells at
plan time whether an image can be decoded at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import imagecodecs
import numpy as np

from ._header import ImageInfo
from .errors import DecodeError, UnsupportedTiffError

__all__ = ["check_supported", "decode_tile"]

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
_BITS = (8, 16, 32, 64)
_NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"


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
    if bits not in _BITS or (sample_format == 3 and bits == 8):
        raise UnsupportedTiffError(
            "only 8, 16, 32 and 64-bit samples are read", uri=uri, tag="BitsPerSample", value=bits
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


def decode_tile(data: bytes, image: ImageInfo, *, byte_order: str, uri: str, tile: int) -> np.ndarray:
    """Decode the bytes of one tile (or strip) of ``image``.

    Args:
        data: The tile's bytes as stored (not empty: sparse tiles are the caller's).
        image: The image the tile belongs to.
        byte_order: The file's byte order, ``"<"`` or ``">"``.
        uri: The file, for errors.
        tile: The tile's index in the image's tile tables, for errors.

    Returns:
        A native-byte-order array ``[sample, row, column]`` of shape
        ``(samples_per_pixel, tile_height, tile_width)`` for chunky images and
        ``(1, tile_height, tile_width)`` (the one sample the tile holds) for planar
        ones. Rows the data does not hold (a short last strip) are 0. JPEG
        YCbCr tiles come back as RGB, as GDAL reads them.

    Raises:
        UnsupportedTiffError: The image uses a codec, predictor or sample type not read.
        DecodeError: The codec failed, or the data does not fit the tile.
    """
    check_supported(image, uri=uri)
    samples = image.samples_per_pixel if image.planar_config == 1 else 1
    shape = (image.tile_height, image.tile_width, samples)
    try:
        if image.compression in _IMAGE_CODECS:
            decoded = _IMAGE_DECODERS[image.compression](data, image, samples, byte_order)
        elif image.compression == 1:
            decoded = data
        else:
            codec: Callable[..., bytes] = getattr(imagecodecs, _BYTE_CODECS[image.compression].lower() + "_decode")
            decoded = codec(data, out=int(np.prod(shape)) * image.dtype.itemsize)
    except Exception as exc:  # imagecodecs raises RuntimeError subclasses, ValueError on bad input
        raise DecodeError(f"{type(exc).__name__}: {exc}", uri=uri, tile=tile, codec=image.compression) from exc

    if isinstance(decoded, np.ndarray):
        pixels = decoded[..., np.newaxis] if decoded.ndim == 2 else decoded
        fits = pixels.ndim == 3 and pixels.shape[1:] == shape[1:] and 0 < pixels.shape[0] <= shape[0]
        if not fits or pixels.dtype != image.dtype:
            raise DecodeError(
                f"decoded {decoded.dtype} pixels of shape {decoded.shape}, expected {image.dtype} of {shape}",
                uri=uri,
                tile=tile,
                codec=image.compression,
            )
    else:
        row_bytes = image.tile_width * samples * image.dtype.itemsize
        rows = min(len(decoded) // row_bytes, image.tile_height)
        if rows == 0 or (rows < image.tile_height and len(decoded) % row_bytes):
            raise DecodeError(
                f"decoded {len(decoded)} bytes, not whole rows of {row_bytes} bytes (tile {shape})",
                uri=uri,
                tile=tile,
                codec=image.compression,
            )
        pixels = _unpack(decoded, image, (rows, *shape[1:]), byte_order)

    out = np.empty((samples, image.tile_height, image.tile_width), image.dtype)
    out[:, : pixels.shape[0]] = pixels.transpose(2, 0, 1)
    out[:, pixels.shape[0] :] = 0
    return out


def _unpack(buffer: bytes, image: ImageInfo, shape: tuple[int, int, int], byte_order: str) -> np.ndarray:
    """View ``buffer`` as pixels ``[row, column, sample]`` and undo the predictor."""
    count = int(np.prod(shape))
    if image.predictor == 3:
        # The floating-point predictor shuffles bytes itself: view them raw, as tifffile does.
        shuffled = np.frombuffer(buffer, image.dtype, count).reshape(shape)
        return imagecodecs.floatpred_decode(shuffled, axis=-2)
    pixels = np.frombuffer(buffer, image.dtype.newbyteorder(byte_order), count).reshape(shape)
    if image.predictor == 2:
        # Horizontal differencing works on the bit patterns (as libtiff does, also for floats).
        unsigned = np.dtype(f"u{image.dtype.itemsize}")
        pixels = pixels.view(unsigned.newbyteorder(byte_order)).astype(unsigned)
        imagecodecs.delta_decode(pixels, axis=-2, out=pixels)
        return pixels.view(image.dtype)
    return pixels


def _decode_jpeg(data: bytes, image: ImageInfo, samples: int, byte_order: str) -> np.ndarray:
    # libtiff writes RGB JPEG without a JFIF marker, so say it is RGB; YCbCr converts to RGB.
    colorspace = "RGB" if image.photometric == 2 and samples == 3 else None
    outcolorspace = "RGB" if image.photometric in (2, 6) and samples == 3 else None
    return imagecodecs.jpeg8_decode(
        data, tables=image.jpeg_tables, colorspace=colorspace, outcolorspace=outcolorspace
    )


def _decode_webp(data: bytes, image: ImageInfo, samples: int, byte_order: str) -> np.ndarray:
    # GDAL may drop an all-opaque alpha channel from a WebP tile; ask for it back.
    return imagecodecs.webp_decode(data, hasalpha=samples == 4 or None)


def _decode_lerc(data: bytes, image: ImageInfo, samples: int, byte_order: str) -> np.ndarray:
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


_IMAGE_DECODERS: dict[int, Callable[[bytes, ImageInfo, int, str], np.ndarray]] = {
    7: _decode_jpeg,
    34712: lambda data, image, samples, byte_order: imagecodecs.jpeg2k_decode(data),
    34887: _decode_lerc,
    50001: _decode_webp,
    50002: lambda data, image, samples, byte_order: imagecodecs.jpegxl_decode(data),
}
