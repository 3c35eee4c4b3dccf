"""One benchmark case by the original rasteret (PyPI ``rasteret==0.4.1``), on its own Python 3.12.

``bench.suite`` builds a venv for it under ``build/bench/`` and runs
``VENV/bin/python -m bench.legacy_rasteret SPEC.json`` from the repository root, with the same
spec and result as :mod:`bench.peers` (which this imports only for its stdlib-level helpers).
rasteret 0.4.1 reads through an obstore ``S3Store`` given as its ``backend``; it keeps its index
as local Parquet (``workspace_dir``), built by ``build_from_stac`` from the same STAC API.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.peers import _aoi, _obstore, _points, time_runs


def _reader(spec: dict[str, Any]) -> Any:
    import numpy as np
    import rasteret
    from rasteret.cloud import ObstoreBackend

    backend = ObstoreBackend(_obstore(spec), url_prefix=f"s3://{spec['bucket']}/")
    band_map = {b: b for b in spec["bands"]}
    counter = iter(range(10**6))

    def build(workspace: Path | None = None, name: str | None = None, *, force: bool = True) -> Any:
        return rasteret.build_from_stac(name=name or f"bench{next(counter)}", stac_api=spec["stac_api"],
                                        collection=spec["collection"], band_map=band_map, bbox=tuple(spec["bbox"]),
                                        date_range=("2024-01-01", "2024-12-31"),
                                        workspace_dir=workspace or Path(tempfile.mkdtemp(prefix="rasteret041-")),
                                        force=force, backend=backend)

    if spec["case"] == "B1":

        def run_build() -> tuple[list[Any], None, None]:
            col = build()
            assert len(col.dataset.to_table()) == len(spec["scenes"])
            return [], None, None

        return run_build
    # the index the reads use: built once by the suite (case "index"), loaded from its cache after
    col = build(Path(spec["legacy_workspace"]), "bench", force=spec["case"] == "index")
    if spec["case"] == "index":
        return lambda: ([], None, None)
    if spec["case"] == "points":
        import pyarrow as pa

        xs, ys = _points(spec)
        table = pa.table({"x": xs, "y": ys})
        import pyarrow.dataset as pads

        one = col.where(pads.field("id") == spec["points"]["scene"])

        def run_points() -> tuple[list[Any], None, None]:
            out = one.sample_points(table, [spec["points"]["band"]], x_column="x", y_column="y",
                                    geometry_crs=int(spec["aoi_crs"].split(":")[1]), backend=backend)
            return [np.asarray(out[spec["points"]["band"]].to_numpy(zero_copy_only=False))], None, None

        return run_points
    aoi = _aoi(spec)

    def run_read() -> tuple[list[Any], None, None]:
        data = col.get_numpy(aoi, list(spec["bands"]), backend=backend,
                             geometry_crs=int(spec["aoi_crs"].split(":")[1]))
        return [np.asarray(data)], None, None

    return run_read


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    os.environ.update(spec.get("env", {}))
    print(json.dumps(time_runs(_reader(spec), spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
