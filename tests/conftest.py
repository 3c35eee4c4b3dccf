"""Session fixtures: the synthetic sample archive, SeaweedFS S3 and a STAC API.

The services are real (``weed mini`` and ``rustac serve``) on free loopback ports,
started once per session and stopped at its end.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

# Prefect reads these when first imported: set them before any test module does.
_PREFECT_HOME = tempfile.mkdtemp(prefix="rasteret-prefect-home-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

from infra.local.seaweedfs import S3Service, seaweedfs  # noqa: E402
from rasteret_demo.stac import stac_api as _stac_api  # noqa: E402

if TYPE_CHECKING:
    from rasteret_demo.archive import SampleArchive

SAMPLE_BUCKET = "rasteret-sample"
TABLES_BUCKET = "rasteret-tables"
SAMPLE_HREF_BASE = f"s3://{SAMPLE_BUCKET}/"


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory: pytest.TempPathFactory) -> SampleArchive:
    """The synthetic Sentinel-2-like archive (6 scenes, 36 COGs) on local disk."""
    from rasteret_demo.archive import make_sample_archive

    return make_sample_archive(tmp_path_factory.mktemp("sample-archive"), scale=1, seed=0)


@pytest.fixture(scope="session")
def s3(
    tmp_path_factory: pytest.TempPathFactory, sample_archive: SampleArchive
) -> Iterator[S3Service]:
    """SeaweedFS S3 with the archive in ``rasteret-sample`` and an empty ``rasteret-tables``.

    Keys mirror paths under the archive root (``cogs/...``). ``AWS_*`` variables
    point at the service for the session and are restored afterwards.
    """
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as service:
        service.create_bucket(SAMPLE_BUCKET)
        service.create_bucket(TABLES_BUCKET)
        service.upload_dir(sample_archive.root, SAMPLE_BUCKET)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in service.env().items():
                patch.setenv(key, value)
            yield service


@pytest.fixture(scope="session")
def s3_items(s3: S3Service, sample_archive: SampleArchive) -> list[dict[str, Any]]:
    """The sample STAC items with hrefs ``s3://rasteret-sample/cogs/...``."""
    return sample_archive.items_with_href_base(SAMPLE_HREF_BASE)


@pytest.fixture(scope="session")
def stac_api(
    tmp_path_factory: pytest.TempPathFactory, s3: S3Service, sample_archive: SampleArchive
) -> Iterator[str]:
    """Root URL of a ``rustac serve`` STAC API holding the items with s3:// hrefs."""
    folder = tmp_path_factory.mktemp("stac")
    items_path = sample_archive.write_items(folder / "items.json", base=SAMPLE_HREF_BASE)
    collection_path = sample_archive.write_collection(folder / "collection.json")
    with _stac_api(items_path, collection_path=collection_path) as url:
        yield url
