"""Byte sources behind one protocol: ``s3://`` (aiobotocore), ``http(s)://``, local paths.

A store serves half-open byte ranges ``[start, end)`` of objects named by URI.
:class:`Stores` routes each URI to the right backend, opens clients lazily,
bounds concurrency, retries retryable failures and counts requests and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, runtime_checkable
from urllib.parse import unquote, urlparse

from rasteret_core.errors import AccessDeniedError, FetchError, ObjectNotFoundError, redact
from rasteret_core.settings import Settings

if TYPE_CHECKING:
    import aiohttp

_JITTER = random.Random()  # retry jitter; a private generator leaves the global random state alone

__all__ = ["ByteStore", "IOStats", "ObjectInfo", "Stores"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows of an object without reading it."""

    size: int
    etag: str | None = None
    last_modified: str | None = None  # ISO 8601, UTC


@runtime_checkable
class ByteStore(Protocol):
    """Anything that serves byte ranges of objects."""

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` of ``uri`` (fewer only at the end of the object)."""
        ...

    async def head(self, uri: str) -> ObjectInfo:
        """Return the size, ETag and last-modified time of ``uri``."""
        ...

    # A store may also define ``async get_range_info(uri, start, end) -> (bytes, ObjectInfo | None)``:
    # the range and what its answer says of the object (ETag, size, time), so that a read checks
    # its objects are unchanged without a HEAD each (see Stores.expect).


@dataclass(slots=True)
class IOStats:
    """Requests and bytes served, for `explain`, logs and benchmarks."""

    requests: int = 0
    bytes: int = 0

    def add(self, nbytes: int) -> None:
        """Count one request of ``nbytes`` bytes."""
        self.requests += 1
        self.bytes += nbytes

    def include(self, other: IOStats) -> None:
        """Count ``other``'s requests and bytes too."""
        self.requests += other.requests
        self.bytes += other.bytes


class _LocalStore:
    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        return (await self.get_range_info(uri, start, end))[0]

    async def get_range_info(self, uri: str, start: int, end: int) -> tuple[bytes, ObjectInfo]:
        return await asyncio.to_thread(self._read, _local_path(uri), start, end)

    @staticmethod
    def _read(path: str, start: int, end: int) -> tuple[bytes, ObjectInfo]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError("no such file; check the href or re-build the collection", uri=path) from exc
        except OSError as exc:
            raise FetchError(f"cannot open: {exc}", uri=path, retryable=False) from exc
        try:
            return os.pread(fd, end - start, start), _stat_info(os.fstat(fd))
        finally:
            os.close(fd)

    async def head(self, uri: str) -> ObjectInfo:
        path = _local_path(uri)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError as exc:
            raise ObjectNotFoundError("no such file; check the href or re-build the collection", uri=uri) from exc
        return _stat_info(st)


def _stat_info(st: os.stat_result) -> ObjectInfo:
    """A local file's facts: size, modification time, and an ETag made of both."""
    from datetime import datetime

    modified = datetime.fromtimestamp(st.st_mtime, tz=UTC).isoformat()
    return ObjectInfo(size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}", last_modified=modified)


def _drain_slots(settings: Settings) -> asyncio.Semaphore:
    """How many answers' bodies a store reads at once: as many as there are decoders to feed.

    Every request is sent at once (its latency overlaps the others'), but bodies are read a
    few at a time, so they finish one after another and decoding starts with the first
    instead of after the last (all bodies read together share the bandwidth and end together).
    """
    return asyncio.Semaphore(max(2, settings.decode_threads))


class _HTTPStore:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._drain = _drain_slots(settings)

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        return (await self.get_range_info(uri, start, end))[0]

    async def get_range_info(self, uri: str, start: int, end: int) -> tuple[bytes, ObjectInfo | None]:
        try:
            return await self._get_range(uri, start, end)
        except FetchError:
            raise
        except Exception as exc:
            _raise_transport(exc, uri)
            raise

    async def _get_range(self, uri: str, start: int, end: int) -> tuple[bytes, ObjectInfo | None]:
        session = await self._client()
        headers = {"Range": f"bytes={start}-{end - 1}"}
        async with session.get(uri, headers=headers) as resp:
            if resp.status == 404:
                raise ObjectNotFoundError("HTTP 404; check the href", uri=uri)
            if resp.status == 416:
                return b"", None
            if resp.status == 403:
                raise AccessDeniedError("HTTP 403: access denied; check the href (an expired signed URL?) or "
                                        "the credentials it needs", uri=uri)
            if resp.status >= 400:
                raise FetchError(f"HTTP {resp.status}", uri=uri, retryable=resp.status >= 500 or resp.status == 429)
            async with self._drain:
                data = await resp.read()
            total = resp.headers.get("Content-Range", "").rpartition("/")[2]
            size = int(total) if total.isdigit() else len(data) if resp.status == 200 else None
            if resp.status == 200:  # server ignored Range
                data = data[start:end]
            if size is None:  # no size to compare: let the caller HEAD the object
                return data, None
            return data, ObjectInfo(size=size, etag=resp.headers.get("ETag"),
                                    last_modified=resp.headers.get("Last-Modified"))

    async def head(self, uri: str) -> ObjectInfo:
        try:
            return await self._head(uri)
        except FetchError:
            raise
        except Exception as exc:
            _raise_transport(exc, uri)
            raise

    async def _head(self, uri: str) -> ObjectInfo:
        session = await self._client()
        async with session.head(uri, allow_redirects=True) as resp:
            if resp.status == 404:
                raise ObjectNotFoundError("HTTP 404; check the href", uri=uri)
            if resp.status in {403, 405}:  # a pre-signed URL signs GET only: ask for its first byte instead
                return await self._head_by_get(uri)
            if resp.status >= 400:
                raise FetchError(f"HTTP {resp.status}", uri=uri, retryable=resp.status >= 500 or resp.status == 429)
            return ObjectInfo(
                size=int(resp.headers.get("Content-Length", 0)),
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
            )

    async def _head_by_get(self, uri: str) -> ObjectInfo:
        """What HEAD would say, from a GET of the first byte (``Content-Range: bytes 0-0/SIZE``)."""
        session = await self._client()
        async with session.get(uri, headers={"Range": "bytes=0-0"}) as resp:
            if resp.status == 404:
                raise ObjectNotFoundError("HTTP 404; check the href", uri=uri)
            if resp.status == 403:
                raise AccessDeniedError("HTTP 403: access denied; check the href (an expired signed URL?) or "
                                        "the credentials it needs", uri=uri)
            if resp.status >= 400:
                raise FetchError(f"HTTP {resp.status}", uri=uri, retryable=resp.status >= 500 or resp.status == 429)
            total = resp.headers.get("Content-Range", "").rpartition("/")[2]
            if resp.status == 206:  # one byte: read it, so the connection can be reused
                await resp.read()
            return ObjectInfo(
                size=int(total) if total.isdigit() else int(resp.headers.get("Content-Length", 0)),
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@functools.lru_cache(maxsize=8)
def _aio_session(profile: str | None) -> Any:
    """One aiobotocore session per profile and process: it caches the S3 service model,
    which costs ~0.3 s to load for every new session.
    """
    from aiobotocore.session import get_session

    session = get_session()
    if profile:
        session.set_config_variable("profile", profile)
    return session


class _S3Store:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._s3: Any = None  # aiobotocore's S3 client (untyped), opened on first use
        self._lock = asyncio.Lock()
        self._drain = _drain_slots(settings)

    async def _client(self) -> Any:  # aiobotocore's S3 client (untyped)
        async with self._lock:
            if self._s3 is None:
                from aiobotocore.config import AioConfig
                from botocore import UNSIGNED

                s = self._settings
                session = _aio_session(s.aws_profile)
                config = AioConfig(
                    max_pool_connections=s.max_concurrency,
                    connect_timeout=s.request_timeout,
                    read_timeout=s.request_timeout,
                    retries={"total_max_attempts": 1, "mode": "standard"},  # Stores retries, once
                    signature_version=UNSIGNED if s.aws_no_sign_request else None,
                    s3={"addressing_style": "path"} if s.aws_endpoint_url else None,
                )
                self._s3 = await self._stack.enter_async_context(
                    session.create_client(
                        "s3",
                        endpoint_url=s.aws_endpoint_url,
                        region_name=s.aws_region or "us-east-1",
                        aws_access_key_id=s.aws_access_key_id,
                        aws_secret_access_key=s.aws_secret_access_key,
                        aws_session_token=s.aws_session_token,
                        config=config,
                    )
                )
            return self._s3

    def _extra(self) -> dict[str, str]:
        return {"RequestPayer": "requester"} if self._settings.requester_pays else {}

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        return (await self.get_range_info(uri, start, end))[0]

    async def get_range_info(self, uri: str, start: int, end: int) -> tuple[bytes, ObjectInfo | None]:
        bucket, key = _split_s3(uri)
        s3 = await self._client()
        try:
            resp = await s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **self._extra())
            async with resp["Body"] as body, self._drain:  # the body is released even if the wait is cancelled
                data: bytes = await body.read()
        except Exception as exc:  # botocore raises ClientError subclasses; map them
            _raise_s3(exc, uri)
            raise
        total = str(resp.get("ContentRange", "")).rpartition("/")[2]
        if not total.isdigit():
            return data, None
        modified = resp.get("LastModified")
        return data, ObjectInfo(size=int(total), etag=resp.get("ETag"),
                                last_modified=modified.isoformat() if modified is not None else None)

    async def head(self, uri: str) -> ObjectInfo:
        bucket, key = _split_s3(uri)
        s3 = await self._client()
        try:
            resp = await s3.head_object(Bucket=bucket, Key=key, **self._extra())
        except Exception as exc:
            _raise_s3(exc, uri)
            raise
        modified = resp.get("LastModified")
        return ObjectInfo(
            size=int(resp["ContentLength"]),
            etag=resp.get("ETag"),
            last_modified=modified.isoformat() if modified is not None else None,
        )

    async def close(self) -> None:
        await self._stack.aclose()


def _raise_s3(exc: Exception, uri: str) -> None:
    from botocore.exceptions import ClientError, NoCredentialsError, ReadTimeoutError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, NoCredentialsError):
        raise AccessDeniedError(
            "no AWS credentials to sign the request: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "AWS_PROFILE), or AWS_NO_SIGN_REQUEST=YES for a public bucket",
            uri=uri,
        ) from exc
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in {"NoSuchKey", "NoSuchBucket", "404", "NotFound"} or status == 404:
            raise ObjectNotFoundError(f"S3 {code or status}: no such object; check the href", uri=uri) from exc
        if code == "InvalidRange" or status == 416:
            raise FetchError("requested range lies past the end of the object", uri=uri, retryable=False) from exc
        if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"} or status == 403:
            raise AccessDeniedError(
                f"S3 {code or status}: access denied; check AWS_* credentials (or AWS_NO_SIGN_REQUEST, "
                "RASTERET_REQUESTER_PAYS)",
                uri=uri,
            ) from exc
        what = f"S3 {code} (HTTP {status})" if code and str(status) != code else f"S3 {code or status}"
        if status >= 500:
            what += ": the store failed; try again later"
        raise FetchError(what, uri=uri, retryable=status >= 500 or status in {0, 429}) from exc
    if isinstance(exc, (BotoConnectionError, ReadTimeoutError)):
        raise FetchError(f"{_transport_cause(exc)}: {exc}", uri=uri, retryable=True) from exc
    _raise_transport(exc, uri)


def _transport_cause(exc: BaseException) -> str:
    """What went wrong below HTTP statuses, in words: a cut body, a malformed answer, a closed connection..."""
    import aiohttp
    from aiohttp import http_exceptions
    from botocore import exceptions as boto

    chain = [exc]
    while len(chain) < 8:  # causes are short chains; stop on a loop
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    for err in chain:
        if isinstance(err, (aiohttp.ClientPayloadError, boto.ResponseStreamingError, boto.IncompleteReadError)):
            return "the answer's body was truncated (shorter than its Content-Length)"
        if isinstance(err, (aiohttp.ClientResponseError, http_exceptions.HttpProcessingError)):
            return "malformed HTTP answer"
        if isinstance(err, (boto.ConnectionClosedError, aiohttp.ServerDisconnectedError)):
            return "the connection was closed before an answer"
        if isinstance(err, (boto.EndpointConnectionError, aiohttp.ClientConnectorError, ConnectionRefusedError)):
            return "cannot connect to the endpoint (refused or unreachable)"
        if isinstance(err, (boto.ReadTimeoutError, boto.ConnectTimeoutError, asyncio.TimeoutError)):
            return "timed out"
    return type(exc).__name__


def _raise_transport(exc: Exception, uri: str) -> None:
    """Raise a retryable :class:`FetchError` for a transport failure (no HTTP status); return on anything else."""
    import aiohttp
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, (HTTPClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        raise FetchError(f"{_transport_cause(exc)}: {exc}", uri=uri, retryable=True) from exc


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc or not parsed.path.strip("/"):
        raise FetchError("not an s3://bucket/key URI", uri=uri, retryable=False)
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


def _local_path(uri: str) -> str:
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    return str(Path(uri))


def scheme_of(uri: str) -> str:
    """``s3``, ``http`` (also for https) or ``file``."""
    lowered = uri.lower()
    if lowered.startswith("s3://"):
        return "s3"
    if lowered.startswith(("http://", "https://")):
        return "http"
    return "file"


class Stores:
    """Routes URIs to backends; bounds concurrency; retries; counts.

    Use as an async context manager so network clients are closed::

        async with Stores(settings) as stores:
            data = await stores.get_range("s3://bucket/key.tif", 0, 65536)
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.stats = IOStats()
        self._backends: dict[str, ByteStore] = {}
        self._sem = asyncio.Semaphore(self.settings.max_concurrency)
        self._owner = True
        self._expect: Callable[[str, ObjectInfo], None] | None = None
        self._heads: dict[str, asyncio.Future[ObjectInfo]] = {}

    def child(self) -> Stores:
        """A view sharing these clients and concurrency bound, counting its own I/O.

        Leaving a child's context does not close the shared clients.
        """
        view = Stores.__new__(Stores)
        # A Stores building a view of itself: its own private fields.
        view.settings, view.stats, view._backends, view._sem = self.settings, IOStats(), self._backends, self._sem  # noqa: SLF001
        view._owner = False  # noqa: SLF001
        view._expect, view._heads = None, {}  # noqa: SLF001
        return view

    def expect(self, check: Callable[[str, ObjectInfo], None]) -> None:
        """Check every object this view reads from: ``check(uri, info)`` on each ranged answer.

        ``info`` is what the answer itself says of the object (ETag, size, time), so a read
        checks its objects are unchanged without a HEAD each; a store whose answers say
        nothing is asked with a HEAD, once per object. ``check`` raises to refuse the bytes.
        """
        self._expect = check

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._owner:
            return
        for backend in self._backends.values():
            close = getattr(backend, "close", None)
            if close is not None:
                await close()
        self._backends.clear()

    def _backend(self, uri: str) -> ByteStore:
        scheme = scheme_of(uri)
        if scheme not in self._backends:
            factories: dict[str, Callable[[], ByteStore]] = {
                "s3": lambda: _S3Store(self.settings),
                "http": lambda: _HTTPStore(self.settings),
                "file": _LocalStore,
            }
            self._backends[scheme] = factories[scheme]()
        return self._backends[scheme]

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` of ``uri``, retrying retryable failures."""
        if end <= start:
            return b""
        backend = self._backend(uri)
        with_info = getattr(backend, "get_range_info", None) if self._expect is not None else None
        info: ObjectInfo | None = None
        if with_info is None:
            data = await self._retrying(uri, lambda: backend.get_range(uri, start, end))
        else:
            data, info = await self._retrying(uri, lambda: with_info(uri, start, end))
        if self._expect is not None:
            self._expect(uri, info or await self._head_once(uri))
        self.stats.add(len(data))
        log.debug("GET %s [%d, %d): %d bytes", redact(uri), start, end, len(data))
        return data

    async def _head_once(self, uri: str) -> ObjectInfo:
        """``head(uri)``, asked once per object for this view (answers that say nothing of their object)."""
        if uri not in self._heads:
            self._heads[uri] = asyncio.ensure_future(self.head(uri))
        return await asyncio.shield(self._heads[uri])

    async def get_ranges(self, uri: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Fetch several ranges of one object concurrently, in the order given."""
        return list(await asyncio.gather(*(self.get_range(uri, s, e) for s, e in ranges)))

    async def head(self, uri: str) -> ObjectInfo:
        """Size, ETag and last-modified time of ``uri``, retrying retryable failures."""
        backend = self._backend(uri)
        return await self._retrying(uri, lambda: backend.head(uri))

    async def _retrying(self, uri: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one request under the concurrency bound and timeout; retry retryable failures
        (``RASTERET_REQUEST_RETRIES`` attempts, exponential backoff with jitter).
        """
        attempts = max(1, self.settings.request_retries)
        for attempt in range(1, attempts + 1):
            try:
                async with self._sem:
                    return await asyncio.wait_for(call(), self.settings.request_timeout)
            except TimeoutError as exc:
                error: FetchError = FetchError(
                    f"timed out after {self.settings.request_timeout}s (RASTERET_REQUEST_TIMEOUT)",
                    uri=uri,
                    retryable=True,
                )
                error.__cause__ = exc
            except FetchError as exc:
                error = exc
            if not error.retryable:
                raise error
            if attempt == attempts:
                cause = str(error).removeprefix(f"{error.uri}: ")
                raise FetchError(f"{cause}; gave up after {attempts} attempt(s) (RASTERET_REQUEST_RETRIES)",
                                 uri=uri, retryable=True) from error
            delay = min(4.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + _JITTER.random())
            log.debug("retrying %s after %s (attempt %d/%d)", redact(uri), error, attempt, attempts)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")
