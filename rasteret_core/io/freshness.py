"""Staleness: has a source COG changed since its header was parsed?

Enrichment stores each asset's ETag, size and last-modified time with its header
(:data:`~rasteret_core.table.schema.HEADER_TYPE`). A COG replaced afterwards (same
href, new bytes) would be read with the old tile offsets, so reads check first:

- :func:`expected_objects` takes what the stored headers say of each href;
- :func:`check_fresh` asks the store (one HEAD per object, concurrently) and raises
  :class:`~rasteret_core.errors.StaleAssetError` naming the changed objects and
  the way out (``collection.enrich(refresh="stale")``);
- :func:`find_stale` lists every changed asset of a table (what ``enrich`` refreshes).

Objects compare by ETag when both sides have one (quotes and a weak ``W/`` prefix
aside), else by size and, when both are known, last-modified time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_core.errors import StaleAssetError
from rasteret_core.settings import Settings

from .runtime import with_stores
from .store import ObjectInfo, Stores

__all__ = ["ObjectFacts", "StaleAsset", "check_fresh", "expect_fresh", "expected_objects", "find_stale", "stale_assets"]


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What enrichment recorded of an object."""

    etag: str | None
    size: int | None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class StaleAsset:
    """One asset whose object changed since enrichment: where, and what differs."""

    record_id: str
    band: str
    href: str
    stored: ObjectFacts
    current: ObjectFacts


def _etag(value: str | None) -> str | None:
    if value is None:
        return None
    return value.removeprefix("W/").strip('"') or None


def unchanged(stored: ObjectFacts, current: ObjectInfo | ObjectFacts) -> bool:
    """Whether the object the store describes now is the one enrichment saw."""
    old, new = _etag(stored.etag), _etag(current.etag)
    if old is not None and new is not None:
        return old == new
    if stored.size is not None and current.size is not None and stored.size != current.size:
        return False
    if stored.last_modified and current.last_modified:
        return stored.last_modified == current.last_modified
    return True


def _asset_facts(table: pa.Table, bands: Sequence[str] | None) -> Iterable[tuple[str, str, str, ObjectFacts]]:
    """(record id, band, href, stored facts) of every enriched asset, read column-wise (no header lists)."""
    names = [f.name for f in table.schema.field("assets").type]
    ids = table["id"].to_pylist()
    for band in bands or names:
        asset = pc.struct_field(table["assets"], [names.index(band)])
        header = pc.struct_field(asset, "header")
        columns = [pc.struct_field(asset, "href").to_pylist()] + [
            pc.struct_field(header, name).to_pylist() for name in ("etag", "size", "last_modified")
        ]
        valid = header.is_valid().to_pylist()
        for rid, ok, href, etag, size, modified in zip(ids, valid, *columns, strict=True):
            if ok and href:
                yield rid, band, href, ObjectFacts(etag, size, modified)


def expected_objects(table: pa.Table, bands: Sequence[str] | None = None) -> dict[str, ObjectFacts]:
    """What the stored headers say of each href (of ``bands``, default all): the input of :func:`check_fresh`."""
    return {href: facts for _, _, href, facts in _asset_facts(table, bands)}


async def _current(hrefs: Iterable[str], stores: Stores) -> dict[str, ObjectInfo]:
    unique = list(dict.fromkeys(hrefs))
    infos = await asyncio.gather(*(stores.head(h) for h in unique))
    return dict(zip(unique, infos, strict=True))


def _message(changed: Sequence[tuple[str, ObjectFacts, ObjectInfo | ObjectFacts]]) -> str:
    listed = "; ".join(
        f"{href} (ETag {stored.etag} -> {now.etag}, size {stored.size} -> {now.size})" for href, stored, now in changed[:5]
    )
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return (
        f"{len(changed)} source COG(s) changed since the collection's headers were parsed: {listed}{more}. "
        "The stored tile offsets no longer describe them; re-enrich the collection with "
        "collection.enrich(refresh='stale') (or refresh=True), then read again"
    )


async def check_fresh(expected: Mapping[str, ObjectFacts], stores: Stores) -> None:
    """Check that every object is still the one its header was parsed from (one HEAD each, concurrently).

    Args:
        expected: href -> stored facts, from :func:`expected_objects` on the rows a read plans over.
        stores: The read's stores (their concurrency bound and credentials apply).

    Raises:
        StaleAssetError: some objects changed; the message names them and says to re-enrich.
        FetchError: a HEAD failed (``ObjectNotFoundError`` when an object is gone).
    """
    current = await _current(expected, stores)
    changed = [(href, facts, current[href]) for href, facts in expected.items() if not unchanged(facts, current[href])]
    if changed:
        raise StaleAssetError(_message(changed), uris=[href for href, _, _ in changed])


async def expect_fresh(expected: Mapping[str, ObjectFacts], stores: Stores) -> None:
    """Make ``stores`` check every object a read fetches against ``expected``, on the answers themselves.

    A ranged GET's answer carries its object's ETag, size and time, so the read needs no
    HEAD per object (:func:`check_fresh`'s way): the first answer from a changed object
    raises before its bytes are decoded with the old tile offsets.

    Raises (from the read's requests):
        StaleAssetError: an object changed; the message names it and says to re-enrich.
    """

    def check(uri: str, info: ObjectInfo) -> None:
        facts = expected.get(uri)
        if facts is not None and not unchanged(facts, info):
            raise StaleAssetError(_message([(uri, facts, info)]) + " (collection.stale_assets() lists every one)",
                                  uris=[uri])

    stores.expect(check)


async def find_stale(table: pa.Table, stores: Stores, *, bands: Sequence[str] | None = None) -> list[StaleAsset]:
    """Every enriched asset of ``table`` whose object changed (one HEAD per distinct href)."""
    assets = list(_asset_facts(table, bands))
    current = await _current((href for _, _, href, _ in assets), stores)
    out = []
    for rid, band, href, facts in assets:
        now = current[href]
        if not unchanged(facts, now):
            out.append(StaleAsset(rid, band, href, facts, ObjectFacts(now.etag, now.size, now.last_modified)))
    return out


def stale_assets(table: pa.Table, *, settings: Settings, bands: Sequence[str] | None = None) -> list[StaleAsset]:
    """:func:`find_stale` from sync code, on the shared I/O runtime."""
    return with_stores(settings, lambda stores: find_stale(table, stores, bands=bands))
