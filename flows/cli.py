"""The ``rasteret`` command: build, inspect and read collections, and run the flows."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rasteret_tasks import Kind

app = typer.Typer(help="Rasteret: index-first reads of cloud-optimized GeoTIFFs, run as Prefect flows.",
                  no_args_is_help=True, add_completion=False)
console = Console() if sys.stdout.isatty() else Console(width=160)  # logs and CI get whole tables


_RUNNER_HELP = "Task runner: threads (default), dask (local worker processes) or a Dask scheduler tcp://HOST:PORT"

# Options the batched-read commands (extract, sample) share.
_CollectionUri = Annotated[str, typer.Argument(help="Collection URI")]
_BandList = Annotated[str, typer.Option(help="B1,B2,...")]
_OutputTable = Annotated[str, typer.Option(help="Output Delta table: local path or s3://")]
_GeometryColumn = Annotated[str, typer.Option(help="The geometry column (AOIs or points)")]
_GeometryCrs = Annotated[str | None, typer.Option(help="CRS of the geometries (or x/y) if the file does not say")]
_ReadVersion = Annotated[int | None, typer.Option(help="Collection version to read")]
_Runner = Annotated[str | None, typer.Option(help=_RUNNER_HELP)]


def _bbox(value: str | None) -> list[float] | None:
    if value is None:
        return None
    parts = [float(v) for v in value.split(",")]
    if len(parts) != 4:
        raise typer.BadParameter("expected MINX,MINY,MAXX,MAXY")
    return parts


def _bands(value: str | None) -> dict[str, str] | None:
    """``B04=red,B08=nir`` (name=asset key) or ``red,nir`` (asset keys as names)."""
    if not value:
        return None
    out = {}
    for item in value.split(","):
        name, _, key = item.partition("=")
        out[name.strip()] = (key or name).strip()
    return out


def _json_object(value: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object given on the command line (None when not given)."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("expected a JSON object", param_hint=option)
    return parsed


def _geojson(value: str | None) -> dict[str, Any] | None:
    """``--intersects``: GeoJSON text, or the path of a file holding it."""
    if value is not None and not value.lstrip().startswith("{"):
        try:
            value = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"neither GeoJSON nor a readable file: {exc}", param_hint="--intersects") from None
    return _json_object(value, "--intersects")


def _rewrites(values: list[str] | None) -> dict[str, str] | None:
    """``--href-rewrite PREFIX=REPLACEMENT`` options as a mapping."""
    out = {}
    for value in values or ():
        prefix, sep, replacement = value.partition("=")
        if not sep or not prefix:
            raise typer.BadParameter(f"{value!r}: expected PREFIX=REPLACEMENT", param_hint="--href-rewrite")
        out[prefix] = replacement
    return out or None


@app.callback()
def main(verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v info, -vv debug")] = 0) -> None:
    """Rasteret command line."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)])


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the sample archive and tables go")] = Path("demo-data"),
    scale: Annotated[int, typer.Option(help="Sample image size multiplier")] = 1,
) -> None:
    """Run the main job end to end on local defaults: sample archive, ingestion, extraction."""
    from rasteret_demo import check_demo_extra

    from .demo import run_demo

    try:
        check_demo_extra()
    except ImportError as exc:  # say which command installs what is missing
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    run_demo(workdir, scale=scale, console=console)


