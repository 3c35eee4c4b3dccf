"""Window statistics (rasteret_core.read.stats) against numpy, and plans cut into bounded batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pyproj import CRS

import rasteret_core as rc
from rasteret_core.read.planner import ChunkRequest, plan_read, split_plan
from rasteret_core.read.stats import STATISTICS, check_stats, reduce_window, stats_columns, value_type
from rasteret_core.tiff.header import ImageInfo, TiffHeader

DTYPES = ["uint8", "uint16", "int16", "int32", "uint32", "float32", "float64"]


@st.composite
def masked_windows(draw: st.DrawFn) -> np.ma.MaskedArray:
    """A window of any dtype, any shape, with any mask (none, some, all); floats may hold NaN and infinities."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12))
    elements = st.floats(allow_nan=True, allow_infinity=False, width=dtype.itemsize * 8) if dtype.kind == "f" else None
    data = draw(hnp.arrays(dtype, shape, elements=elements))
    mask = draw(st.one_of(st.just(np.zeros(shape, bool)), st.just(np.ones(shape, bool)),
                          hnp.arrays(np.bool_, shape)))
    return np.ma.MaskedArray(data, mask=mask)


def _oracle(window: np.ma.MaskedArray) -> np.ndarray:
    values = window.data[~np.ma.getmaskarray(window)]
    return values[~np.isnan(values)] if values.dtype.kind == "f" else values


