"""The command line's experience (issue 13): errors as one message and a documented exit code, --json on every
command, explain before any fetch, pictures, progress fed by the flows."""

from __future__ import annotations

import io
import json
import struct
import sys

import numpy as np
import pytest
import shapely
from rich.console import Console
from typer.testing import CliRunner

import rasteret_core as rc
from rasteret_flows._progress import ProgressBars, listening, report_progress
from rasteret_flows.cli import EXIT_CODES, app

FIELD = shapely.box(11.90, 45.77, 11.93, 45.79)  # in the 32N scenes
FAR = shapely.box(2.0, 48.0, 2.1, 48.1)  # Paris: no record


def _geojson(path, geometries, **properties):
    features = [{"type": "Feature", "geometry": shapely.geometry.mapping(g),
                 "properties": {k: v[i] for k, v in properties.items()}} for i, g in enumerate(geometries)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


@pytest.fixture(scope="module")
def aoi(tmp_path_factory):
    return _geojson(tmp_path_factory.mktemp("aoi") / "field.geojson", [FIELD], field_id=["field-a"])


@pytest.fixture(scope="module")
def local_collection(s3_collection, tmp_path_factory):
    """The oracle collection copied into a local Delta table: loading it needs no S3, reading its pixels does."""
    uri = str(tmp_path_factory.mktemp("local") / "collection")
    rc.build_from_table(s3_collection.to_arrow(), uri=uri)
    return uri


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _code(name):
    return next(code for cls, code, _ in EXIT_CODES if cls == name)


def _png_size(path):
    with open(path, "rb") as f:
        data = f.read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# ------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("case", "error", "needle"), [
    ("unknown band", "BandError", "unknown band(s) ['nope']"),
    ("AOI outside", "NoRecordsError", "meets a record"),
    ("bad CRS", "GeometryError", "unknown CRS 'EPSG:999999'"),
])
def test_user_errors_print_one_message_and_their_exit_code(s3_collection, aoi, tmp_path, case, error, needle):
    bands, where, extra = "red,nope" if case == "unknown band" else "red", aoi, []
    if case == "AOI outside":
        where = _geojson(tmp_path / "far.geojson", [FAR])
    if case == "bad CRS":
        extra = ["--geometry-crs", "EPSG:999999"]
    done = _run("explain", s3_collection.uri, "--aois", where, "--bands", bands, *extra)
    assert done.exit_code == _code(error), done.output
    assert needle in done.stderr and f"error ({error})" in done.stderr
    assert "what to do:" in done.stderr and "Traceback" not in done.output
    assert done.stdout == ""  # nothing half-printed on stdout


def test_json_errors_are_a_document_too(s3_collection, aoi):
    done = _run("explain", s3_collection.uri, "--aois", aoi, "--bands", "nope", "--json")
    assert done.exit_code == 6
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "BandError" and error["exit_code"] == 6 and "nope" in error["message"]


def test_debug_shows_the_traceback_with_the_same_exit_code(s3_collection, aoi):
    done = _run("--debug", "explain", s3_collection.uri, "--aois", aoi, "--bands", "nope")
    assert done.exit_code == 6
    assert "Traceback (most recent call last)" in done.stderr and "check_bands" in done.stderr


