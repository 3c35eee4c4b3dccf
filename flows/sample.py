"""The ``sample-points`` flow: points sampled in batches through the one batched-read path (``_batched``)."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from rasteret_tasks import Mode, PointOptions

from ._batched import BatchedReadSummary, read_in_batches


@flow(name="sample-points")
def sample_points(
    collection_uri: str, points: str, bands: list[str], out_uri: str, version: int | None = None,
    batch_size: int = 1024, geometry_column: str = "geometry", geometry_crs: str | None = None,
    match: Literal["all", "first", "latest", "nearest-date"] = "all", mode: Mode = "overwrite",
    max_in_flight: int = 4, x_column: str | None = None, y_column: str | None = None, date_column: str | None = None,
    masked: bool = False,
) -> BatchedReadSummary:
    """Sample ``bands`` at every point of the (Geo)Parquet file ``points`` (local or ``s3://``); write one output table.

    The output keeps every point column and adds ``record_id``, ``datetime``,
    ``band`` and ``value``: one row per point x record x band (``match="all"``), or
    per point x band from the first or latest record covering it, or the one nearest
    in time to the point's ``date_column`` (``"nearest-date"``). Points are the
    ``geometry_column`` or the ``x_column``/``y_column`` coordinates (CRS
    ``geometry_crs``); ``masked`` writes invalid pixels as null values. The rows and
    columns are ``Collection.sample_points``'s for the same options (unsigned values
    widened: Delta has no unsigned types). Each batch of at most ``batch_size`` points
    reads only its own rows of ``points``. The collection version is pinned at the
    start. A batch that still fails after its retries is reported (log, artifact, the
    summary's ``failures``) and the others are committed.
    """
    options = PointOptions(match=match, date_column=date_column, x_column=x_column, y_column=y_column, masked=masked)
    return read_in_batches(options, collection_uri, points, bands, out_uri, version=version, batch_size=batch_size,
                           geometry_column=geometry_column, geometry_crs=geometry_crs, mode=mode,
                           max_in_flight=max_in_flight)
