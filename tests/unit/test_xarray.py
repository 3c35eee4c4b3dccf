"""The pure pieces of the xarray surface: mosaic grouping and combining, chunk sizes, option checks."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest

from rasteret_core.errors import PlanningError
from rasteret_core.read.xarray import check_mosaic, group_records, mosaic_layers, resolve_chunks


def test_records_group_by_their_utc_date():
    cest = timezone(timedelta(hours=2))
    times = [
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 2, 1, 30, tzinfo=cest),  # 1 May, 23:30 UTC
        datetime(2024, 5, 2, 0, 10, tzinfo=UTC),
        datetime(2024, 5, 2, 0, 20),  # noqa: DTZ001 - naive: UTC
    ]
    assert group_records(times, "date") == ([[0, 1], [2, 3]], [date(2024, 5, 1), date(2024, 5, 2)])
    assert group_records(times, "all") == ([[0, 1, 2, 3]], [None])
    assert group_records([None, None, datetime(2024, 1, 1, tzinfo=UTC)], "date") == (
        [[0, 1], [2]], [None, date(2024, 1, 1)])


M = None  # a masked pixel


def _ma(values, dtype="float64"):
    missing = np.array([[[v is None for v in row] for row in layer] for layer in values])
    filled = [[[0 if v is None else v for v in row] for row in layer] for layer in values]
    return np.ma.MaskedArray(np.array(filled, dtype=dtype), mask=missing)


DATA = _ma([
    [[1, M, 3], [M, M, 6]],
    [[10, 20, M], [M, 50, 60]],
    [[100, 200, 300], [M, 500, M]],
], dtype="uint16")


@pytest.mark.parametrize(("how", "groups", "want"), [
    ("first", [[0, 1, 2]], [[[1, 20, 3], [M, 50, 6]]]),
    ("latest", [[0, 1, 2]], [[[100, 200, 300], [M, 500, 60]]]),
    ("first", [[1, 2], [0]], [[[10, 20, 300], [M, 50, 60]], [[1, M, 3], [M, M, 6]]]),
    ("latest", [[0, 1]], [[[10, 20, 3], [M, 50, 60]]]),
    ("median", [[0, 1, 2]], [[[10, 110, 151.5], [M, 275, 33]]]),
])
def test_mosaic_layers(how, groups, want):
    got = mosaic_layers(DATA, groups, how)
    want = _ma(want)
    np.testing.assert_array_equal(got.mask, np.ma.getmaskarray(want))
    np.testing.assert_array_equal(got.compressed(), want.compressed())
    assert got.dtype == (np.float32 if how == "median" else np.uint16)


def test_a_median_of_nothing_valid_is_masked_without_a_warning():
    data = np.ma.array(np.zeros((2, 2, 2), "float64"), mask=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = mosaic_layers(data, [[0, 1]], "median")
    assert got.mask.all() and got.dtype == np.float64


@pytest.mark.parametrize(("chunks", "want"), [
    ({"time": 1, "y": 100, "x": 128}, ((1, 1, 1), (100, 100, 50), (128, 128, 44))),
    ({"y": 256}, ((3,), (250,), (300,))),
    ({"time": -1, "y": None, "x": 1000}, ((3,), (250,), (300,))),
])
def test_chunk_sizes(chunks, want):
    assert resolve_chunks(chunks, (3, 250, 300), np.dtype("uint16"), (512, 512)) == want


def test_auto_chunks_are_one_layer_and_tile_multiples():
    got = resolve_chunks("auto", (4, 20000, 20000), np.dtype("uint16"), (512, 512))
    assert got[0] == (1, 1, 1, 1)
    assert got[1][0] % 512 == 0 and got[2][0] % 512 == 0 and sum(got[1]) == 20000


@pytest.mark.parametrize(("chunks", "message"), [
    ({"band": 1}, "unknown dimension"),
    ({"y": 0}, "positive int"),
    ({"x": 1.5}, "positive int"),
    ("lots", "'auto' or a mapping"),
    (64, "'auto' or a mapping"),
])
def test_bad_chunks_are_refused(chunks, message):
    with pytest.raises(PlanningError, match=message):
        resolve_chunks(chunks, (3, 250, 300), np.dtype("uint16"), (512, 512))


def test_mosaic_options_are_checked():
    check_mosaic(None, "date")
    check_mosaic("median", "all")
    with pytest.raises(PlanningError, match="mosaic must be"):
        check_mosaic("max", "date")  # type: ignore[arg-type]
    with pytest.raises(PlanningError, match="group_by must be"):
        check_mosaic("first", "month")  # type: ignore[arg-type]
    with pytest.raises(PlanningError, match="pass mosaic="):
        check_mosaic(None, "all")
