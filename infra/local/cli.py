"""Serve the sample archive from SeaweedFS and its items from a STAC API until Ctrl-C.

Run::

    python -m infra.local.cli up --root /tmp/rasteret-sample

and the whole stack, Prefect included, with ``python -m infra.local.stack up``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rasteret_demo.stac import stac_api

from .seaweedfs import S3Service, seaweedfs

__all__ = ["SampleServices", "interrupt", "main", "start_sample_services", "wait_for_interrupt"]


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
    from rasteret_demo.archive import make_sample_archive

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
    signal.signal(signal.SIGTERM, interrupt)
    echo("Ctrl-C stops everything.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("stopping.")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the sample archive from SeaweedFS and its items from a STAC API until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.cli", description=main.__doc__)
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


def interrupt(signum: int, frame: object) -> None:
    """Signal handler: raise ``KeyboardInterrupt`` (for SIGTERM)."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