def test_a_403_says_access_denied(local_collection, aoi, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    done = _run("quicklook", local_collection, "--aoi", aoi, "--bands", "red", "--out", tmp_path / "q.png")
    assert done.exit_code == _code("AccessDeniedError"), done.output
    assert "access denied" in done.stderr and "rasteret-sample" in done.stderr
    assert "AWS_ACCESS_KEY_ID" in done.stderr and "Traceback" not in done.output
    assert not (tmp_path / "q.png").exists()


def test_missing_credentials_say_so(local_collection, aoi, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    done = _run("quicklook", local_collection, "--aoi", aoi, "--bands", "red", "--out", tmp_path / "q.png")
    assert done.exit_code == _code("AccessDeniedError"), done.output
    assert "credentials" in done.stderr and "AWS_ACCESS_KEY_ID" in done.stderr and "Traceback" not in done.output


def test_the_installed_command_exits_with_the_code(s3, s3_collection, aoi, tmp_path):
    import os
    import subprocess
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(HOME=str(tmp_path), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    command = Path(sys.executable).with_name("rasteret")
    done = subprocess.run([command, "info", s3_collection.uri, "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 12, done.stderr
    assert json.loads(done.stdout)["error"]["type"] == "AccessDeniedError"
    assert "no AWS credentials" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_collection_and_a_usage_error(tmp_path, aoi):
    done = _run("info", tmp_path / "nothing-here")
    assert done.exit_code == _code("CollectionError") and "no collection" in done.stderr
    assert _run("explain", tmp_path, "--aois", aoi).exit_code == 2  # --bands is missing: the parser's code


def test_prefect_out_of_reach_is_one_message_too():
    from rasteret_flows.cli import EXIT_PREFECT, _is_reported, exit_code_for

    for message in ("Timed out while attempting to connect to ephemeral Prefect API server.",
                    "Cannot create flow run. Failed to reach API at http://127.0.0.1:9/api/."):
        assert _is_reported(RuntimeError(message)) and exit_code_for(RuntimeError(message))[0] == EXIT_PREFECT == 21
    assert not _is_reported(RuntimeError("a bug"))  # other errors keep their traceback


def test_the_exit_codes_are_documented_in_help_and_module():
    from rasteret_flows import cli

    shown = _run("--help").output
    for name, code, _ in EXIT_CODES:
        if name != "RasteretError":
            assert f"{code} {name}" in " ".join(shown.split()), name
            assert f"{code:<6d}{name}" in cli.__doc__, name
        assert issubclass(getattr(rc, name, rc.RasteretError), rc.RasteretError), name
    assert len({code for _, code, _ in EXIT_CODES}) == len(EXIT_CODES)
    listed = {name for name, _, _ in EXIT_CODES}
    assert "AccessDeniedError" in rc.__all__
    # every error class of the public hierarchy has its own row, or is a kind of a listed one on purpose
    subsumed = {"UnsupportedTiffError", "UnresolvedCRSError"}  # TIFF format errors (13)
    assert {n for n in rc.__all__ if n.endswith("Error")} - listed == subsumed


def test_the_troubleshooting_page_lists_the_same_exit_codes():
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
    if not page.exists():
        pytest.skip("no docs/troubleshooting.md in this checkout")
    text = page.read_text(encoding="utf-8")
    for name, code, _ in EXIT_CODES:
        if name != "RasteretError":
            assert f"| {code} | `{name}` |" in text, name


# ------------------------------------------------------------------------------------------------- --json


def test_every_command_takes_json():
    import typer.main

    group = typer.main.get_command(app)
    assert len(group.commands) >= 11
    for name in group.commands:
        assert "--json" in _run(name, "--help").output, name


def test_json_documents_of_the_read_commands(s3_collection, aoi, tmp_path):
    info = json.loads(_run("info", s3_collection.uri, "--json").stdout)
    assert info["records"] == len(s3_collection) and info["bands"] == s3_collection.bands
    assert info["crs"] == ["EPSG:32632", "EPSG:32633"] and len(info["extent"]) == 4
    history = json.loads(_run("history", s3_collection.uri, "--json").stdout)
    assert history[0]["version"] == s3_collection.version
    exported = json.loads(_run("export", s3_collection.uri, tmp_path / "c.parquet", "--json").stdout)
    assert exported["records"] == len(s3_collection) and exported["path"].endswith("c.parquet")


# ------------------------------------------------------------------------------------------------- explain


def test_explain_counts_before_any_pixel_request(s3, s3_collection, aoi, tmp_path, monkeypatch):
    from infra.local.faults import Fault, fault_proxy

    with fault_proxy(s3.endpoint_url, [Fault(path=r"^/rasteret-sample/", method="GET", times=0)]) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        done = _run("explain", s3_collection.uri, "--aois", aoi, "--bands", "red,green,blue", "--latency-ms", 200,
                    "--concurrency", 4, "--json")
        assert done.exit_code == 0, done.output
        assert proxy.counters()["faults"][0]["hits"] == 0  # no GET of a COG: the plan came from stored headers
        plan = json.loads(done.stdout)
        read = _run("quicklook", s3_collection.uri, "--aoi", aoi, "--bands", "red,green,blue", "--out",
                    tmp_path / "q.png", "--json")
        assert read.exit_code == 0, read.output
        gets = proxy.counters()["faults"][0]["hits"]
        text = _run("explain", s3_collection.uri, "--aois", aoi, "--bands", "red", "--latency-ms", 80).stdout
    want = s3_collection.explain(FIELD, ["red", "green", "blue"])
    assert plan["records"] == want["records"] == 3
    assert (plan["tiles"], plan["requests"], plan["bytes"]) == (want["tiles"], want["requests"], want["bytes"])
    assert plan["estimated_seconds"] == pytest.approx(
        -(-want["requests"] // 4) * 0.2 + want["bytes"] / 100e6, abs=1e-3)
    assert gets >= json.loads(read.stdout)["requests"] > 0  # the same proxy sees a real read's GETs
    for word in ("records", "tiles", "requests", "bytes", "estimated time", "80 ms", "nothing fetched"):
        assert word in text, word


# ------------------------------------------------------------------------------------------------- pictures


def test_quicklook_true_colour_and_one_band(s3_collection, aoi, tmp_path):
    done = _run("quicklook", s3_collection.uri, "--aoi", aoi, "--bands", "red,green,blue", "--out",
                tmp_path / "rgb.png", "--json")
    assert done.exit_code == 0, done.output
    drawn = json.loads(done.stdout)
    assert drawn["record"] == "S2A_32TQR_20240305_0_L2A" and drawn["crs"] == "EPSG:32632"  # the latest meeting it
    assert drawn["valid_pixels"] > 0.9 * drawn["width"] * drawn["height"]
    width, height = _png_size(tmp_path / "rgb.png")
    assert width > 600 and height > 500
    one = _run("quicklook", s3_collection.uri, "--aoi", aoi, "--bands", "nir", "--record", "S2B_32TQR_20240214_0_L2A",
               "--out", tmp_path / "nir.png")
    assert one.exit_code == 0, one.output
    assert "S2B_32TQR_20240214_0_L2A (nir)" in one.stdout and (tmp_path / "nir.png").exists()
    assert _run("quicklook", s3_collection.uri, "--aoi", aoi, "--bands", "red,green").exit_code == 2


def test_timeseries_of_an_aoi_and_of_a_point(s3_collection, aoi, tmp_path):
    done = _run("timeseries", s3_collection.uri, "--aoi", aoi, "--band", "nir", "--out", tmp_path / "ts.png", "--json")
    assert done.exit_code == 0, done.output
    [line] = json.loads(done.stdout)["series"]
    table, _ = s3_collection.get_table([FIELD], ["nir"], stats=["mean"])
    want = sorted((r["datetime"].isoformat(), r["mean"]) for r in table.to_pylist())
    assert [p["datetime"] for p in line["points"]] == [t for t, _ in want]
    assert [p["value"] for p in line["points"]] == pytest.approx([v for _, v in want])
    assert len(want) == 3 and _png_size(tmp_path / "ts.png")[0] > 800
    point = _run("timeseries", s3_collection.uri, "--point", "12.05,45.75", "--band", "red,nir", "--out",
                 tmp_path / "pt.png", "--json")
    assert point.exit_code == 0, point.output
    lines = json.loads(point.stdout)["series"]
    assert [s["label"] for s in lines] == ["red", "nir"] and len(lines[0]["points"]) == 3  # the 33N scenes
    assert _run("timeseries", s3_collection.uri, "--band", "red").exit_code == 2  # neither --aoi nor --point


def test_info_plots_footprints_over_time(s3_collection, tmp_path):
    done = _run("info", s3_collection.uri, "--plot", tmp_path / "footprints.png")
    assert done.exit_code == 0, done.output
    width, height = _png_size(tmp_path / "footprints.png")
    assert width > 1200 and height > 500


def test_demo_pictures(s3_collection, tmp_path):
    from rasteret_flows.demo import write_demo_pictures

    drawn = write_demo_pictures(s3_collection, tmp_path)
    assert drawn["quicklook"]["bands"] == ["red", "green", "blue"] and drawn["quicklook"]["valid_pixels"] > 0
    assert {s["label"] for s in drawn["timeseries"]["series"]} == {
        "field-001 (wheat)", "field-002 (maize)", "field-003 (rice)", "field-004 (vineyard)"}
    assert _png_size(tmp_path / "quicklook.png")[0] > 600 and _png_size(tmp_path / "timeseries.png")[0] > 800


def test_pictures_without_matplotlib_name_the_extra(s3_collection, aoi, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    done = _run("quicklook", s3_collection.uri, "--aoi", aoi, "--bands", "red", "--out", tmp_path / "q.png")
    assert done.exit_code == 19 and 'pip install "rasteret[plot]"' in done.stderr
    assert _run("info", s3_collection.uri, "--plot", tmp_path / "f.png").exit_code == 19


# ------------------------------------------------------------------------------------------------- progress


def test_progress_bars_draw_on_a_terminal_only():
    shown = io.StringIO()
    terminal = Console(file=shown, force_terminal=True, width=100)
    with ProgressBars(terminal, "reading AOIs"):
        for done in range(4):
            report_progress("read-batch", done, 3, failed=int(done == 3))
    assert "read batches" in shown.getvalue() and "3/3" in shown.getvalue() and "1 failed" in shown.getvalue()
    piped = io.StringIO()
    with ProgressBars(Console(file=piped), "reading AOIs"):
        report_progress("read-batch", 1, 3)
    assert piped.getvalue() == ""


def test_the_extract_flow_feeds_progress_and_json(prefect_api, staging_dir, s3_collection, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    aois = tmp_path / "aois.parquet"
    boxes = [shapely.box(11.90 + i * 0.01, 45.77, 11.905 + i * 0.01, 45.775) for i in range(5)]
    pq.write_table(pa.table({"name": [f"a{i}" for i in range(5)], "geometry": shapely.to_wkb(boxes)}), aois)
    events = []
    with listening(events.append):
        done = _run("extract", s3_collection.uri, "--aois", aois, "--bands", "red", "--out", tmp_path / "out",
                    "--stats", "mean", "--batch-size", 2, "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["batches"] == 3 and summary["inputs"] == 5 and summary["failures"] == []
    batches = [(e.done, e.total) for e in events if e.step == "read-batch"]
    assert batches[0] == (0, 3) and batches[-1] == (3, 3)
    assert [d for d, _ in batches] == sorted(d for d, _ in batches)
    assert np.all(np.diff([d for d, _ in batches]) <= 1)


def test_prefect_console_logs_drop_the_traceback_of_a_reported_error():
    import logging

    from rasteret_flows.cli import _without_reported_traceback

    def record(exc):
        try:
            raise exc
        except (rc.RasteretError, ValueError):
            return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "Task run failed", None,
                                     sys.exc_info())

    short = _without_reported_traceback(logging.Formatter().format)
    reported = record(rc.BandError("unknown band(s) ['nope']"))
    logging.Formatter().format(reported)  # another handler formatted (and cached) the traceback first
    assert short(reported) == "Task run failed" and reported.exc_info is not None  # the API handler still gets it
    assert "Traceback" in short(record(ValueError("a bug")))  # anything else keeps its traceback


def test_batched_reads_check_the_bands_before_any_flow_runs(s3_collection, tmp_path):
    done = _run("extract", s3_collection.uri, "--aois", tmp_path / "none.parquet", "--bands", "red,nope", "--out",
                tmp_path / "out")
    assert done.exit_code == 6 and "unknown band(s) ['nope']" in done.stderr