@app.command()
def ingest(
    stac_api: Annotated[str, typer.Option(help="STAC API root URL")],
    collection: Annotated[str, typer.Option(help="STAC collection id")],
    uri: Annotated[str, typer.Option(help="Collection Delta table: local path or s3://")],
    bbox: Annotated[str | None, typer.Option(help="MINX,MINY,MAXX,MAXY in lon/lat")] = None,
    datetime: Annotated[str | None, typer.Option(help="START/END, ISO 8601")] = None,
    bands: Annotated[str | None, typer.Option(help="name=asset_key,... or asset keys; default every COG asset")] = None,
    intersects: Annotated[str | None, typer.Option(
        help="A GeoJSON geometry in lon/lat, or a file holding one: items must intersect it")] = None,
    query: Annotated[str | None, typer.Option(
        help='STAC query extension as JSON, e.g. \'{"eo:cloud_cover": {"lt": 20}}\' (applied here when the API lacks it)'
    )] = None,
    href_rewrite: Annotated[list[str] | None, typer.Option(
        help="PREFIX=REPLACEMENT applied to every asset href (repeatable), e.g. https://host/=s3://bucket/")] = None,
    max_items: Annotated[int | None, typer.Option(help="Stop after this many items")] = None,
    partial: Annotated[bool, typer.Option(
        help="Commit the records whose headers parsed and leave the others out (quarantined); "
             "--no-partial commits nothing when any fails")] = True,
    partition_size: Annotated[int, typer.Option(help="Scenes per header-parsing task")] = 16,
    max_in_flight: Annotated[int, typer.Option(help="Partitions parsed at once")] = 4,
    quarantine: Annotated[str | None, typer.Option(help="Quarantine Delta table (default URI_quarantine)")] = None,
    runner: Annotated[str | None, typer.Option(help=_RUNNER_HELP)] = None,
) -> None:
    """Run the ingestion flow: search a STAC API, parse the headers of new and changed records, commit them.

    Records the collection already holds as they are are skipped before any header is
    read: re-running over an unchanged archive reads no header and commits nothing.
    """
    from ._runners import with_runner
    from .ingest import ingest_collection

    result = with_runner(ingest_collection, runner)(
        stac_api, collection, uri, bbox=_bbox(bbox), datetime=datetime, intersects=_geojson(intersects),
        query=_json_object(query, "--query"), bands=_bands(bands), max_items=max_items,
        href_rewrites=_rewrites(href_rewrite), partial=partial, partition_size=partition_size,
        max_in_flight=max_in_flight, quarantine_uri=quarantine)
    _print_dict("ingested", result.report())
    if result.failures or result.partition_failures:
        console.print(f"[yellow]{len(result.failures)} header(s) failed (records left out, quarantined in "
                      f"{result.quarantine}), {len(result.partition_failures)} partition(s) failed; see the run's "
                      "artifact; the next ingestion tries them again")
        raise typer.Exit(1)


@app.command()
def enrich(
    uri: Annotated[str, typer.Argument(help="Collection URI")],
    refresh: Annotated[bool, typer.Option(help="Re-parse every header, not only missing ones")] = False,
    partition_size: Annotated[int, typer.Option(help="Scenes per header-parsing task")] = 16,
    max_in_flight: Annotated[int, typer.Option(help="Partitions parsed at once")] = 4,
    quarantine: Annotated[str | None, typer.Option(help="Quarantine Delta table (default URI_quarantine)")] = None,
    runner: Annotated[str | None, typer.Option(help=_RUNNER_HELP)] = None,
) -> None:
    """Run the enrichment flow: parse the headers records lack, in partitions; commit a new version."""
    from ._runners import with_runner
    from .enrich import enrich_collection

    result = with_runner(enrich_collection, runner)(uri, partition_size=partition_size, max_in_flight=max_in_flight,
                                                     quarantine_uri=quarantine, refresh=refresh)
    _print_dict("enriched", result.report())
    if result.failures or result.partition_failures:
        console.print(f"[yellow]{len(result.failures)} header(s) quarantined in {result.quarantine}, "
                      f"{len(result.partition_failures)} partition(s) failed; see the run's artifact; "
                      f"re-run `rasteret enrich {uri}` to try them again")
        raise typer.Exit(1)


@app.command()
def info(uri: Annotated[str, typer.Argument(help="Collection URI")],
         version: Annotated[int | None, typer.Option(help="Version to describe")] = None) -> None:
    """Summarise a collection version."""
    import pyarrow.compute as pc

    import rasteret_core as rc

    col = rc.load(uri, version=version)
    t = col.to_arrow()
    dt = t["datetime"]
    _print_dict(uri, {
        "version": col.version,
        "records": len(col),
        "bands": ", ".join(col.bands),
        "crs": ", ".join(sorted({c for c in t["crs"].to_pylist() if c})),
        "time range": f"{pc.min(dt).as_py()} .. {pc.max(dt).as_py()}" if len(col) else "-",
    })


@app.command()
def history(uri: Annotated[str, typer.Argument(help="Collection URI")]) -> None:
    """List the collection's versions (Delta commits)."""
    import rasteret_core as rc

    table = Table("version", "timestamp", "operation", "metadata")
    for entry in rc.load(uri).history():
        table.add_row(str(entry["version"]), str(entry["timestamp"]), str(entry["operation"]),
                      json.dumps(entry["metadata"], default=str))
    console.print(table)


