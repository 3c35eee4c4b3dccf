"""Start the real local services (SeaweedFS S3, a STAC API, a Prefect server and worker) on free loopback ports.

Each service is a context manager that launches a subprocess bound to 127.0.0.1,
waits until it answers, yields its endpoint, and on exit stops it for sure
(terminate, then kill, then wait). A service that does not come up raises
:class:`ServiceError` with the tail of its log.

Run everything for manual work with::

    python -m infra.local.services up --root /tmp/rasteret-sample

and the whole stack, Prefect included, with ``python -m infra.local.stack up``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = [
    "Background",
    "S3Service",
    "SampleServices",
    "ServiceError",
    "free_port",
    "main",
    "prefect_env",
    "prefect_server",
    "prefect_worker",
    "seaweedfs",
    "stac_api",
    "start_sample_services",
    "wait_for_interrupt",
]

HOST = "127.0.0.1"
GRPC_OFFSET = 10000  # SeaweedFS dials some gRPC ports at http port + 10000
_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_ATTEMPTS = 3
_PORT_TAKEN = ("address already in use", "is not available")  # rustac's, weed's and uvicorn's words
_BUCKET_EXISTS = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
_T = TypeVar("_T")


class ServiceError(RuntimeError):
    """A local service could not be started (or found)."""


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


# ---------------------------------------------------------------------- processes


def free_port(*, also_free: Sequence[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that is free now (and each ``port + offset``).

    Args:
        also_free: Offsets that must be free as well, e.g. ``(10000,)`` for a
            service that also listens at ``port + 10000``.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(15000, 30000)
        if all(_bindable(port + offset) for offset in (0, *also_free)):
            return port
    raise ServiceError("found no free loopback port")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _find_binary(name: str) -> str:
    """Locate ``name`` next to the running interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"cannot find the {name!r} executable next to {sys.executable} or on PATH")
    return found


def _log_tail(path: Path, lines: int = 30) -> str:
    """Return the end of a log (and its first lines, where usage errors land)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    if len(text) <= lines:
        return "\n".join(text)
    return "\n".join([*text[:5], "[...]", *text[-(lines - 5) :]])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc``; kill it when it does not exit in time; reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _popen(argv: list[str], log_path: Path, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,  # Ctrl-C reaches only us, and we stop it in order
        )


@contextlib.contextmanager
def _running(
    name: str,
    log_path: Path,
    cwd: Path,
    launch: Callable[[], tuple[list[str], Callable[[], bool], _T]],
    env: Mapping[str, str] | None = None,
    timeout: float = _STARTUP_TIMEOUT,
) -> Iterator[_T]:
    """Start a service, wait until it is ready, yield; stop it on exit, whatever happens.

    Args:
        name: For messages.
        log_path: Receives the process's stdout and stderr.
        cwd: Working directory of the process.
        launch: Picks fresh ports and returns ``(argv, ready, value)``; called
            again when a port was taken between choosing and binding it (other
            test sessions on the machine pick ports too).
        env: The process's environment (default: this process's).
        timeout: Seconds to wait until it is ready.

    Yields:
        The ``value`` of the launch that came up.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        argv, ready, value = launch()
        proc = _popen(argv, log_path, cwd, env)
        try:
            _wait_until(name, proc, log_path, ready, timeout)
        except ServiceError:
            _stop(proc)
            log = _log_tail(log_path).lower()
            if attempt < _ATTEMPTS and any(marker in log for marker in _PORT_TAKEN):
                continue
            raise
        except BaseException:
            _stop(proc)
            raise
        break
    try:
        yield value
    finally:
        _stop(proc)


def _wait_until(
    name: str,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float = _STARTUP_TIMEOUT,
) -> float:
    """Poll ``ready()`` until true; return the seconds waited.

    Raises:
        ServiceError: The process exited, or ``timeout`` passed; the message
            carries the tail of the log.
    """
    start = time.monotonic()
    last: Exception | None = None
    while True:
        if proc.poll() is not None:
            raise ServiceError(
                f"{name} exited with code {proc.returncode} before it was ready; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            if ready():
                return time.monotonic() - start
        except Exception as exc:  # any failure of the probe means: not ready yet
            last = exc
        if time.monotonic() - start > timeout:
            raise ServiceError(
                f"{name} did not answer within {timeout:.0f} s (last error: {last!r}); "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.1)


# ---------------------------------------------------------------------- SeaweedFS

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
    weed = _find_binary("weed")
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
        with _running("weed mini (S3)", workdir / "weed.log", workdir, launch) as service:
            yield service
    finally:
        # weed leaves a gRPC unix socket behind when stopped while a component is
        # still starting: /tmp/seaweedfs-<component>-grpc-<port>.sock.
        for port in grpc_ports:
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)


