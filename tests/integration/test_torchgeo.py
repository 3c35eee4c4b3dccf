"""TorchGeo training loops over a collection on SeaweedFS: chips equal rasterio's reads of the same windows.

The dataset (``Collection.to_torchgeo_dataset``) is sampled by TorchGeo's own
``RandomGeoSampler`` and ``GridGeoSampler`` and read by a ``DataLoader`` with two
worker processes and TorchGeo's ``stack_samples``. Every chip is compared with
rasterio on the same files: ``rasterio.warp.reproject`` (nearest) of each record
onto the chip's grid, merged first-valid in datetime order, and, for records already
on the dataset's grid, a plain windowed ``read`` (no resampling at all).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import rasterio
import rasterio.warp
import rasterio.windows
import shapely
from pyproj import CRS

import rasteret_core as rc

try:
    import torch
    from torch.utils.data import DataLoader
    from torchgeo import samplers
    from torchgeo.datasets import GeoDataset, stack_samples
except ImportError:  # the extra is missing: only the ImportError test runs
    torch = None

needs_torchgeo = pytest.mark.skipif(torch is None, reason="needs rasteret[torchgeo]")
# TorchGeo 0.10 renamed its spatial samplers (the old names warn) and they sample space only, not time
SPACE_ONLY = torch is not None and hasattr(samplers, "RandomPatchSampler")

BANDS = ["red", "swir16"]  # a 10 m and a 20 m band: the 20 m one is resampled (nearest) onto 10 m
ZONE32 = CRS.from_epsg(32632)
TQR_EAST = 732720.0  # the east edge of 32TQR, in EPSG:32632; 33TTL reaches past it


def _with_pid(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample transform that records which process read the chip (module level: it pickles)."""
    sample["pid"] = torch.tensor(os.getpid())
    return sample


@pytest.fixture(scope="module")
def records(s3_collection) -> list[dict[str, Any]]:
    return s3_collection.to_arrow().to_pylist()


@pytest.fixture(scope="module")
def dataset(s3_collection):
    return s3_collection.to_torchgeo_dataset(BANDS, crs="EPSG:32632", res=10, transforms=_with_pid)


@pytest.fixture(scope="module")
def overlap_roi(dataset) -> shapely.Polygon:
    """A 1280 m square where both UTM tiles hold valid pixels, on 32TQR's 10 m grid."""
    return shapely.box(TQR_EAST - 2560, 5070000.0, TQR_EAST - 1280, 5071280.0)


# ---------------------------------------------------------------------- the rasterio oracle
class _Recorder:
    """A TorchGeo sampler as the DataLoader sees it, remembering each query it hands out, in order."""

    def __init__(self, sampler: Any) -> None:
        self.sampler, self.queries = sampler, []

    def __iter__(self):
        for query in self.sampler:
            self.queries.append(query)
            yield query

    def __len__(self) -> int:
        return len(self.sampler)


def _random_sampler(dataset: Any, *, size: int, length: int, seed: int) -> Any:
    """TorchGeo's random sampler: ``RandomGeoSampler`` (0.8), ``RandomPatchSampler`` (0.10)."""
    if SPACE_ONLY:
        return samplers.RandomPatchSampler(dataset, size=size, length=length, generator=seed)
    return samplers.RandomGeoSampler(dataset, size=size, length=length, generator=torch.Generator().manual_seed(seed))


def _grid_sampler(dataset: Any, *, size: int, roi: shapely.Polygon) -> Any:
    """TorchGeo's grid sampler: ``GridGeoSampler`` (0.8), ``GriddedPatchSampler`` (0.10)."""
    if SPACE_ONLY:
        return samplers.GriddedPatchSampler(dataset, size=size, stride=size, roi=roi)
    return samplers.GridGeoSampler(dataset, size=size, stride=size, roi=roi)


def _query(sampled: tuple, dataset: Any) -> tuple[float, float, float, float, float, float, Any, Any]:
    """A sampler's query as (xmin, xmax, xres, ymin, ymax, yres, tmin, tmax); no time means all."""
    x, y, t = (*sampled, dataset.bounds[2]) if len(sampled) == 2 else sampled
    xres, yres = dataset.res
    return x.start, x.stop, x.step or xres, y.start, y.stop, y.step or yres, t.start, t.stop


