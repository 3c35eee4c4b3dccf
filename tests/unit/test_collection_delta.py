"""Collections on a local Delta table: idempotent ingestion, versions, time travel, pruned filters, maintenance."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import shapely
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rasteret_core as rc
from bench.synthetic import synthetic_batches
from rasteret_core.table.delta import COLLECTION_CONFIGURATION, cluster_order

MONTHS = ("2023-01-01/2023-08-31", "2023-09-01/2024-04-30", "2024-05-01/2024-12-31")


def _synthetic(n: int = 240) -> pa.Table:
    return pa.concat_tables(synthetic_batches(n, tiles=40, batch=n, seed=1))


@pytest.fixture(scope="module")
def records() -> pa.Table:
    return _synthetic()


@pytest.fixture(scope="module")
def three_commits(tmp_path_factory, records) -> str:
    """A collection written by three ingestions, one per period, so it has several files."""
    uri = str(tmp_path_factory.mktemp("delta") / "col")
    for period in MONTHS:
        part = rc.Collection(records).subset(datetime=period).to_arrow()
        rc.build_from_table(part, uri=uri, enrich=False)
    return uri


def test_a_loaded_collection_reads_nothing_until_asked(three_commits, records):
    col = rc.load(three_commits)
    assert (len(col), col.bands, col.version) == (records.num_rows, [f.name for f in records.schema.field("assets").type], 2)
    assert col._lazy and "rasteret:record_hash" in col.schema.names
    assert col.to_arrow().num_rows == records.num_rows and not col._lazy


def test_new_tables_index_the_core_columns_and_cluster_rows(three_commits, records):
    dt = DeltaTable(three_commits)
    assert dt.metadata().configuration == COLLECTION_CONFIGURATION
    assert dt.metadata().partition_columns == ["rasteret_month"]
    months = {p["rasteret_month"] for p in dt.partitions()}
    assert months == set(pc.strftime(records["datetime"], "%Y-%m").to_pylist())
    stats = pa.table(dt.get_add_actions(flatten=True))
    assert {"min.bbox.xmin", "max.bbox.ymax", "min.datetime", "max.eo:cloud_cover"} <= set(stats.schema.names)
    assert "min.properties" not in stats.schema.names
    order = cluster_order(records).to_numpy()
    months = pc.strftime(records["datetime"], "%Y-%m").to_numpy(zero_copy_only=False)[order]
    assert list(months) == sorted(months)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=st.floats(-180, 170), y=st.floats(-60, 60), size=st.floats(0.5, 60), start=st.integers(0, 700),
       days=st.integers(1, 200), cloud=st.one_of(st.none(), st.floats(0, 100)))
def test_a_pruned_subset_keeps_exactly_the_in_memory_subset(three_commits, records, x, y, size, start, days, cloud):
    origin = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py().replace(year=2023)
    period = ((origin + timedelta(days=start)).isoformat(), (origin + timedelta(days=start + days)).isoformat())
    query = {"bbox": (x, y, x + size, y + size), "datetime": period, "cloud_cover_lt": cloud}
    want = sorted(rc.Collection(records).subset(**query).to_arrow()["id"].to_pylist())
    got = rc.load(three_commits).subset(**query)
    assert sorted(got.to_arrow()["id"].to_pylist()) == want
    assert got.version == 2 and got.uri == three_commits


def test_subset_and_where_open_only_files_that_may_match(three_commits, caplog):
    col = rc.load(three_commits)
    files = len(DeltaTable(three_commits).file_uris())
    assert files >= 3
    with caplog.at_level(logging.DEBUG, logger="rasteret_core.table.delta"):
        sub = col.subset(datetime="2024-06-01/2024-06-30", bbox=(-180, -90, 180, 90))
        where = col.where(pc.field("datetime") < pa.scalar(datetime(2023, 8, 31, tzinfo=UTC),
                                                            pa.timestamp("us", tz="UTC")))
    read = [r.getMessage() for r in caplog.records if "file(s)" in r.getMessage()]
    assert read and "reading 1 file(s)" in read[0]
    assert len(sub) == len(rc.Collection(col.to_arrow()).subset(datetime="2024-06-01/2024-06-30"))
    assert len(where) > 0 and pc.max(where.to_arrow()["datetime"]).as_py().year == 2023


def test_reingesting_the_same_records_commits_nothing(tmp_path, records):
    uri = str(tmp_path / "col")
    first = rc.build_from_table(records, uri=uri, enrich=False)
    again = rc.build_from_table(records, uri=uri, enrich=False)
    assert first.version == again.version == 0  # one commit creates the table holding the records
    history = rc.load(uri).history()
    assert [(h["version"], h["operation"], h["delta_operation"]) for h in history] == [(0, "build_from_table", "WRITE")]
    assert int(history[0]["metrics"]["num_added_rows"]) == records.num_rows


def test_changed_records_update_their_rows_and_leave_the_rest(tmp_path, records):
    uri = str(tmp_path / "col")
    rc.build_from_table(records, uri=uri, enrich=False)
    before = DeltaTable(uri).history(1)[0]["timestamp"]
    time.sleep(0.05)
    changed_ids = records["id"].to_pylist()[:3]
    changed = records.set_column(records.schema.get_field_index("eo:cloud_cover"), "eo:cloud_cover",
                                 pc.if_else(pc.is_in(records["id"], pa.array(changed_ids)), -1.0,
                                            records["eo:cloud_cover"]))
    bigger = _synthetic(250)
    extra = bigger.filter(pc.invert(pc.is_in(bigger["id"], records["id"])))  # ten new records
    col = rc.build_from_table(pa.concat_tables([changed, extra]), uri=uri, enrich=False)
    assert col.version == 1 and len(col) == records.num_rows + 10
    entry = col.history()[0]
    assert entry["operation"] == "build_from_table" and entry["delta_operation"] == "MERGE"
    meta = entry["metadata"]
    assert (meta["inserted"], meta["updated"], meta["unchanged"]) == (10, 3, records.num_rows - 3)
    assert int(entry["metrics"]["num_target_rows_updated"]) == 3
    now = col.to_arrow()
    assert sorted(now.filter(pc.field("eo:cloud_cover") == -1.0)["id"].to_pylist()) == sorted(changed_ids)
    assert pc.count_distinct(now["id"]).as_py() == now.num_rows
    # time travel: by version, and by timestamp (naive means UTC; ISO strings too)
    old = rc.load(uri, version=0)  # the creating build's commit holds its records
    assert old.version == 0 and len(old) == records.num_rows
    assert [h["operation"] for h in col.history()] == ["build_from_table"] * 2
    assert sorted(old.subset(ids=changed_ids).to_arrow()["eo:cloud_cover"].to_pylist()) == \
        sorted(rc.Collection(records).subset(ids=changed_ids).to_arrow()["eo:cloud_cover"].to_pylist())
    at_v0 = datetime.fromtimestamp(before / 1000, tz=UTC)
    assert rc.load(uri, as_of=at_v0).version == 0
    assert rc.load(uri, as_of=at_v0.replace(tzinfo=None)).version == 0
    assert rc.load(uri, as_of=entry["timestamp"].isoformat()).version == 1
    with pytest.raises(rc.CollectionError, match="history"):
        rc.load(uri, version=7)
    with pytest.raises(rc.CollectionError, match="not both"):
        rc.load(uri, version=0, as_of=at_v0)


def test_optimize_compacts_and_vacuum_removes_unused_files(tmp_path, records):
    uri = str(tmp_path / "col")
    for part in (records.slice(0, 80), records.slice(80, 80), records.slice(160)):  # each spans every month
        rc.build_from_table(part, uri=uri, enrich=False)
    before = rc.load(uri)
    files_before = len(DeltaTable(uri).file_uris())
    optimized = before.optimize()
    assert optimized.version == before.version + 1 and len(DeltaTable(uri).file_uris()) < files_before
    assert optimized.history()[0]["operation"] == "optimize"
    assert sorted(optimized.to_arrow()["id"].to_pylist()) == sorted(records["id"].to_pylist())
    assert optimized.vacuum() == []  # the default retention (a week) keeps every version loadable
    listed = optimized.vacuum(retention_hours=0, enforce_retention_duration=False)
    assert len(listed) == files_before and all(p.endswith(".parquet") for p in listed)
    assert len(list((tmp_path / "col").rglob("*.parquet"))) == files_before + len(DeltaTable(uri).file_uris())
    removed = optimized.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    assert sorted(removed) == sorted(listed)
    assert len(list((tmp_path / "col").rglob("*.parquet"))) == len(DeltaTable(uri).file_uris())
    latest = rc.load(uri)  # vacuum commits too (VACUUM START / END)
    assert len(latest) == records.num_rows and latest.optimize().version == latest.version  # nothing to compact
    with pytest.raises(rc.CollectionError):
        rc.load(uri, version=1).to_arrow()  # its files are gone


def test_an_in_memory_collection_has_no_history_or_maintenance(records):
    col = rc.Collection(records)
    for call in (col.history, col.optimize, col.vacuum):
        with pytest.raises(rc.CollectionError, match="in-memory"):
            call()


def test_duplicate_ids_are_refused(records, tmp_path):
    with pytest.raises(rc.SourceError, match="unique"):
        rc.build_from_table(pa.concat_tables([records.slice(0, 2), records.slice(0, 1)]), uri=str(tmp_path / "x"),
                            enrich=False)


def test_subset_geometries_in_another_crs(three_commits, records):
    col = rc.load(three_commits)
    row = records.to_pylist()[5]
    centre = shapely.from_wkb(row["geometry"]).centroid
    from pyproj import Transformer

    epsg = int(row["crs"].split(":")[1])
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(centre.x, centre.y)
    sub = col.subset(geometries=shapely.Point(x, y).buffer(100), geometry_crs=epsg)
    assert row["id"] in sub.to_arrow()["id"].to_pylist()


def test_recluster_rewrites_rows_in_cluster_order(tmp_path, records):
    uri = str(tmp_path / "col")
    for part in (records.slice(0, 80), records.slice(80, 80), records.slice(160)):  # shuffled, not by time
        rc.build_from_table(part, uri=uri, enrich=False)
    col = rc.load(uri).optimize(recluster=True)
    assert col.history()[0]["metadata"] == {"recluster": True, "records": records.num_rows}
    stored = col.to_arrow()
    assert sorted(stored["id"].to_pylist()) == sorted(records["id"].to_pylist())
    months = set(pc.strftime(stored["datetime"], "%Y-%m").to_pylist())
    assert len(DeltaTable(uri).file_uris()) == len(months)  # one file per month partition, rows in cluster order
    assert rc.load(uri).subset(datetime=MONTHS[0]).to_arrow().num_rows == \
        rc.Collection(records).subset(datetime=MONTHS[0]).to_arrow().num_rows


@pytest.fixture(scope="module")
def many_row_groups(tmp_path_factory) -> tuple[str, pa.Table]:
    """A light table of 2,000 rows in 128-row groups: the pruned read's row-group path."""
    import numpy as np
    from deltalake import write_deltalake

    from rasteret_core.table.delta import _WRITER

    rng = np.random.default_rng(2)
    n = 2000
    x, y = np.sort(rng.uniform(-180, 179, n)), rng.uniform(-80, 79, n)
    table = pa.table({
        "id": [f"r{i:05d}" for i in range(n)],
        "datetime": pa.array((rng.uniform(0, 3e7, n) + 1.7e9).astype("int64") * 1_000_000,
                             pa.timestamp("us", tz="UTC")),
        "bbox": pa.StructArray.from_arrays([pa.array(x), pa.array(y), pa.array(x + 1), pa.array(y + 1)],
                                           names=["xmin", "ymin", "xmax", "ymax"]),
        "assets": pa.StructArray.from_arrays([pa.array(rng.integers(0, 100, n))], names=["value"]),
    })
    uri = str(tmp_path_factory.mktemp("rowgroups") / "t")
    write_deltalake(uri, table, writer_properties=_WRITER)
    return uri, table


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=st.floats(-180, 179), width=st.floats(0.1, 40), below=st.integers(0, 100))
def test_the_pruned_read_takes_exactly_the_matching_rows(many_row_groups, x, width, below):
    from rasteret_core.table.delta import open_snapshot

    uri, table = many_row_groups
    snapshot = open_snapshot(uri, settings=rc.Settings.from_env())
    got = snapshot.read(bbox=(x, -90, x + width, 90), where=pc.field("assets", "value") < below)
    keep = pc.and_(pc.and_(pc.less_equal(pc.struct_field(table["bbox"], "xmin"), x + width),
                           pc.greater_equal(pc.struct_field(table["bbox"], "xmax"), x)),
                   pc.less(pc.struct_field(table["assets"], "value"), below))
    want = table.filter(keep)
    assert got.sort_by("id").equals(want.sort_by("id"))