# ----------------------------------------------------------------------- STAC API


@contextlib.contextmanager
def stac_api(items_path: Path, *, collection_path: Path | None = None) -> Iterator[str]:
    """Run ``rustac serve`` (memory backend) on a free loopback port; yield its root URL.

    Args:
        items_path: An ItemCollection (FeatureCollection) JSON file to load.
        collection_path: A Collection JSON to load first; without it, rustac
            creates a bare collection for every ``collection`` id the items name.

    Yields:
        The API root, ``http://127.0.0.1:PORT/``, once ``/collections`` answers
        and a search of each item collection returns items.

    Raises:
        ServiceError: ``rustac`` is missing or the API did not come up in time.
    """
    rustac = _find_binary("rustac")
    items_path = Path(items_path).resolve()
    features = json.loads(items_path.read_text(encoding="utf-8"))["features"]
    collections = sorted({f["collection"] for f in features if f.get("collection")})
    def launch() -> tuple[list[str], Callable[[], bool], str]:
        port = free_port()
        url = f"http://{HOST}:{port}/"
        argv = [rustac, "serve", "--addr", f"{HOST}:{port}"]
        if collection_path is None:
            argv.append("--create-collections")
        else:
            argv.append(str(Path(collection_path).resolve()))
        argv.append(str(items_path))

        def ready() -> bool:
            from pystac_client import Client

            with urllib.request.urlopen(url + "collections", timeout=2) as response:
                if response.status != 200:
                    return False
            if not collections:
                return True
            return len(Client.open(url).search(collections=collections).item_collection()) > 0

        return argv, ready, url

    log_path = items_path.with_name(items_path.stem + ".rustac.log")
    with _running("rustac serve", log_path, items_path.parent, launch) as url:
        yield url


# ------------------------------------------------------------------------ Prefect


