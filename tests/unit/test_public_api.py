"""The public surface: user names at the top, engine pieces in rasteret_core.engine, old names shimmed."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

import rasteret_core as rc
from rasteret_core import engine


def test_top_level_is_the_user_surface():
    for name in ("Collection", "load", "build", "build_from_stac", "build_from_table", "catalog", "Settings",
                 "ReadOptions", "ReadResult", "IOStats", "Resampling", "Match", "Mosaic", "RasteretError",
                 "__version__"):
        assert name in rc.__all__
        assert hasattr(rc, name)
    for name in ("execute_plan", "fetch_headers", "plan_read", "Stores", "ByteStore", "merge_changes"):
        assert name not in rc.__all__
        assert name in engine.__all__


def test_literals_list_the_modes():
    assert typing.get_args(rc.Resampling) == ("nearest", "bilinear")
    assert set(typing.get_args(rc.Match)) == set(engine.MATCHES)
    assert typing.get_args(rc.Mosaic) == ("first", "latest", "median")


def test_old_top_level_names_still_resolve_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"rasteret_core\.engine\.plan_read"):
        assert rc.plan_read is engine.plan_read
    with pytest.raises(AttributeError):
        _ = rc.no_such_name


def test_read_options_are_checked_once():
    with pytest.raises(rc.PlanningError, match="resampling"):
        rc.ReadOptions(resampling="cubic")  # type: ignore[arg-type]
    with pytest.raises(rc.PlanningError, match="not both"):
        rc.ReadOptions(overview=0, resolution=20.0)


def test_every_read_method_takes_read_options_one_way():
    """``options=`` and keywords over it, checked in one place; the same names on every read method."""
    from rasteret_core.read.grid import ReadKeywords, read_options

    base = rc.ReadOptions(masked=True, overview=1)
    merged = read_options(base, all_touched=True, overview=None, target_crs="EPSG:32631")
    assert (merged.masked, merged.all_touched, merged.overview) == (True, True, None)
    assert merged.target_crs is not None and merged.target_crs.to_epsg() == 32631  # any pyproj input, as a CRS
    assert dataclasses.astuple(read_options()) == dataclasses.astuple(rc.ReadOptions())
    with pytest.raises(rc.PlanningError, match=r"unknown read option\(s\) \['maskd'\]"):
        read_options(maskd=True)  # type: ignore[call-arg]
    with pytest.raises(rc.PlanningError, match="not both"):
        read_options(base, resolution=10.0)  # overview from options, resolution from a keyword: still checked
    assert set(ReadKeywords.__annotations__) == {f.name for f in dataclasses.fields(rc.ReadOptions)}
    for method in ("explain", "get_numpy", "read_numpy", "get_xarray", "get_table", "read_table", "get_gdf",
                   "sample_points", "sample_table"):
        params = inspect.signature(getattr(rc.Collection, method)).parameters
        assert "options" in params and params["keywords"].kind is inspect.Parameter.VAR_KEYWORD, method
