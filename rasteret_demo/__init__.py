"""What ``rasteret demo`` needs beyond the product: a synthetic archive and a loopback STAC API.

Installed with ``pip install "rasteret[demo]"`` (rasterio writes the archive,
``rustac serve`` serves its items). The tests, the benchmarks and the local
services of ``infra/local`` use the same pieces; of the product, only the demo
(``rasteret_flows.demo``) imports this package.

- :mod:`rasteret_demo.archive`: the synthetic Sentinel-2 L2A-like archive of COGs and its STAC items;
- :mod:`rasteret_demo.stac`: ``rustac serve`` on a free loopback port;
- :mod:`rasteret_demo.process`: the subprocess supervision both build on.
"""

from __future__ import annotations

import importlib.util

__all__ = ["DEMO_EXTRA", "check_demo_extra"]

DEMO_EXTRA = 'pip install "rasteret[demo]"'
"""The command that installs what the demo needs."""


def check_demo_extra() -> None:
    """Raise ``ImportError`` naming the demo extra when rasterio or the ``rustac`` executable is missing."""
    from .process import ServiceError, find_binary

    missing = [] if importlib.util.find_spec("rasterio") else ["rasterio"]
    try:
        find_binary("rustac")
    except ServiceError:
        missing.append("rustac")
    if missing:
        raise ImportError(f"the demo needs {' and '.join(missing)}: {DEMO_EXTRA}")