def prefect_env(home: Path | None = None, api_url: str | None = None,
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Prefect process here: telemetry off, its own home, this API.

    Args:
        home: ``PREFECT_HOME`` (profiles, the server's SQLite database, local results).
        api_url: ``PREFECT_API_URL`` for clients and workers; None leaves it out (a server).
        base: The environment to start from (default: this process's).
    """
    env = dict(os.environ if base is None else base)
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_API_HOST": HOST})
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    env.pop("PREFECT_API_URL", None)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


@contextlib.contextmanager
def prefect_server(workdir: Path, *, ui: bool = False, timeout: float = 180.0) -> Iterator[str]:
    """Run ``prefect server start`` on a free loopback port (SQLite under ``workdir``); yield its API URL.

    Args:
        workdir: ``PREFECT_HOME`` of the server (its database) and ``prefect-server.log``.
        ui: Serve the web UI too (slower to start).
        timeout: Seconds to wait for it (a fresh database is migrated first: 5 to 60 s).

    Yields:
        ``http://127.0.0.1:PORT/api``, once ``/api/health`` answers.

    Raises:
        ServiceError: ``prefect`` is missing or the server did not come up in time.
    """
    prefect = _find_binary("prefect")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = prefect_env(workdir)
    env["PREFECT_UI_ENABLED"] = "true" if ui else "false"
    env["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"

    def launch() -> tuple[list[str], Callable[[], bool], str]:
        port = free_port()
        url = f"http://{HOST}:{port}/api"

        def ready() -> bool:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                return response.status == 200

        return [prefect, "server", "start", "--host", HOST, "--port", str(port)], ready, url

    with _running("prefect server", workdir / "prefect-server.log", workdir, launch, env, timeout) as url:
        yield url


@contextlib.contextmanager
def prefect_worker(pool: str, *, api_url: str, cwd: Path, log_path: Path,
                   env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Run ``prefect worker start --pool POOL`` (polling until stopped) against ``api_url``.

    Args:
        pool: An existing work pool (a process pool runs each flow run as a subprocess of the worker).
        api_url: The Prefect API.
        cwd: The worker's working folder (where deployments' flows run when they do not set one).
        log_path: Receives the worker's output.
        env: Its environment (default: this process's, for ``AWS_*`` and ``RASTERET_*``).

    Raises:
        ServiceError: the worker did not register with the server in time.
    """
    prefect = _find_binary("prefect")

    def launch() -> tuple[list[str], Callable[[], bool], None]:
        def ready() -> bool:
            request = urllib.request.Request(f"{api_url}/work_pools/{pool}/workers/filter", data=b"{}",
                                             headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(json.loads(response.read()))

        return [prefect, "worker", "start", "--pool", pool, "--type", "process"], ready, None

    worker_env = prefect_env(api_url=api_url, base=env)
    with _running(f"prefect worker ({pool})", Path(log_path), Path(cwd), launch, worker_env):
        yield


class Background(Generic[_T]):
    """A service context manager entered in a thread, so that its start overlaps other work.

    ``wait()`` returns what the context manager yielded (or raises what its start
    raised); ``stop()`` leaves it, stopping the service.
    """

    def __init__(self, factory: Callable[[], contextlib.AbstractContextManager[_T]]) -> None:
        self._factory = factory
        self._ready = threading.Event()
        self._done = threading.Event()
        self._value: _T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rasteret-service", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._factory() as value:
                self._value = value
                self._ready.set()
                self._done.wait()
        except BaseException as exc:  # noqa: BLE001 -- handed to the thread that waits, which re-raises it
            self._error = exc
        finally:
            self._ready.set()

    def wait(self) -> _T:
        """Block until the service is up; return its value."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def stop(self) -> None:
        """Stop the service and wait until it has stopped."""
        self._done.set()
        self._thread.join()


# ---------------------------------------------------------------------------- CLI


@dataclass(frozen=True, slots=True)
class SampleServices:
    """The sample archive served locally: S3 with the COGs, a STAC API with their items.

    Attributes:
        root: The work folder.
        s3: The S3 service (its ``env()`` points clients at it).
        stac_api: Root URL of the STAC API.
        items_path: The STAC items file the API serves (hrefs ``s3://BUCKET/cogs/...``).
        collection_id: The STAC collection id.
    """

    root: Path
    s3: S3Service
    stac_api: str
    items_path: Path
    collection_id: str


def start_sample_services(stack: contextlib.ExitStack, root: Path, *, scale: int = 1,
                          bucket: str = "rasteret-sample", echo: Callable[[str], None] = print) -> SampleServices:
    """Write the sample archive under ``root``, serve it from SeaweedFS and a STAC API; stop both with ``stack``.

    Buckets: ``bucket`` (the archive, keys as under its root) and ``rasteret-tables`` (empty).
    """
    from rasteret_core.sample import make_sample_archive

    start = time.monotonic()
    archive = make_sample_archive(root / "archive", scale=scale)
    echo(f"sample archive: {len(archive.cog_paths)} COGs under {archive.root} ({time.monotonic() - start:.1f} s)")
    s3 = stack.enter_context(seaweedfs(root / "seaweedfs"))
    s3.create_bucket(bucket)
    s3.create_bucket("rasteret-tables")
    s3.upload_dir(archive.root, bucket)
    base = f"s3://{bucket}/"
    items_path = archive.write_items(root / "stac" / "items.json", base=base)
    collection_path = archive.write_collection(root / "stac" / "collection.json")
    url = stack.enter_context(stac_api(items_path, collection_path=collection_path))
    echo(f"S3 endpoint:   {s3.endpoint_url} (buckets {bucket}, rasteret-tables; hrefs {base}cogs/...)")
    echo(f"STAC API:      {url}  (collection {archive.collection['id']})")
    echo(f"STAC items:    {items_path}")
    return SampleServices(root, s3, url, items_path, archive.collection["id"])


def wait_for_interrupt(echo: Callable[[str], None] = print) -> None:
    """Block until Ctrl-C or SIGTERM (also where a shell started us with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    echo("Ctrl-C stops everything.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("stopping.")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the sample archive from SeaweedFS and its items from a STAC API until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.services", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="make the sample archive and start SeaweedFS and rustac")
    up.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    up.add_argument("--scale", type=int, default=1, help="sample image size multiplier")
    up.add_argument("--bucket", default="rasteret-sample")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        root = (args.root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rasteret-")))).resolve()
        services = start_sample_services(stack, root, scale=args.scale, bucket=args.bucket)
        print("export:")
        for key, value in services.s3.env().items():
            print(f"  export {key}={value}")
        wait_for_interrupt()
    print("stopped.")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
