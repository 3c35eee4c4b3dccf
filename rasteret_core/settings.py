"""The one settings object, read from ``RASTERET_*`` and the standard ``AWS_*`` variables.

Nothing here runs at import time: call :meth:`Settings.from_env` at the edge (the
CLI, a flow, the top of a public call) and pass the object down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError

__all__ = ["Settings"]

_PREFIX = "RASTERET_"
_SECRETS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SECRET_ENV = {"aws_access_key_id": "AWS_ACCESS_KEY_ID", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
               "aws_session_token": "AWS_SESSION_TOKEN"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Tuning knobs and S3 access for one process.

    Attributes:
        max_concurrency: Byte-range requests in flight at once, per read.
        decode_threads: Threads that decode tiles (imagecodecs releases the GIL).
        coalesce_gap: Merge two byte ranges of one object when fewer than this many
            bytes lie between them (reading a small gap beats another request).
        max_request_bytes: Never merge ranges into a request larger than this.
        batch_pixels: Window pixels a batched read (statistics) decodes and holds at once;
            a window larger than this is read in a batch of its own.
        header_read: Bytes read by the first request for a header; grows (doubles)
            when the header is larger.
        max_read_bytes: The most memory one read may assemble (its pixels and their
            validity masks, ``RASTERET_MAX_READ_BYTES``); a larger read is refused with its
            size before any byte is fetched. Batched reads (statistics, the extraction
            flows) and chunked ones (``get_xarray``) count one batch or chunk at a time.
        request_timeout: Seconds before one request is abandoned.
        request_retries: Attempts for a retryable request failure.
        requester_pays: Send ``RequestPayer=requester`` on S3 reads.
        staging_dir: Where pipeline tasks stage partition results before the one
            commit (a folder every worker can reach); empty means the system temp folder.
        aws_endpoint_url: S3 endpoint (``AWS_ENDPOINT_URL``); None means AWS.
        aws_region: ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``).
        aws_access_key_id: ``AWS_ACCESS_KEY_ID``; never logged, never pickled.
        aws_secret_access_key: ``AWS_SECRET_ACCESS_KEY``; never logged, never pickled.
        aws_session_token: ``AWS_SESSION_TOKEN``; never logged, never pickled (a pickled copy
            reads the three from its process's environment).
        aws_profile: ``AWS_PROFILE``.
        aws_no_sign_request: Anonymous S3 reads (public buckets).
    """

    max_concurrency: int = 32
    decode_threads: int = max(2, min(8, os.cpu_count() or 2))
    coalesce_gap: int = 64 * 1024
    max_request_bytes: int = 16 * 1024 * 1024
    batch_pixels: int = 16 * 1024 * 1024
    header_read: int = 64 * 1024
    max_read_bytes: int = 4 * 1024**3
    request_timeout: float = 30.0
    request_retries: int = 3
    requester_pays: bool = False
    staging_dir: str = ""
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_profile: str | None = None
    aws_no_sign_request: bool = False

    def __post_init__(self) -> None:
        for name in ("max_concurrency", "decode_threads", "header_read", "max_request_bytes", "batch_pixels",
                     "max_read_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_PREFIX}{name.upper()} must be at least 1, got {getattr(self, name)}")
        if self.coalesce_gap < 0:
            raise ConfigError(f"{_PREFIX}COALESCE_GAP must not be negative, got {self.coalesce_gap}")

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.to_json().items()) + ")"

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values, credentials shown as ``"***"`` (for reports, logs and Prefect parameters)."""
        return {f.name: "***" if f.name in _SECRETS else getattr(self, f.name)
                for f in fields(self) if getattr(self, f.name) is not None}

    def __copy__(self) -> Settings:
        return self  # frozen: a copy in this process may be the object itself, credentials and all

    def __deepcopy__(self, memo: dict[int, Any]) -> Settings:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle without credentials: the copy (a Dask or TorchGeo worker's) reads them from its own environment.

        Task graphs and worker payloads can be logged, spilled to disk or persisted as
        results; credentials stay in each process's ``AWS_*`` variables (or profile).
        """
        public = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _SECRETS}
        return (_unpickle, (public, tuple(name for name in _SECRETS if getattr(self, name) is not None)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the settings from environment variables, then apply ``overrides``.

        ``RASTERET_<FIELD>`` sets a tuning field (``RASTERET_MAX_CONCURRENCY=64``);
        S3 access comes from the standard ``AWS_*`` variables.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name.startswith("aws_"):
                continue
            raw = env.get(_PREFIX + f.name.upper())
            if raw is None:
                continue
            kind: type[Any] = type(f.default)
            try:
                values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise ConfigError(f"{_PREFIX}{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
        values.update(
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            aws_profile=env.get("AWS_PROFILE"),
            aws_no_sign_request=_parse_bool(env.get("AWS_NO_SIGN_REQUEST", "0")),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def staging_root(self) -> str:
        """The folder for staged partition results (created on demand)."""
        import tempfile

        root = self.staging_dir or os.path.join(tempfile.gettempdir(), "rasteret-staging")
        os.makedirs(root, exist_ok=True)
        return root

    def delta_storage_options(self) -> dict[str, str]:
        """Storage options for deltalake (delta-rs object_store) from these settings."""
        opts: dict[str, str] = {}
        if self.aws_endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
            if self.aws_endpoint_url.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        opts.update({key: value for key, value in (
            ("AWS_REGION", self.aws_region or "us-east-1"),
            ("AWS_ACCESS_KEY_ID", self.aws_access_key_id),
            ("AWS_SECRET_ACCESS_KEY", self.aws_secret_access_key),
            ("AWS_SESSION_TOKEN", self.aws_session_token),
            ("AWS_PROFILE", self.aws_profile),
        ) if value})
        if self.aws_no_sign_request:
            opts["AWS_SKIP_SIGNATURE"] = "true"
        return opts

    def arrow_filesystem(self, target: str) -> tuple[Any, str]:
        """A ``pyarrow.fs`` filesystem and path for ``target``: None and the path itself when it is local,
        an ``S3FileSystem`` from these settings and ``bucket/key`` for an ``s3://`` URI.
        """
        if not target.startswith("s3://"):
            return None, target
        from pyarrow import fs

        endpoint = self.aws_endpoint_url
        s3 = fs.S3FileSystem(
            access_key=self.aws_access_key_id, secret_key=self.aws_secret_access_key,
            session_token=self.aws_session_token, region=self.aws_region or "us-east-1",
            endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme=endpoint.split("://", 1)[0] if endpoint else "https",
            anonymous=self.aws_no_sign_request,
        )
        return s3, target.removeprefix("s3://")


def _unpickle(public: dict[str, Any], had: tuple[str, ...]) -> Settings:
    """A pickled :class:`Settings` back, with the credentials it had taken from this process's environment."""
    credentials: dict[str, Any] = {name: os.environ.get(_SECRET_ENV[name]) for name in had}
    return Settings(**public, **credentials)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(raw)
