"""Serve STAC items from ``rustac serve`` (memory backend) on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from . import DEMO_EXTRA
from .process import HOST, find_binary, free_port, running

__all__ = ["stac_api"]


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
        ServiceError: ``rustac`` is missing (``pip install "rasteret[demo]"``) or the API did not come up in time.
    """
    rustac = find_binary("rustac", install=DEMO_EXTRA)
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
    with running("rustac serve", log_path, items_path.parent, launch) as url:
        yield url
