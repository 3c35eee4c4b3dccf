"""Fixtures over the real local services: collections built from the STAC API into Delta on S3, a Prefect server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import rasteret_core as rc


@pytest.fixture(scope="session")
def s3_collection(stac_api, s3):
    """The sample archive built from the STAC API into a Delta table on SeaweedFS."""
    return rc.build_from_stac(stac_api=stac_api, collection="sentinel-2-l2a", uri="s3://rasteret-tables/oracle",
                              bbox=(10.0, 44.0, 14.0, 47.0))


@pytest.fixture(scope="session")
def local_path_of(sample_archive):
    """Map an s3:// href of the sample bucket to the same file on local disk (for the rasterio oracle)."""

    def convert(href: str) -> str:
        prefix = "s3://rasteret-sample/"
        assert href.startswith(prefix), href
        return str(sample_archive.root / href[len(prefix):])

    return convert


_PREFECT_SERVER: list = []  # the session's one server, started in the background once collection is done


def pytest_collection_finish(session):
    """Start the Prefect server as soon as we know a test needs it: its start overlaps the other fixtures'."""
    if any("prefect_api" in getattr(item, "fixturenames", ()) for item in session.items):
        from infra.local.prefect_server import prefect_server
        from rasteret_demo.process import Background

        folder = Path(tempfile.mkdtemp(prefix="rasteret-prefect-server-"))
        _PREFECT_SERVER.append((Background(lambda: prefect_server(folder)), folder))


def pytest_sessionfinish(session):
    while _PREFECT_SERVER:
        server, folder = _PREFECT_SERVER.pop()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api():
    """One real Prefect server (``prefect server start`` on loopback) for every flow test of the session.

    Flows run in this process talk to it, and so do the processes the tests start
    (Dask workers, a killed flow run, a deployment's worker): ``PREFECT_API_URL``
    is set in the environment for the session.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = _PREFECT_SERVER[0][0].wait()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", url)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url


@pytest.fixture(scope="session")
def staging_dir(tmp_path_factory):
    """A staging folder of this session's own (``RASTERET_STAGING_DIR``), reachable by every local process."""
    folder = tmp_path_factory.mktemp("staging")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RASTERET_STAGING_DIR", str(folder))
        yield folder
