"""The ``extract-aois`` flow: AOIs read in batches through the one batched-read path (``_batched``)."""

from __future__ import annotations

from prefect import flow

from rasteret_tasks import AoiOptions, Mode

from ._batched import BatchedReadSummary, read_in_batches


@flow(name="extract-aois")
def extract_aois(
    collection_uri: str,
    aois: str,
    bands: list[str],
    out_uri: str,
    version: int | None = None,
    batch_size: int = 64,
    geometry_column: str = "geometry",
    geometry_crs: str | None = None,
    all_touched: bool = False,
    mode: Mode = "overwrite",
    max_in_flight: int = 4,
    stats: list[str] | None = None,
    overview: int | None = None,
) -> BatchedReadSummary:
    """Read ``bands`` for every AOI in the (Geo)Parquet file ``aois`` (local or ``s3://``); write one output table.

    The output keeps every AOI column and adds one row per AOI x record x band
    (see ``Collection.get_table``); with ``stats`` (``["count", "mean", ...]``) the rows
    hold those statistics instead of pixels, in the same schema ``get_table(stats=...)``
    returns; ``overview`` reads that overview level. Each batch of at most ``batch_size``
    AOIs reads only its own rows of ``aois``. The collection version is pinned at the
    start. A batch that still fails after its retries is reported (log, artifact, the
    summary's ``failures``) and the others are committed.
    """
    options = AoiOptions(stats=None if stats is None else tuple(stats), all_touched=all_touched, overview=overview)
    return read_in_batches(options, collection_uri, aois, bands, out_uri, version=version, batch_size=batch_size,
                           geometry_column=geometry_column, geometry_crs=geometry_crs, mode=mode,
                           max_in_flight=max_in_flight)
