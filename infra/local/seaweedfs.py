"""Run SeaweedFS (``weed mini``) as a loopback S3 endpoint with one identity, for development and tests."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasteret_demo.process import HOST, find_binary, free_port, running

__all__ = ["S3Service", "seaweedfs"]

GRPC_OFFSET = 10000  # SeaweedFS dials some gRPC ports at http port + 10000
_BUCKET_EXISTS = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


@dataclass(frozen=True, slots=True)
class S3Service:
    """A running S3-compatible endpoint and the credentials it enforces.

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT``.
        access_key: Access key id of the one identity.
        secret_key: Its secret key.
        region: Region name clients sign with.
    """

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """Return the environment variables that point S3 clients here.

        ``AWS_DEFAULT_REGION`` is included too: botocore takes its region from it.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self, **config: Any) -> Any:
        """Return a boto3 S3 client for this endpoint (path-style addressing).

        Args:
            **config: Extra ``botocore.config.Config`` options.
        """
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def create_bucket(self, name: str) -> None:
        """Create a bucket (no error when it already exists)."""
        from botocore.exceptions import ClientError

        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _BUCKET_EXISTS:
                raise
        finally:
            client.close()

    def upload_dir(self, local_dir: str | os.PathLike[str], bucket: str, prefix: str = "") -> list[str]:
        """Upload every file under ``local_dir`` to ``bucket``, keyed by relative path.

        Args:
            local_dir: Folder to upload (recursively).
            bucket: Existing bucket.
            prefix: Prepended to every key as is (give ``"dir/"`` for a folder).

        Returns:
            The keys written, sorted.
        """
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        keys = [prefix + p.relative_to(root).as_posix() for p in files]
        client = self.client(max_pool_connections=16)

        def upload(path: Path, key: str) -> None:
            client.upload_file(str(path), bucket, key)

        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(upload, files, keys))  # list() re-raises the first failure
        finally:
            client.close()
        return sorted(keys)


_WEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def _weed_argv(weed: str, workdir: Path, s3_config: Path, ports: dict[str, int]) -> list[str]:
    """Build the ``weed mini`` command: loopback only, every port chosen, extras off."""
    argv = [
        weed,
        "-logtostderr=true",  # into weed.log, not glog files in /tmp
        "mini",
        f"-dir={workdir / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.config={s3_config}",
        "-master.telemetry=false",  # it would report to a public URL
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",
    ]
    for component in _WEED_COMPONENTS:
        port = ports[component]
        argv += [f"-{component}.port={port}", f"-{component}.port.grpc={port + GRPC_OFFSET}"]
    sockets = workdir / "sock"
    if len(str(sockets)) < 80:  # unix socket paths are limited to ~107 bytes
        sockets.mkdir(parents=True, exist_ok=True)
        argv += [f"-filer.localSocket={sockets / 'filer.sock'}", f"-s3.localSocket={sockets / 's3.sock'}"]
    return argv


@contextlib.contextmanager
def seaweedfs(
    workdir: Path, *, access_key: str = "rasteret", secret_key: str = "rasteret-secret"
) -> Iterator[S3Service]:
    """Run ``weed mini`` on free loopback ports with one S3 identity; yield its endpoint.

    The master, volume, filer, S3 and admin servers each get a free port ``p``
    and their gRPC port ``p + 10000`` (the admin's worker dials that offset
    whatever ``-admin.port.grpc`` says); WebDAV, the Iceberg and Lance catalogs
    and telemetry are off. The S3 gateway enforces the given credentials.

    Args:
        workdir: Folder for the data, the identities file and ``weed.log``.
        access_key: The identity's access key id.
        secret_key: The identity's secret key.

    Yields:
        The running service.

    Raises:
        ServiceError: ``weed`` is missing or S3 did not answer in time.
    """
    weed = find_binary("weed", install='pip install "rasteret[test]"')
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    s3_config = workdir / "s3-identities.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "rasteret",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    grpc_ports: list[int] = []  # of every attempt, for the socket clean-up

    def launch() -> tuple[list[str], Callable[[], bool], S3Service]:
        taken: set[int] = set()
        ports: dict[str, int] = {}
        for component in _WEED_COMPONENTS:
            port = free_port(also_free=(GRPC_OFFSET,))
            while {port, port + GRPC_OFFSET} & taken:
                port = free_port(also_free=(GRPC_OFFSET,))
            taken |= {port, port + GRPC_OFFSET}
            ports[component] = port
            grpc_ports.append(port + GRPC_OFFSET)
        service = S3Service(f"http://{HOST}:{ports['s3']}", access_key, secret_key)

        def ready() -> bool:
            client = service.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
            try:
                client.list_buckets()  # signed: proves the identities file is in force
            finally:
                client.close()
            return True

        return _weed_argv(weed, workdir, s3_config, ports), ready, service

    try:
        with running("weed mini (S3)", workdir / "weed.log", workdir, launch) as service:
            yield service
    finally:
        # weed leaves a gRPC unix socket behind when stopped while a component is
        # still starting: /tmp/seaweedfs-<component>-grpc-<port>.sock.
        for port in grpc_ports:
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)