@settings(max_examples=300, deadline=None)
@given(masked_windows())
def test_statistics_equal_numpy_over_the_valid_values(window):
    got = reduce_window(window, STATISTICS)
    values = _oracle(window)
    assert got["count"] == values.size
    if values.size == 0:
        assert all(got[name] is None for name in STATISTICS if name != "count")
        return
    assert got["min"] == values.min() and got["max"] == values.max()
    assert got["min"].dtype == window.dtype and got["max"].dtype == window.dtype  # exact, in the band's dtype
    # The oracle: numpy in float64; where its sums overflow, on the values scaled into range.
    as_float = values.astype(np.float64)
    scale = max(float(np.max(np.abs(as_float))), 1.0)

    def oracle(reduce):
        with np.errstate(over="ignore", invalid="ignore"):
            plain = reduce(as_float)
        return plain if np.isfinite(plain) else reduce(as_float / scale) * scale

    mean, std = oracle(np.mean), oracle(np.std)
    np.testing.assert_allclose(got["median"], oracle(np.median), rtol=1e-15)
    np.testing.assert_allclose(got["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(got["std"], std, rtol=1e-9, atol=scale * 1e-12)  # rounding of the mean, at most


def test_statistics_of_values_near_the_float64_limit_are_finite():
    big = np.finfo(np.float64).max / 2 * 1.0000001  # the sum of two overflows a plain float64 mean
    got = reduce_window(np.ma.MaskedArray(np.array([[big, big]])), ["mean", "std", "median"])
    assert got == {"mean": pytest.approx(big), "std": 0.0, "median": pytest.approx(big)}


def test_nan_nodata_is_left_out_and_an_all_invalid_window_has_count_zero():
    data = np.array([[np.nan, 1.5, 2.5], [np.nan, np.nan, 4.0]], np.float32)
    as_nodata = np.ma.MaskedArray(data, mask=np.isnan(data))  # NaN nodata: the fetcher masks it
    unmasked_nan = np.ma.MaskedArray(data, mask=np.zeros(data.shape, bool))  # NaN GDAL calls valid: no value either
    for window in (as_nodata, unmasked_nan, data):
        got = reduce_window(window, ["count", "mean", "min", "max", "std", "median"])
        assert got == {"count": 3, "mean": pytest.approx(8 / 3), "min": np.float32(1.5), "max": np.float32(4.0),
                       "std": pytest.approx(np.std([1.5, 2.5, 4.0])), "median": 2.5}
    empty = reduce_window(np.ma.MaskedArray(data, mask=True), ["mean", "count", "max"])
    assert empty == {"mean": None, "count": 0, "max": None}
    assert list(empty) == ["mean", "count", "max"]  # in the order asked


def test_only_the_statistics_asked_are_computed(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("median computed without being asked")

    monkeypatch.setattr(np, "median", boom)
    assert reduce_window(np.ma.MaskedArray(np.arange(6).reshape(2, 3)), ["count", "max"]) == {"count": 6, "max": 5}


def test_stat_names_are_checked_with_the_valid_ones_listed():
    assert check_stats(["count", "mean"]) == ("count", "mean")
    assert check_stats("median") == ("median",)
    with pytest.raises(rc.StatisticError, match=r"\['average'\]; the valid ones are count, mean, min, max, std, median"):
        check_stats(["count", "average"])
    with pytest.raises(rc.StatisticError, match="more than once"):
        check_stats(["mean", "mean"])
    with pytest.raises(rc.StatisticError, match="no statistic asked"):
        check_stats([])
    assert issubclass(rc.StatisticError, rc.PlanningError)


def test_columns_keep_exact_types_and_nulls():
    windows = [reduce_window(np.ma.MaskedArray(np.array([[3, 65535]], np.uint16)), STATISTICS),
               reduce_window(np.ma.MaskedArray(np.array([[7]], np.uint16), mask=True), STATISTICS)]
    cols = stats_columns(windows, ["max", "count", "mean", "median"], np.dtype("uint16"))
    assert list(cols) == ["max", "count", "mean", "median"]
    assert cols["max"].type == pa.int32() and cols["max"].to_pylist() == [65535, None]  # widened, as Delta stores it
    assert cols["count"].type == pa.int64() and cols["count"].to_pylist() == [2, 0]
    assert cols["mean"].type == pa.float64() and cols["mean"].to_pylist() == [32769.0, None]
    assert cols["median"].to_pylist() == [32769.0, None]
    assert value_type(np.dtype("float32")) == np.float32 and value_type(np.dtype("int16")) == np.int16
    assert value_type(np.dtype("uint8")) == np.int16 and value_type(np.dtype("uint32")) == np.int64
    f32 = stats_columns([reduce_window(np.ma.MaskedArray(np.array([[0.1]], np.float32)), ["min"])], ["min"],
                        np.dtype("float32"))
    assert f32["min"].type == pa.float32() and f32["min"].to_numpy()[0] == np.float32(0.1)
    assert stats_columns([], ["min", "count"], np.dtype("uint16"))["min"].type == pa.int32()


# ---------------------------------------------------------------- plans cut into batches

def _image(width=1000, height=700, tile=128) -> ImageInfo:
    across, down = -(-width // tile), -(-height // tile)
    n = across * down
    counts = np.full(n, 100, dtype=np.int64)
    counts[3] = 0  # a sparse tile
    return ImageInfo(
        width=width, height=height, tile_width=tile, tile_height=tile, tiled=True, samples_per_pixel=1,
        bits_per_sample=16, sample_format=1, planar_config=1, compression=8, predictor=2, photometric=1,
        subfile_type=0, tile_offsets=np.arange(n, dtype=np.int64) * 100 + 1000, tile_byte_counts=counts,
    )


UTM = CRS.from_epsg(32632)
boxes_st = st.lists(st.tuples(st.integers(-100, 1000), st.integers(-100, 700), st.integers(1, 400),
                              st.integers(1, 400)), min_size=1, max_size=12)


@settings(deadline=None)
@given(boxes_st, st.integers(1, 200_000), st.integers(0, 2000))
def test_batches_keep_every_chunk_once_in_order_and_read_just_their_tiles(boxes, max_pixels, gap):
    header = TiffHeader(uri="mem://x.tif", byte_order="<", bigtiff=False, images=(_image(),), crs="EPSG:32632",
                        transform=(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0), nodata=0.0)
    requests = [ChunkRequest(key=i, uri=f"mem://{i % 2}.tif", header=header, geometry_crs=UTM,
                             geometry=shapely.box(500_000 + 10 * c, 5_000_000 - 10 * (r + h), 500_000 + 10 * (c + w),
                                                  5_000_000 - 10 * r))
                for i, (c, r, w, h) in enumerate(boxes)]
    plan = plan_read(requests, coalesce_gap=gap, max_request_bytes=1_000)
    batches = split_plan(plan, max_pixels=max_pixels)
    assert [c.key for b in batches for c in b.chunks] == [c.key for c in plan.chunks]
    image = header.image
    for batch in batches:
        pixels = sum(c.window.height * c.window.width for c in batch.chunks)
        assert pixels <= max_pixels or len(batch.chunks) == 1
        needed = {(c.uri, t) for c in batch.chunks for t in c.tiles if image.tile_byte_counts[t] > 0}
        read = [(r.uri, p.tile) for r in batch.requests for p in r.parts]
        assert sorted(read) == sorted(needed)  # every tile the batch needs, once, and no other
        for req in batch.requests:  # no request grows: each lies inside one of the plan's
            assert any(o.uri == req.uri and o.start <= req.start and req.end <= o.end for o in plan.requests)
            assert all(req.start <= p.offset and p.offset + p.length <= req.end for p in req.parts)
    if sum(c.window.height * c.window.width for c in plan.chunks) <= max_pixels:
        assert batches == (plan,)


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(rc.PlanningError, match="at least 1"):
        split_plan(plan_read([]), max_pixels=0)
    with pytest.raises(rc.ConfigError, match="RASTERET_BATCH_PIXELS"):
        rc.Settings.from_env({"RASTERET_BATCH_PIXELS": "0"})