def _same_bounds(got: Any, sampled: tuple, dataset: Any) -> bool:
    """The sample's ``bounds`` is its query: as given (TorchGeo 0.8) or as TorchGeo's tensor (0.9+)."""
    if isinstance(got, torch.Tensor):
        return torch.equal(got, dataset._slice_to_tensor(sampled))
    return got == sampled


def _dt(row: dict[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(row["datetime"]).tz_convert("UTC").tz_localize(None)


def _expected(records: Sequence[dict[str, Any]], query: tuple, crs: CRS, local_path_of: Callable[[str], str],
              bands: Sequence[str] = BANDS) -> np.ndarray:
    """rasterio's chip: each record in the time range reprojected (nearest) onto the query grid,
    merged first valid pixel wins in (datetime, id) order; fill 0 (the archive's nodata)."""
    xmin, xmax, xres, ymin, ymax, yres, tmin, tmax = query
    width, height = round((xmax - xmin) / xres), round((ymax - ymin) / yres)
    transform = rasterio.transform.from_origin(xmin, ymax, xres, yres)
    hits = sorted((r for r in records if tmin <= _dt(r) <= tmax), key=lambda r: (r["datetime"], r["id"]))
    out = np.zeros((len(bands), height, width), np.uint16)
    for bi, band in enumerate(bands):
        taken = np.zeros((height, width), bool)
        for row in hits:
            with rasterio.open(local_path_of(row["assets"][band]["href"])) as src:
                dst = np.zeros((height, width), np.uint16)
                rasterio.warp.reproject(rasterio.band(src, 1), dst, dst_transform=transform, dst_crs=crs,
                                        resampling=rasterio.warp.Resampling.nearest, src_nodata=src.nodata,
                                        dst_nodata=0)
            fresh = (dst != 0) & ~taken
            out[bi][fresh] = dst[fresh]
            taken |= fresh
    return out


def _windowed_read(row: dict[str, Any], band: str, query: tuple, local_path_of: Callable[[str], str]) -> np.ndarray:
    """A plain rasterio read of the query's window (the record is on the query's grid)."""
    xmin, xmax, xres, ymin, ymax, _, _, _ = query
    with rasterio.open(local_path_of(row["assets"][band]["href"])) as src:
        a, _, c, _, e, f = src.transform[:6]
        assert a == xres, "the record is not on the query's grid"
        window = rasterio.windows.Window(round((xmin - c) / a), round((ymax - f) / e),
                                         round((xmax - xmin) / a), round((ymin - ymax) / e))
        return src.read(1, window=window, boundless=True, fill_value=0)


def _check_batches(dataset: Any, sampler: Any, records: list[dict[str, Any]], local_path_of, *,
                   batch_size: int, **loader_options: Any) -> dict[str, int]:
    """Run a DataLoader with two workers over ``sampler``; compare every chip with rasterio.

    Returns how many chips were checked and how many of them also equal a plain windowed read.
    """
    recorder = _Recorder(sampler)
    loader = DataLoader(dataset, sampler=recorder, batch_size=batch_size, num_workers=2, collate_fn=stack_samples,
                        **loader_options)
    chips, native, pids = 0, 0, set()
    for batch in loader:
        assert batch["image"].dtype == torch.float32
        assert batch["image"].shape[1] == len(BANDS)
        pids.update(batch["pid"].tolist())
        for i in range(batch["image"].shape[0]):
            sampled = recorder.queries[chips]
            assert _same_bounds(batch["bounds"][i], sampled, dataset)
            query = _query(sampled, dataset)
            got = batch["image"][i].numpy()
            expected = _expected(records, query, dataset.crs, local_path_of)
            np.testing.assert_array_equal(got, expected.astype(np.float32))
            chips += 1
            first = min((r for r in records if query[6] <= _dt(r) <= query[7]), key=lambda r: (r["datetime"], r["id"]))
            if first["crs"] == "EPSG:32632" and (query[0] - 717360.0) % 10 == 0 == (query[4] - 5081220.0) % 10:
                plain = _windowed_read(first, "red", query, local_path_of)  # the first record wins where valid
                np.testing.assert_array_equal(got[0][plain != 0], plain[plain != 0])
                native += 1
    assert os.getpid() not in pids and len(pids) == 2, f"chips were not read by two worker processes: {pids}"
    return {"chips": chips, "native": native}


# ---------------------------------------------------------------------- tests
@needs_torchgeo
def test_the_dataset_keeps_torchgeos_contract(dataset, s3_collection):
    assert isinstance(dataset, GeoDataset)
    assert dataset.crs == ZONE32 and dataset.res == (10.0, 10.0)
    assert len(dataset) == len(s3_collection) == 6
    index = dataset.index
    assert isinstance(index.index, pd.IntervalIndex) and index.index.closed == "both" and index.index.name == "datetime"
    assert (index.index.left == index.index.right).all()  # each record is an instant
    assert index.crs == ZONE32
    tqr = index[index["id"].str.contains("32TQR")].geometry.iloc[0]
    assert tqr.bounds == (717360.0, 5065860.0, 732720.0, 5081220.0)  # its raster extent, exactly
    x, _, _ = dataset.bounds
    assert x.stop > TQR_EAST  # 33TTL's records, warped into zone 32, reach past 32TQR
    sample = dataset[TQR_EAST - 640 : TQR_EAST, 5070000.0 : 5070640.0]
    expected_keys = {"bounds", "transform", "image", "pid"} if hasattr(GeoDataset, "_slice_to_tensor") else {
        "crs", "bounds", "image", "pid"}
    assert set(sample) == expected_keys
    assert sample["image"].shape == (2, 64, 64) and sample["image"].dtype == torch.float32
    with pytest.raises(IndexError):
        dataset[0.0:640.0, 0.0:640.0]


@needs_torchgeo
def test_random_sampler_batches_from_two_workers_equal_rasterio(dataset, records, local_path_of):
    started = time.perf_counter()
    sampler = _random_sampler(dataset, size=64, length=16, seed=7)
    counts = _check_batches(dataset, sampler, records, local_path_of, batch_size=4)
    assert counts["chips"] == 16 and counts["native"] >= 1
    print(f"random sampler: {counts} in {time.perf_counter() - started:.1f} s")


@needs_torchgeo
def test_grid_sampler_batches_from_spawned_workers_equal_rasterio(dataset, records, local_path_of, overlap_roi):
    """Spawned workers get the pickled dataset (records, index, settings): nothing is inherited."""
    started = time.perf_counter()
    sampler = _grid_sampler(dataset, size=64, roi=overlap_roi)
    # 2 x 2 chips over the ROI: for each of the 6 records (both zones), or once over all dates (0.10)
    assert len(sampler) == (4 if SPACE_ONLY else 6 * 4)
    counts = _check_batches(dataset, sampler, records, local_path_of, batch_size=6 if not SPACE_ONLY else 2,
                            multiprocessing_context="spawn")
    assert counts == ({"chips": 4, "native": 4} if SPACE_ONLY else {"chips": 24, "native": 12})
    print(f"grid sampler (spawn): {counts} in {time.perf_counter() - started:.1f} s")


@needs_torchgeo
def test_a_query_over_all_dates_merges_records_first_valid_wins(dataset, records, local_path_of):
    """Astride 32TQR's east edge: the west half from 32TQR (first date), the east half warped from 33TTL."""
    query = (TQR_EAST - 320, TQR_EAST + 320, 10.0, 5070000.0, 5070640.0, 10.0, pd.Timestamp.min, pd.Timestamp.max)
    got = dataset[query[0] : query[1], query[3] : query[4]]["image"].numpy()
    expected = _expected(records, query, ZONE32, local_path_of)
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert (got[:, :, :32] > 0).all() and (got[:, :, 32:] > 0).all()
    first = next(r for r in records if r["id"] == dataset.index["id"].iloc[0])
    np.testing.assert_array_equal(got[0, :, :32], _windowed_read(first, "red", query, local_path_of)[:, :32])


@needs_torchgeo
def test_a_time_range_selects_what_the_dataset_serves(s3_collection, records, local_path_of):
    ds = s3_collection.to_torchgeo_dataset(BANDS, crs="EPSG:32632", time="2024-02-01/2024-02-29")
    assert sorted(ds.index["id"]) == ["S2A_33TTL_20240209_0_L2A", "S2B_32TQR_20240214_0_L2A"]
    _, _, t = ds.bounds
    assert t.start == pd.Timestamp("2024-02-09T10:07:51.006") and t.stop == pd.Timestamp("2024-02-14T10:17:39.512")
    query = (TQR_EAST - 320, TQR_EAST + 320, 10.0, 5070000.0, 5070640.0, 10.0, pd.Timestamp.min, pd.Timestamp.max)
    got = ds[query[0] : query[1], query[3] : query[4]]["image"].numpy()
    february = [r for r in records if r["datetime"].month == 2]
    np.testing.assert_array_equal(got, _expected(february, query, ZONE32, local_path_of).astype(np.float32))
    assert not np.array_equal(got, _expected(records, query, ZONE32, local_path_of).astype(np.float32))


@needs_torchgeo
def test_split_labels_select_what_the_dataset_serves(s3_collection, local_path_of):
    """A collection on S3 with split labels: each split is its own dataset, in its first record's CRS."""
    table = s3_collection.to_arrow()
    labels = pa.array(["train" if "32TQR" in i else "val" for i in table["id"].to_pylist()], pa.string())
    labelled = rc.build_from_table(table.set_column(table.schema.get_field_index("split"), "split", labels),
                                   uri="s3://rasteret-tables/torchgeo-splits")
    col = rc.load(labelled.uri)
    train = col.to_torchgeo_dataset(BANDS, split="train")
    val = col.to_torchgeo_dataset(BANDS, split=["val"], where=pc.field("eo:cloud_cover") < 100)
    assert train.crs == ZONE32 and val.crs == CRS.from_epsg(32633)  # each its first record's CRS
    assert all("32TQR" in i for i in train.index["id"]) and all("33TTL" in i for i in val.index["id"])
    assert len(train) == len(val) == 3
    rows = col.to_arrow().to_pylist()
    for ds in (train, val):
        for q in _random_sampler(ds, size=32, length=2, seed=1):
            np.testing.assert_array_equal(ds[q]["image"].numpy(),
                                          _expected(rows, _query(q, ds), ds.crs, local_path_of).astype(np.float32))
    with pytest.raises(rc.NoRecordsError):
        col.to_torchgeo_dataset(BANDS, split="test")


@needs_torchgeo
def test_the_dataset_pickles_to_records_and_settings(dataset):
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.crs == dataset.crs and clone.res == dataset.res and clone.index.equals(dataset.index)
    query = (slice(TQR_EAST - 640, TQR_EAST), slice(5070000.0, 5070640.0))
    assert torch.equal(clone[query]["image"], dataset[query]["image"])


def test_without_torchgeo_the_error_names_the_extra(s3_collection):
    """Core imports never pull torch; a missing torch or torchgeo is an ImportError naming rasteret[torchgeo]."""
    script = (
        "import sys\n"
        "import rasteret_core as rc\n"
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'torchgeo'))]\n"
        "for blocked in ('torch', 'torchgeo'):\n"
        "    saved = sys.modules.get(blocked)\n"
        "    sys.modules[blocked] = None  # import torch now raises ImportError\n"
        "    sys.modules.pop('rasteret_core.torchgeo', None)\n"
        f"    col = rc.load({s3_collection.uri!r})\n"
        "    try:\n"
        "        col.to_torchgeo_dataset('red')\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
        "    else:\n"
        "        raise SystemExit('no ImportError')\n"
        "    del sys.modules[blocked]\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all('pip install "rasteret[torchgeo]"' in line for line in lines), lines
