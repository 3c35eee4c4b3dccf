"""The one error hierarchy of Rasteret.

Every error Rasteret raises on purpose derives from :class:`RasteretError`.
Each says what went wrong, where (a URI, a tag, a tile, a version) and, where
there is one, what to do about it.
"""

from __future__ import annotations

import re

__all__ = [
    "AccessDeniedError",
    "BandError",
    "CollectionError",
    "ConfigError",
    "DecodeError",
    "FetchError",
    "GeometryError",
    "GridMismatchError",
    "NoRecordsError",
    "ObjectNotFoundError",
    "PlanningError",
    "RasteretError",
    "ReadTooLargeError",
    "SchemaError",
    "SourceError",
    "StaleAssetError",
    "StatisticError",
    "TiffFormatError",
    "UnresolvedCRSError",
    "UnsupportedTiffError",
    "redact",
]

# The query string of an http(s) URL (a pre-signed URL's signature, a SAS token) and its user info.
_URL_QUERY = re.compile(r"(?P<head>https?://[^\s?#'\"<>]+)\?[^\s#'\"<>]*", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>https?://)[^\s/@'\"<>]+@", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every http(s) URL's query string and user info replaced by ``[redacted]``.

    A pre-signed URL carries its credential in the query (``X-Amz-Signature=``,
    ``sig=``, ``token=``); the rest of the URL still says which object is meant.
    Every :class:`RasteretError` message goes through this, and so do the log lines
    that name an href.
    """
    return _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", _URL_QUERY.sub(rf"\g<head>?{REDACTED}", text))


class RasteretError(Exception):
    """Base of every error Rasteret raises on purpose.

    Its message never holds a URL's query string or user info (see :func:`redact`).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigError(RasteretError):
    """A setting (a ``RASTERET_*`` variable or an argument) has a bad value."""


class TiffFormatError(RasteretError):
    """A file is not a TIFF Rasteret can parse (truncated, corrupt, inconsistent).

    Attributes:
        uri: The file.
    """

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        self.uri = None if uri is None else redact(uri)
        super().__init__(f"{uri}: {message}" if uri else message)


class UnsupportedTiffError(TiffFormatError):
    """A valid TIFF uses a feature Rasteret does not read (a codec, a layout).

    Attributes:
        uri: The file.
        tag: The TIFF tag name that carries the feature.
        value: The tag's value.
    """

    def __init__(
        self, message: str, *, uri: str | None = None, tag: str | None = None, value: object = None
    ) -> None:
        self.tag = tag
        self.value = value
        detail = f"{message} (tag {tag}={value!r})" if tag else message
        super().__init__(detail, uri=uri)


class UnresolvedCRSError(UnsupportedTiffError):
    """A GeoTIFF's GeoKeys do not define a CRS Rasteret can build (a missing key, an unknown code).

    The rest of the header is sound: given a CRS from elsewhere (the ``fallback_crs`` of
    :func:`~rasteret_core.tiff.parser.parse_header`; enrichment passes the record's catalog CRS),
    the header parses.

    Attributes:
        tag: The GeoKey that could not be resolved.
        value: Its value (None when the key is missing).
    """


class PlanningError(RasteretError):
    """A read request cannot be planned against the collection."""


class GeometryError(PlanningError):
    """A geometry or CRS given by the user is invalid or cannot be transformed."""


class BandError(PlanningError):
    """A band asked for is not in the collection (or lacks header metadata)."""


class NoRecordsError(PlanningError):
    """No record of the collection meets the request."""


class GridMismatchError(PlanningError):
    """Records or bands on different pixel grids were asked to stack in one array."""


class ReadTooLargeError(PlanningError):
    """A read's output would exceed the memory cap (``RASTERET_MAX_READ_BYTES``); nothing was fetched.

    Attributes:
        size: The bytes the read would assemble.
        limit: The cap.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message)


class StatisticError(PlanningError):
    """A statistic asked for (``stats=``, ``--stats``) is not one Rasteret computes."""


class FetchError(RasteretError):
    """Reading bytes from a store failed.

    Attributes:
        uri: The object.
        retryable: Whether trying again may help (timeouts, 5xx, throttling).
    """

    def __init__(self, message: str, *, uri: str, retryable: bool) -> None:
        self.uri = redact(uri)
        self.retryable = retryable
        super().__init__(f"{uri}: {message}")


class ObjectNotFoundError(FetchError):
    """The object does not exist (or is not readable with these credentials)."""

    def __init__(self, message: str, *, uri: str) -> None:
        super().__init__(message, uri=uri, retryable=False)


class AccessDeniedError(FetchError):
    """The store refused the request (HTTP 401/403), or there are no credentials to sign it.

    Trying again does not help; other credentials (``AWS_*`` variables, a profile) or
    an unsigned request for a public bucket (``AWS_NO_SIGN_REQUEST``) may.
    """

    def __init__(self, message: str, *, uri: str) -> None:
        super().__init__(message, uri=uri, retryable=False)


class DecodeError(RasteretError):
    """A tile's bytes could not be decoded.

    Attributes:
        uri: The file.
        tile: The tile (or strip) index within its image.
        codec: The TIFF compression code.
        offset: Where the tile's bytes start in the file, when known.
    """

    def __init__(self, message: str, *, uri: str, tile: int, codec: int, offset: int | None = None) -> None:
        self.uri = redact(uri)
        self.tile = tile
        self.codec = codec
        self.offset = offset
        where = f"tile {tile}" if offset is None else f"tile {tile} at byte {offset}"
        super().__init__(
            f"{uri}: {where} (compression {codec}): {message}; the file is corrupt or was replaced since "
            "indexing: check it with gdalinfo -checksum, then re-enrich the collection"
        )


class CollectionError(RasteretError):
    """A collection table is missing, malformed or cannot be written."""


class SchemaError(CollectionError):
    """A table does not have the columns or types a collection needs."""


class SourceError(CollectionError):
    """A record source (STAC API, Parquet table) failed or returned unusable records."""


class StaleAssetError(CollectionError):
    """Source COGs changed (another ETag or size) since their headers were parsed.

    Attributes:
        uris: The changed objects.
    """

    def __init__(self, message: str, *, uris: list[str]) -> None:
        self.uris = [redact(uri) for uri in uris]
        super().__init__(message)
