"""The ingestion core: select the records that changed, parse their headers, merge them in one commit.

Every way of building or updating a collection runs these steps. The build
functions here (:func:`build_from_stac`, :func:`build_from_table`,
:func:`ingest_records`) run them in one process; the ingestion and enrichment
flows run the same functions as Prefect tasks, parsing headers in partitions:

1. :func:`read_digests` (I/O, two columns, no header): the stored records' digests.
2. :func:`select_changed` (pure): the new and changed rows. A row whose digest (its
   content and, with enrichment, every header parsed) equals the stored one is
   skipped before any header is read.
3. :func:`~rasteret_core.table.enrich.enrich_records` (I/O): parse their headers;
   :func:`~rasteret_core.table.enrich.drop_failures` leaves out (``partial``) or refuses the
   records whose headers failed.
4. :func:`merge_changes` (I/O): one Delta commit, a merge on ``id`` whose metadata
   says what happened; no commit when no row is left.

So re-running an ingestion over an unchanged source reads no header and commits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack

import pyarrow as pa
import pyarrow.compute as pc

from .collection import Collection, load
from .errors import SourceError
from .settings import Settings
from .table import delta as _delta
from .table.enrich import HeaderFailure, drop_failures, enrich_records
from .table.schema import record_hashes, without_internal
from .table.sources import records_from_table
from .table.stac import SearchKeywords, records_from_stac

__all__ = [
    "ChangeSet",
    "Changes",
    "MergeResult",
    "StoredDigests",
    "build_from_stac",
    "build_from_table",
    "ingest_records",
    "merge_changes",
    "read_digests",
    "select_changed",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredDigests:
    """A collection version's records by id, with their digests.

    Attributes:
        version: The version read; None when there is no table yet.
        digests: Record id -> digest (:func:`~rasteret_core.table.schema.record_hashes`);
            None for a row written before rows had digests (it is re-ingested).
    """

    version: int | None = None
    digests: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """How the records offered to an ingestion compare with the stored ones (counts and ids, no rows).

    Attributes:
        records: Records offered.
        unchanged: Those the collection holds as they are (skipped before any header is read).
        new_ids: Ids of offered records the collection lacks; the other changed ones replace rows.
        base_version: The version compared against; None when there is no table yet.
    """

    records: int
    unchanged: int = 0
    new_ids: frozenset[str] = frozenset()
    base_version: int | None = None

    @property
    def changed(self) -> int:
        """Records new or changed: the ones to enrich and merge."""
        return self.records - self.unchanged

    def to_json(self) -> dict[str, Any]:
        """These changes as JSON values (``new_ids`` sorted); :meth:`from_json` reads them back."""
        return {"records": self.records, "unchanged": self.unchanged, "new_ids": sorted(self.new_ids),
                "base_version": self.base_version}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Changes:
        """The changes :meth:`to_json` wrote."""
        return cls(records=int(value["records"]), unchanged=int(value["unchanged"]),
                   new_ids=frozenset(value["new_ids"]), base_version=value["base_version"])


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ChangeSet:
    """The rows an ingestion has to enrich and merge, and how the offered records compared.

    Attributes:
        table: The new and changed rows, in the order offered.
        changes: The counts (and new ids) the commit's metadata reports.
    """

    table: pa.Table
    changes: Changes


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeResult:
    """What :func:`merge_changes` did.

    Attributes:
        version: The collection's version afterwards: the new one, or the base version
            when nothing was committed (None: there is still no table).
        committed: Whether a commit was made.
        inserted: Rows inserted.
        updated: Rows replaced.
    """

    version: int | None
    committed: bool
    inserted: int = 0
    updated: int = 0


def read_digests(uri: str, *, settings: Settings) -> StoredDigests:
    """The latest version of the collection at ``uri`` and its records' digests (reads two columns).

    An empty :class:`StoredDigests` when there is no table yet.
    """
    version, digests = _delta.stored_hashes(uri, settings=settings)
    return StoredDigests(version=version, digests=digests)


def select_changed(table: pa.Table, stored: StoredDigests, *, enrich: bool = True) -> ChangeSet:
    """The rows of ``table`` that are new or differ from the stored ones; no I/O.

    A row is unchanged when the stored row with its id has the digest the row has
    (with ``enrich``: will have once its headers are parsed, so a stored row lacking
    a header is selected again); such rows are left out before any header is read.

    Raises:
        SourceError: two rows share an id.
    """
    ids = table["id"]
    if pc.count_distinct(ids).as_py() != table.num_rows:
        counts = pc.value_counts(ids)
        dupes = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:5]
        raise SourceError(f"record ids must be unique; repeated: {dupes}")
    known = stored.digests
    id_list = ids.to_pylist()
    if not known:
        return ChangeSet(table=table, changes=Changes(records=table.num_rows, new_ids=frozenset(id_list),
                                                      base_version=stored.version))
    enriched = record_hashes(table, assume_headers=True).to_pylist()
    actual = enriched if enrich else record_hashes(table).to_pylist()
    keep = [
        rid not in known or (known[rid] != full and (enrich or known[rid] != now))
        for rid, full, now in zip(id_list, enriched, actual, strict=True)
    ]
    todo = table.filter(pa.array(keep, pa.bool_()))
    new = frozenset(rid for rid, kept in zip(id_list, keep, strict=True) if kept and rid not in known)
    return ChangeSet(table=todo, changes=Changes(records=table.num_rows, unchanged=table.num_rows - todo.num_rows,
                                                 new_ids=new, base_version=stored.version))


def merge_changes(
    table: pa.Table,
    uri: str,
    *,
    changes: Changes,
    settings: Settings,
    operation: str,
    parsed: int = 0,
    skipped: Sequence[HeaderFailure] = (),
    metadata: Mapping[str, Any] | None = None,
) -> MergeResult:
    """Merge the (enriched) new and changed rows into the collection at ``uri`` on id, in one commit.

    The commit's metadata carries ``metadata`` and the counts: ``records``,
    ``unchanged``, ``inserted``, ``updated``, ``headers_parsed`` and, when records
    were left out, ``records_skipped`` and ``skipped`` (id, band, error; the first 100).
    With no row there is no commit.

    Raises:
        SchemaError: the rows' columns differ from the collection's.
        CollectionError: the table cannot be written.
    """
    if table.num_rows == 0:
        log.info("%s: no new or changed record to commit (%d unchanged)", uri, changes.unchanged)
        return MergeResult(version=changes.base_version, committed=False)
    inserted = sum(1 for rid in table["id"].to_pylist() if rid in changes.new_ids)
    counts = {"records": changes.records, "unchanged": changes.unchanged, "inserted": inserted,
              "updated": table.num_rows - inserted, "headers_parsed": parsed}
    if skipped:
        counts |= {"records_skipped": len({f.record_id for f in skipped}),
                   "skipped": [{"id": f.record_id, "band": f.band, "error": f.error} for f in skipped[:100]]}
    version, merged = _delta.merge_table(without_internal(table), uri, settings=settings, operation=operation,
                                         metadata={**(metadata or {}), **counts},
                                         exists=changes.base_version is not None)
    log.info("%s: version %d: %s, %d unchanged", uri, version, merged, changes.unchanged)
    return MergeResult(version=version, committed=True, inserted=merged["inserted"], updated=merged["updated"])


def ingest_records(
    table: pa.Table,
    uri: str | None,
    *,
    settings: Settings,
    operation: str,
    metadata: Mapping[str, Any] | None = None,
    enrich: bool = True,
    partial: bool = False,
) -> Collection:
    """Commit new and changed records to the collection at ``uri``; skip the ones it already holds.

    Runs the steps of this module in one process: :func:`select_changed` against
    :func:`read_digests`, :func:`~rasteret_core.table.enrich.enrich_records` (with ``enrich``),
    :func:`merge_changes`. When every row is unchanged (or failed) there is no
    commit and the collection's version is returned as it was. With ``uri`` None the
    collection stays in memory.

    With ``partial``, records with an asset whose header cannot be parsed (corrupt,
    unsupported, not georeferenced) are left out and the rest committed; the commit's
    metadata lists them under ``skipped`` and counts them in ``records_skipped``.
    Without it such a record fails the whole build.

    Raises:
        SourceError: two rows share an id.
        CollectionError: a header could not be parsed (nothing is committed).
    """
    stored = read_digests(uri, settings=settings) if uri is not None else StoredDigests()
    selected = select_changed(table, stored, enrich=enrich)
    if uri is not None and selected.table.num_rows == 0:
        log.info("%s: all %d record(s) unchanged; nothing to commit", uri, table.num_rows)
        return load(uri, version=stored.version, settings=settings)
    skipped: tuple[HeaderFailure, ...] = ()
    todo, parsed = selected.table, 0
    if enrich:
        result = enrich_records(todo, settings=settings)
        todo = drop_failures(result.table, result.failures, partial=partial)
        skipped, parsed = result.failures, result.parsed
    if uri is None:
        return Collection(todo, settings=settings)
    merged = merge_changes(todo, uri, changes=selected.changes, settings=settings, operation=operation,
                           parsed=parsed, skipped=skipped, metadata=metadata)
    if not merged.committed:
        log.warning("%s: every new or changed record failed; nothing to commit", uri)
    return load(uri, version=merged.version, settings=settings)


def build_from_stac(*, stac_api: str, collection: str, uri: str | None, bands: Mapping[str, str] | None = None,
                    href_rewrites: Mapping[str, str] | None = None, enrich: bool = True, partial: bool = False,
                    settings: Settings | None = None, operation: str = "build_from_stac",
                    metadata: Mapping[str, Any] | None = None, **filters: Unpack[SearchKeywords]) -> Collection:
    """Search a STAC API, normalise the items, parse their COG headers, commit to Delta at ``uri``.

    Args:
        stac_api: API root URL.
        collection: STAC collection id.
        uri: Delta table (local path or ``s3://``); None keeps the collection in memory.
        bands: band name -> asset key (``{"B04": "red"}``); None takes every COG asset.
        href_rewrites: href prefix -> replacement (``{"https://host/": "s3://bucket/"}``).
        enrich: Parse the COG headers now.
        partial: Leave out the records whose headers cannot be parsed (listed in the
            commit's metadata) instead of failing the build.
        settings: Defaults to :meth:`Settings.from_env`.
        operation: The commit's ``rasteret.operation``.
        metadata: More commit metadata (never secrets).
        **filters: The search's ``bbox``, ``datetime``, ``intersects``, ``query``, ``max_items``
            (:class:`~rasteret_core.table.stac.SearchKeywords`).

    Re-running the same search commits nothing; changed items update their rows
    (merge on id) and the rest are left alone. The ingestion flow
    (``ingest_collection``) runs the same steps with the same options.
    """
    settings = settings or Settings.from_env()
    found = records_from_stac(stac_api, collection=collection, bands=bands, href_rewrites=href_rewrites,
                              timeout=settings.request_timeout, **filters)
    return ingest_records(found.table, uri, settings=settings, operation=operation, enrich=enrich, partial=partial,
                          metadata={**found.metadata, **(metadata or {})})


def build_from_table(
    source: Any,
    *,
    uri: str | None = None,
    column_map: Mapping[str, str] | None = None,
    bands: Mapping[str, str] | None = None,
    geometry_crs: Any | None = None,
    enrich: bool = True,
    partial: bool = False,
    settings: Settings | None = None,
) -> Collection:
    """Build a collection from a record table (see :func:`~rasteret_core.table.sources.records_from_table` for what it takes).

    With ``uri`` the records are committed there (merge on id, unchanged rows
    skipped); without, the collection stays in memory. Rows that already carry
    parsed headers (an exported collection) keep them; ``enrich`` parses the rest.
    ``partial`` leaves out the records whose headers cannot be parsed (see
    :func:`ingest_records`) instead of failing the build.
    """
    settings = settings or Settings.from_env()
    table = records_from_table(source, column_map=column_map, bands=bands, geometry_crs=geometry_crs)
    return ingest_records(table, uri, settings=settings, operation="build_from_table", enrich=enrich, partial=partial,
                          metadata={"source": _describe(source), "records": table.num_rows,
                                    "column_map": dict(column_map) if column_map else None})


def _describe(source: Any) -> str:
    if isinstance(source, str) or hasattr(source, "__fspath__"):
        return str(source)
    return type(source).__name__
