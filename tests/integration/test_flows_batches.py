"""The batched-read flows read each input row once: a batch reads its own rows, never the whole input file."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from deltalake import DeltaTable

import rasteret_core as rc

GEO = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
ORDER = [("site", "ascending"), ("record_id", "ascending"), ("band", "ascending")]


def _sites(col: rc.Collection, n: int, *, seed: int, polygons: bool = False) -> pa.Table:
    """``n`` points (or small boxes) inside the collection's footprints, with a business column."""
    rng = np.random.default_rng(seed)
    rows = col.to_arrow().to_pylist()
    geoms = []
    for i in range(n):
        b = rows[i % len(rows)]["bbox"]
        x, y = rng.uniform(b["xmin"] + 0.01, b["xmax"] - 0.01), rng.uniform(b["ymin"] + 0.01, b["ymax"] - 0.01)
        geoms.append(shapely.box(x, y, x + 0.001, y + 0.001) if polygons else shapely.Point(x, y))
    table = pa.table({"site": [f"s{i:04d}" for i in range(n)], "weight": rng.uniform(0, 1, n),
                      "geometry": [shapely.to_wkb(g) for g in geoms]})
    return table.replace_schema_metadata({"geo": json.dumps(GEO)})


def _data_bytes(path) -> int:
    """The compressed bytes of every column chunk of a Parquet file (its data, the footer aside)."""
    meta = pq.ParquetFile(path).metadata
    return sum(meta.row_group(g).column(c).total_compressed_size
               for g in range(meta.num_row_groups) for c in range(meta.num_columns))


def _delta(uri: str, col: rc.Collection) -> pa.Table:
    return DeltaTable(uri, storage_options=col.settings.delta_storage_options()).to_pyarrow_table()


def test_aoi_batches_read_the_input_about_once(prefect_api, staging_dir, s3_collection, tmp_path):
    """200 AOIs in one row group, 25 batches: the file is streamed once into batch-sized row groups, each read once.

    Before, each of the 25 batches read the whole file: 25 times its bytes.
    """
    from rasteret_flows import extract_aois

    aois = _sites(s3_collection, 200, seed=1, polygons=True)
    path = tmp_path / "aois.parquet"
    pq.write_table(aois, path)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    result = extract_aois(s3_collection.uri, str(path), ["red"], "s3://rasteret-tables/batches-aois", batch_size=8,
                          stats=["count", "mean"])
    assert result.batches == 25 and result.failed_batches == 0 and result.inputs == 200
    source = _data_bytes(path)
    # the source once (into one small file per batch) and each small file once (8 rows compress less well than
    # 200): a few times the source's bytes, where reading it whole in every batch took 25 times
    assert source < result.input_bytes < 4 * source < result.batches * source
    want, _ = s3_collection.get_table(aois, ["red"], stats=["count", "mean"])
    out = _delta("s3://rasteret-tables/batches-aois", s3_collection)
    assert out.num_rows == result.rows == want.num_rows > 0
    assert out.sort_by(ORDER).equals(want.sort_by(ORDER))


def test_point_batches_read_their_row_groups_of_an_s3_source_in_place(prefect_api, staging_dir, s3, s3_collection):
    """Points on S3 in row groups of 10, batches of 25: two whole groups a batch, every group read exactly once."""
    from rasteret_flows import sample_points

    points = _sites(s3_collection, 95, seed=2)
    buffer = io.BytesIO()
    pq.write_table(points, buffer, row_group_size=10)
    client = s3.client()
    client.put_object(Bucket="rasteret-tables", Key="inputs/points.parquet", Body=buffer.getvalue())
    client.close()
    local = pa.BufferReader(buffer.getvalue())
    result = sample_points(s3_collection.uri, "s3://rasteret-tables/inputs/points.parquet", ["red", "nir"],
                           "s3://rasteret-tables/batches-points", batch_size=25)
    assert result.batches == 5 and result.failed_batches == 0 and result.inputs == 95  # 20, 20, 20, 20, 15 rows
    assert result.input_bytes == _data_bytes(local)  # each row group once; no copy
    want = s3_collection.sample_points(points, ["red", "nir"])
    out = _delta("s3://rasteret-tables/batches-points", s3_collection)
    want = want.set_column(want.schema.get_field_index("value"), "value", want["value"].cast(pa.int32()))
    assert out.select(want.schema.names).sort_by(ORDER).equals(want.sort_by(ORDER))


def test_a_bad_input_fails_once_before_any_batch(prefect_api, staging_dir, s3_collection, tmp_path):
    from rasteret_flows import extract_aois, sample_points

    path = tmp_path / "aois.parquet"
    pq.write_table(_sites(s3_collection, 10, seed=3).rename_columns(["site", "weight", "geom"]), path)
    with pytest.raises(rc.SchemaError, match="no geometry column 'geometry'"):
        extract_aois(s3_collection.uri, str(path), ["red"], "s3://rasteret-tables/never", batch_size=2)
    with pytest.raises(rc.SchemaError, match=r"no column\(s\) \['when'\]"):
        sample_points(s3_collection.uri, str(path), ["red"], "s3://rasteret-tables/never", geometry_column="geom",
                      match="nearest-date", date_column="when")
    for missing in (str(tmp_path / "missing.parquet"), "s3://rasteret-tables/inputs/missing.parquet"):
        with pytest.raises(rc.SourceError, match="no table"):
            sample_points(s3_collection.uri, missing, ["red"], "s3://rasteret-tables/never")
    with pytest.raises(rc.StatisticError):
        extract_aois(s3_collection.uri, str(path), ["red"], "s3://rasteret-tables/never", stats=["p90"])
