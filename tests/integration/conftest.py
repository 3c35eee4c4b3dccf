"""Fixtures over the real local services: collections built from the STAC API into Delta on S3."""

from __future__ import annotations

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
