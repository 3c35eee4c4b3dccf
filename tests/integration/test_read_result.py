"""read_numpy / read_table: one ReadOptions in, a ReadResult (data, I/O stats, placement) out."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

import rasteret_core as rc

ZONE32 = "EPSG:32632"


def _box(col):
    """A box inside one scene on EPSG:32632, in that CRS (as the oracle tests pick it)."""
    row = next(r for r in col.to_arrow().to_pylist() if r["crs"] == ZONE32)
    a, _, c, _, e, f = row["assets"]["red"]["header"]["transform"]
    return shapely.box(c + 100.3 * a, f + 200.9 * e, c + 300.7 * a, f + 50.2 * e)


def test_read_numpy_equals_get_numpy_and_carries_stats(s3_collection):
    box = _box(s3_collection)
    options = rc.ReadOptions(all_touched=True, masked=True)
    result = s3_collection.read_numpy(box, ["red"], options=options, geometry_crs=ZONE32)
    expected = s3_collection.get_numpy(box, ["red"], all_touched=True, masked=True, geometry_crs=ZONE32)
    assert isinstance(result, rc.ReadResult)
    assert isinstance(result.data, np.ma.MaskedArray)
    np.testing.assert_array_equal(result.data.filled(), expected.filled())
    np.testing.assert_array_equal(np.ma.getmaskarray(result.data), np.ma.getmaskarray(expected))
    assert len(result.record_ids) == result.data.shape[0] == len(result.datetimes)
    assert result.bands == ("red",)
    assert result.transform is not None and result.crs
    assert isinstance(result.stats, rc.IOStats) and result.stats.requests > 0


def test_read_numpy_takes_target_crs_as_any_pyproj_input(s3_collection):
    box = _box(s3_collection)
    result = s3_collection.read_numpy(box, ["red"], options=rc.ReadOptions(target_crs="EPSG:3857", resolution=20.0),
                                      geometry_crs=ZONE32)
    expected = s3_collection.get_numpy(box, ["red"], target_crs="EPSG:3857", resolution=20.0, geometry_crs=ZONE32)
    np.testing.assert_array_equal(result.data, expected)


def test_read_table_equals_get_table(s3_collection):
    aois = pa.table({"name": ["a"], "geometry": [_box(s3_collection).wkb]})
    result = s3_collection.read_table(aois, ["red"], stats=["count", "mean"], geometry_crs=ZONE32)
    table, io = s3_collection.get_table(aois, ["red"], stats=["count", "mean"], geometry_crs=ZONE32)
    assert isinstance(result.data, pa.Table)
    assert result.data.equals(table)
    assert result.stats.requests == io.requests
    assert result.crs is not None


def test_read_table_refuses_a_target_crs(s3_collection):
    with pytest.raises(rc.PlanningError, match="target_crs"):
        s3_collection.read_table(pa.table({"geometry": [_box(s3_collection).wkb]}), ["red"],
                                 options=rc.ReadOptions(target_crs="EPSG:3857"))
