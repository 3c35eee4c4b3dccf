"""Run the atheris fuzzer on the header parser for a bounded number of inputs, seeded with real headers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np


def test_header_parser_survives_coverage_guided_fuzzing(tmp_path):
    import rasterio

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, (bigtiff, tiled) in enumerate([("NO", True), ("YES", True), ("NO", False)]):
        path = tmp_path / f"seed{i}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=40, height=30, count=2, dtype="uint16", crs="EPSG:32632",
                           transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000), nodata=0, tiled=tiled,
                           blockxsize=16, blockysize=16, compress="deflate", BIGTIFF=bigtiff) as dst:
            dst.write(np.arange(2400, dtype="uint16").reshape(2, 30, 40))
        (corpus / f"seed{i}").write_bytes(path.read_bytes()[:4096])
    script = Path(__file__).with_name("fuzz_tiff_header.py")
    run = subprocess.run(
        [sys.executable, str(script), "-runs=10000", "-timeout=5", "-rss_limit_mb=2048", "-max_len=4096",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 10000 runs" in run.stderr
