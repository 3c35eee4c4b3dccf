"""Row ranges of a Parquet input: every row read once, and only the bytes of its own range per batch."""

from __future__ import annotations

import json
import os
from collections import Counter

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from rasteret_core import ConfigError, Settings, SourceError
from rasteret_core.table.row_ranges import FOOTER_READ, RowRange, plan_row_ranges, read_row_range, split_table

GEO = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}


class CountingFiles(pafs.FileSystemHandler):
    """A local filesystem that counts, per path, the bytes read from it."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()
        self.read: Counter[str] = Counter()

    def open_input_file(self, path: str) -> pa.NativeFile:
        counter, raw = self.read, self.local.open_input_file(path)

        class Counted:
            closed = False

            def read(self, n: int = -1) -> bytes:
                data = raw.read(n)
                counter[path] += len(data)
                return data

            def seek(self, offset: int, whence: int = 0) -> int:
                return raw.seek(offset, whence)

            def tell(self) -> int:
                return raw.tell()

            def close(self) -> None:
                raw.close()

            def size(self) -> int:
                return raw.size()

        return pa.PythonFile(Counted(), mode="r")

    def get_type_name(self) -> str:
        return "counting"

    def equals(self, other: object) -> bool:
        return self is other

    def get_file_info(self, paths):  # type: ignore[no-untyped-def]
        return self.local.get_file_info(paths)

    def normalize_path(self, path: str) -> str:
        return path

    def _unused(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("reads use only open_input_file and get_file_info")

    copy_file = create_dir = delete_dir = delete_dir_contents = delete_file = delete_root_dir_contents = _unused
    get_file_info_selector = move = open_append_stream = open_input_stream = open_output_stream = _unused


def _aois(n: int) -> pa.Table:
    geoms = [shapely.box(11 + i * 1e-3, 45, 11 + i * 1e-3 + 5e-4, 45.0005) for i in range(n)]
    table = pa.table({"field_id": [f"f{i:05d}" for i in range(n)], "area": [float(i) for i in range(n)],
                      "geometry": [shapely.to_wkb(g) for g in geoms]})
    return table.replace_schema_metadata({"geo": json.dumps(GEO)})


def _read_each(split, files: CountingFiles) -> tuple[pa.Table, list[int]]:
    """Read every range through ``files``; the table and the bytes each range read."""
    fs, parts, read = pafs.PyFileSystem(files), [], []
    for r in split.ranges:
        before = sum(files.read.values())
        parts.append(read_row_range(r, settings=Settings(), filesystem=fs))
        assert parts[-1].num_rows == r.stop - r.start
        read.append(sum(files.read.values()) - before)
    return pa.concat_tables(parts), read


def test_one_large_row_group_is_copied_once_and_each_batch_reads_its_own_rows(tmp_path):
    """10,000 AOIs in one row group (pyarrow's default), batches of 64: the source is read once, not 157 times."""
    table = _aois(10_000)
    source = tmp_path / "aois.parquet"
    pq.write_table(table, source)
    files = CountingFiles()
    split = split_table(str(source), batch_size=64, folder=str(tmp_path / "stage"), settings=Settings(),
                        filesystem=pafs.PyFileSystem(files))
    assert split.copy is not None and len(split.ranges) == 157 and split.rows == 10_000
    assert [(r.start, r.stop) for r in split.ranges] == [(s, min(s + 64, 10_000)) for s in range(0, 10_000, 64)]
    assert len({r.path for r in split.ranges}) == 157 and all(r.row_groups == (0,) for r in split.ranges)
    size = source.stat().st_size
    # the copy streamed the source once (Arrow reads the footer in a first 64 KiB read from the end)
    assert size <= files.read[str(source)] <= size + FOOTER_READ
    assert split.copied_bytes < size
    got, read = _read_each(split, files)
    assert got.equals(table) and got.schema.metadata == table.schema.metadata
    for r, n in zip(split.ranges, read, strict=True):  # each batch reads its own small file, nothing else
        assert r.nbytes <= n <= os.path.getsize(r.path)
    assert sum(read) < 2 * size  # the rows once (and each small file's footer), however many batches
    assert files.read[str(source)] <= size + FOOTER_READ  # the batches never touched the source


def test_small_row_groups_are_read_in_place_each_once(tmp_path):
    table = _aois(1_000)
    source = tmp_path / "aois.parquet"
    pq.write_table(table, source, row_group_size=100)
    files = CountingFiles()
    split = split_table(str(source), batch_size=250, folder=str(tmp_path / "stage"), settings=Settings(),
                        filesystem=pafs.PyFileSystem(files))
    assert split.copy is None and split.copied_bytes == 0 and not (tmp_path / "stage").exists()
    assert [(r.start, r.stop, r.row_groups) for r in split.ranges] == [
        (0, 200, (0, 1)), (200, 400, (2, 3)), (400, 600, (4, 5)), (600, 800, (6, 7)), (800, 1000, (8, 9))]
    got, read = _read_each(split, files)
    assert got.equals(table)
    for r, n in zip(split.ranges, read, strict=True):  # its own row groups and Arrow's first read (the footer), no more
        assert r.nbytes <= n <= r.nbytes + FOOTER_READ
    assert sum(r.nbytes for r in split.ranges) < source.stat().st_size


def test_a_source_whose_footer_is_large_is_copied(tmp_path):
    """Row groups of 4 rows fit a batch, but 2,500 of them make a footer every batch would read whole."""
    table = _aois(10_000)
    source = tmp_path / "aois.parquet"
    pq.write_table(table, source, row_group_size=4)
    assert pq.ParquetFile(source).metadata.serialized_size > FOOTER_READ
    files = CountingFiles()
    split = split_table(str(source), batch_size=100, folder=str(tmp_path / "stage"), settings=Settings(),
                        filesystem=pafs.PyFileSystem(files))
    assert split.copy is not None and len(split.ranges) == 100
    got, read = _read_each(split, files)
    assert got.equals(table)
    assert files.read[str(source)] <= source.stat().st_size + FOOTER_READ
    assert sum(read) < source.stat().st_size


def test_whole_table_per_batch_reads_the_file_once_per_batch(tmp_path):
    """What the tasks did before: every batch read the whole file, then sliced its rows."""
    table = _aois(2_000)
    source = tmp_path / "aois.parquet"
    pq.write_table(table, source)
    files = CountingFiles()
    fs = pafs.PyFileSystem(files)
    for start in range(0, 2_000, 64):
        pq.read_table(str(source), filesystem=fs).slice(start, 64)
    assert files.read[str(source)] >= 32 * source.stat().st_size


def test_an_empty_table_has_no_ranges(tmp_path):
    source = tmp_path / "empty.parquet"
    pq.write_table(_aois(0), source)
    split = split_table(str(source), batch_size=8, folder=str(tmp_path), settings=Settings())
    assert split.ranges == () and split.rows == 0 and split.copy is None


def test_a_missing_or_foreign_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no table"):
        split_table(str(tmp_path / "nope.parquet"), batch_size=8, folder=str(tmp_path), settings=Settings())
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(SourceError, match="as Parquet"):
        split_table(str(tmp_path / "x.parquet"), batch_size=8, folder=str(tmp_path), settings=Settings())
    with pytest.raises(ConfigError):
        split_table(str(tmp_path / "x.parquet"), batch_size=0, folder=str(tmp_path), settings=Settings())


def test_a_file_changed_after_the_split_is_refused(tmp_path):
    source = tmp_path / "aois.parquet"
    pq.write_table(_aois(10), source, row_group_size=5)
    (first, _) = split_table(str(source), batch_size=5, folder=str(tmp_path), settings=Settings()).ranges
    pq.write_table(_aois(12), source, row_group_size=6)
    with pytest.raises(SourceError, match="changed since it was split"):
        read_row_range(first, settings=Settings())


def test_ranges_pickle_for_dask_workers():
    import pickle

    r = RowRange(path="s3://b/k.parquet", start=0, stop=3, row_groups=(0,), nbytes=10)
    assert pickle.loads(pickle.dumps(r)) == r
    with pytest.raises(ConfigError):
        RowRange(path="p", start=3, stop=3, row_groups=(0,), nbytes=0)


@settings(max_examples=60, deadline=None)
@given(groups=st.lists(st.integers(0, 40), max_size=30), batch=st.integers(1, 50))
def test_ranges_cover_every_row_once_in_whole_groups(tmp_path_factory, groups, batch):
    path = tmp_path_factory.mktemp("rg") / "t.parquet"
    with pq.ParquetWriter(path, pa.schema([("v", pa.int64())])) as writer:
        start = 0
        for n in groups:
            writer.write_table(pa.table({"v": pa.array(range(start, start + n), pa.int64())}))
            start += n
    metadata = pq.ParquetFile(path).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    ranges = plan_row_ranges(metadata, str(path), batch_size=batch)
    if any(n > batch for n in sizes):
        assert ranges is None
        return
    assert ranges is not None
    assert all(r.stop - r.start <= batch for r in ranges)
    assert [i for r in ranges for i in r.row_groups] == [i for i, n in enumerate(sizes) if n]
    starts = [r.start for r in ranges]
    assert starts == ([0] + [r.stop for r in ranges[:-1]] if ranges else [])  # contiguous from row 0
    assert (ranges[-1].stop if ranges else 0) == sum(sizes)
    for r in ranges:
        assert sum(sizes[i] for i in r.row_groups) == r.stop - r.start