@app.command()
def extract(
    uri: _CollectionUri,
    aois: Annotated[str, typer.Option(help="GeoParquet/Parquet file of AOIs: local path or s3://")],
    bands: _BandList,
    out: _OutputTable,
    stats: Annotated[str | None, typer.Option(
        help="Statistics instead of pixels, one row per AOI x record x band: any of count,mean,min,max,std,median "
             "(over valid pixels; std with ddof=0)")] = None,
    all_touched: Annotated[bool, typer.Option(help="Every pixel an AOI touches, not only centres inside")] = False,
    overview: Annotated[int | None, typer.Option(help="Read this overview (0 = the finest reduced level)")] = None,
    geometry_column: _GeometryColumn = "geometry",
    batch_size: Annotated[int, typer.Option(help="AOIs per task")] = 64,
    geometry_crs: _GeometryCrs = None,
    version: _ReadVersion = None,
    runner: _Runner = None,
) -> None:
    """Run the extraction flow: read bands (or their statistics) for every AOI into an output Delta table."""
    names = None if stats is None else [s.strip() for s in stats.split(",") if s.strip()]
    _run_batches("aois", {"stats": names, "all_touched": all_touched, "overview": overview}, "--stats", uri, aois,
                 bands, out, batch_size=batch_size, geometry_column=geometry_column, geometry_crs=geometry_crs,
                 version=version, runner=runner)


@app.command()
def sample(
    uri: _CollectionUri,
    points: Annotated[str, typer.Option(help="GeoParquet/Parquet file of points: local path or s3://")],
    bands: _BandList,
    out: _OutputTable,
    match: Annotated[str, typer.Option(
        help="all records covering a point; only the first or latest; or nearest-date (to --date-column)")] = "all",
    date_column: Annotated[str | None, typer.Option(help="Each point's date, for --match nearest-date")] = None,
    x_column: Annotated[str | None, typer.Option(help="Coordinate columns instead of a geometry column: x")] = None,
    y_column: Annotated[str | None, typer.Option(help="... and y (CRS: --geometry-crs, else lon/lat)")] = None,
    geometry_column: _GeometryColumn = "geometry",
    masked: Annotated[bool, typer.Option(help="Invalid pixels (nodata, masks, alpha) as null values")] = False,
    batch_size: Annotated[int, typer.Option(help="Points per task")] = 1024,
    geometry_crs: _GeometryCrs = None,
    version: _ReadVersion = None,
    runner: _Runner = None,
) -> None:
    """Run the point-sampling flow: the band values at every point into an output Delta table."""
    _run_batches("points", {"match": match, "date_column": date_column, "x_column": x_column, "y_column": y_column,
                            "masked": masked}, "--match, --date-column, --x-column, --y-column", uri, points, bands,
                 out, batch_size=batch_size, geometry_column=geometry_column, geometry_crs=geometry_crs,
                 version=version, runner=runner)


@app.command()
def export(uri: Annotated[str, typer.Argument(help="Collection URI")],
           path: Annotated[str, typer.Argument(help="GeoParquet file to write: local path or s3://")],
           version: Annotated[int | None, typer.Option(help="Version to export")] = None) -> None:
    """Export a collection version to GeoParquet (``Collection.export``: stac-geoparquet, no internal columns)."""
    import rasteret_core as rc

    col = rc.load(uri, version=version)
    written = col.export(path)
    console.print(f"wrote {len(col)} records of {uri} v{col.version} to {written}")


def _run_batches(kind: Kind, options: dict[str, Any], hint: str, uri: str, source: str, bands: str, out: str, *,
                 batch_size: int, geometry_column: str, geometry_crs: str | None, version: int | None,
                 runner: str | None) -> None:
    """Check the kind's options (a bad one is a usage error naming ``hint``), run its flow, print the summary."""
    from rasteret_core import RasteretError
    from rasteret_tasks import batch_options

    from ._runners import with_runner
    from .extract import extract_aois
    from .sample import sample_points

    try:
        batch_options(kind, **options)
    except RasteretError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    flow = extract_aois if kind == "aois" else sample_points
    where = source if "://" in source else str(Path(source).resolve())
    result = with_runner(flow, runner)(uri, where, bands.split(","), out, version=version,
                                       batch_size=batch_size, geometry_column=geometry_column,
                                       geometry_crs=geometry_crs, **options)
    _print_dict("extracted" if kind == "aois" else "sampled", result.report())
    for failure in result.failures:
        console.print(f"[red]{failure.unit} failed:[/red] {failure.error}")
    if result.failures:
        raise typer.Exit(1)


def _print_dict(title: str, values: dict) -> None:
    table = Table(title=title, show_header=False)
    for key, value in values.items():
        table.add_row(str(key), str(value))
    console.print(table)


def run() -> None:
    """Entry point: run the app; Rasteret's own errors print as one clear line, exit code 1."""
    from rasteret_core import RasteretError

    try:
        app()
    except RasteretError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    run()
