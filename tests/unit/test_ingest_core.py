"""The ingestion core's pure steps: which offered records changed, and which failed records are left out."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest
import shapely

import rasteret_core as rc
from rasteret_core.table.schema import record_hashes


def _items(n: int = 4, cloud: float = 10.0) -> list[dict]:
    out = []
    for i in range(n):
        box = shapely.box(11.0 + i, 45.0, 11.5 + i, 45.5)
        out.append({
            "type": "Feature", "id": f"item-{i}", "collection": "test", "geometry": shapely.geometry.mapping(box),
            "bbox": list(box.bounds),
            "properties": {"datetime": f"2024-01-0{i + 1}T10:00:00Z", "eo:cloud_cover": cloud + i},
            "assets": {"red": {"href": f"s3://b/{i}/red.tif", "type": "image/tiff", "roles": ["data"]}},
        })
    return out


def _records(items: list[dict]) -> pa.Table:
    return rc.engine.records_from_items(items)


def _stored(table: pa.Table, *, enriched: bool, version: int = 3) -> rc.engine.StoredDigests:
    """What the collection holds after committing ``table`` (its headers parsed, or not)."""
    digests = record_hashes(table, assume_headers=enriched).to_pylist()
    return rc.engine.StoredDigests(version=version, digests=dict(zip(table["id"].to_pylist(), digests, strict=True)))


def _changed_item() -> list[dict]:
    items = _items()
    items[1]["properties"]["eo:cloud_cover"] = 99.0
    return items


@pytest.mark.parametrize(
    ("offered", "stored", "enrich", "selected", "new"),
    [
        # nothing stored: every record is new
        (_items(), None, True, ["item-0", "item-1", "item-2", "item-3"], ["item-0", "item-1", "item-2", "item-3"]),
        # the same records, stored with their headers: nothing to do (no header is read)
        (_items(), ("same", True), True, [], []),
        # stored without headers: enrichment selects them again; a build without enrichment does not
        (_items(), ("same", False), True, ["item-0", "item-1", "item-2", "item-3"], []),
        (_items(), ("same", False), False, [], []),
        # one item changed, one new
        (_changed_item(), ("same", True), True, ["item-1"], []),
        (_items(5), ("same", True), True, ["item-4"], ["item-4"]),
    ],
    ids=["empty", "unchanged", "unenriched", "unenriched-no-enrich", "changed", "new"],
)
def test_select_changed(offered, stored, enrich, selected, new):
    table = _records(offered)
    known = rc.engine.StoredDigests() if stored is None else _stored(_records(_items()), enriched=stored[1])
    change = rc.engine.select_changed(table, known, enrich=enrich)
    assert sorted(change.table["id"].to_pylist()) == selected
    assert change.changes.records == table.num_rows
    assert change.changes.unchanged == table.num_rows - len(selected) == table.num_rows - change.changes.changed
    assert sorted(change.changes.new_ids) == new
    assert change.changes.base_version == known.version


def test_a_row_without_a_digest_is_selected_again():
    table = _records(_items(2))
    known = rc.engine.StoredDigests(version=0, digests={"item-0": None, "item-1": record_hashes(table, assume_headers=True)[1]
                                                 .as_py()})
    assert rc.engine.select_changed(table, known).table["id"].to_pylist() == ["item-0"]


def test_repeated_ids_are_refused():
    items = _items(2)
    items[1]["id"] = items[0]["id"]
    with pytest.raises(rc.SourceError, match="unique"):
        rc.engine.select_changed(_records(items), rc.engine.StoredDigests())


def test_changes_travel_as_json_and_pickle():
    changes = rc.engine.Changes(records=5, unchanged=2, new_ids=frozenset({"b", "a"}), base_version=7)
    assert changes.to_json()["new_ids"] == ["a", "b"]
    assert rc.engine.Changes.from_json(changes.to_json()) == changes
    assert pickle.loads(pickle.dumps(changes)) == changes
    assert pickle.loads(pickle.dumps(rc.engine.MergeResult(version=3, committed=True, inserted=1))).inserted == 1


def test_failed_records_are_left_out_only_when_partial():
    table = _records(_items(3))
    failures = [rc.engine.HeaderFailure("item-1", "red", "s3://b/1/red.tif", "not a TIFF", False)]
    assert rc.engine.drop_failures(table, failures, partial=True)["id"].to_pylist() == ["item-0", "item-2"]
    assert rc.engine.drop_failures(table, [], partial=False).equals(table)
    with pytest.raises(rc.CollectionError, match="item-1/red not a TIFF"):
        rc.engine.drop_failures(table, failures, partial=False)
