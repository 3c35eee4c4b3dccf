"""The ``rasteret`` command: build, inspect and read collections, run the flows, draw pictures.

Every command takes ``--json`` (one JSON document on stdout, for scripts) and the
global ``--debug`` (``rasteret --debug COMMAND ...``: show the traceback of an error).
Long operations (ingest, enrich, extract, sample, export) draw rich progress bars on
a terminal, fed by the flows' partition and batch completion; nothing is drawn when
stdout is not a terminal.

Exit codes. A Rasteret error prints one message (what went wrong, where, what to do)
on stderr, without a traceback, and exits with the code of its class (the most
specific class listed wins; with ``--json`` stdout also gets ``{"error": {...}}``):

====  =====================  ==================================================================
code  error                  meaning
====  =====================  ==================================================================
0     -                      success
1     -                      the run finished but some units failed (headers quarantined,
                             batches failed): the summary lists them; or an unlisted error
2     usage                  a missing or malformed option (the command-line parser's code)
3     ConfigError            a setting (``RASTERET_*``/``AWS_*``) or an option has a bad value
4     PlanningError          the read cannot be planned against the collection
5     GeometryError          an AOI, a point or a CRS string is invalid or cannot be transformed
6     BandError              a band is not in the collection (or lacks header metadata)
7     NoRecordsError         no record meets the AOI (outside the collection's extent or dates)
8     GridMismatchError      records or bands on different pixel grids asked to stack
9     StatisticError         an unknown statistic (``--stats``)
10    FetchError             reading bytes failed (network, server errors after retries)
11    ObjectNotFoundError    an object does not exist (404)
12    AccessDeniedError      credentials missing or refused (401/403)
13    TiffFormatError        a file is not a TIFF Rasteret can parse (also UnsupportedTiffError)
14    DecodeError            a tile's bytes could not be decoded
15    CollectionError        the collection (or another table) is missing or cannot be written
16    SchemaError            a table lacks the columns or types needed
17    SourceError            a record source (STAC API, Parquet table) failed
18    StaleAssetError        source COGs changed since their headers were parsed
19    missing extra          an optional dependency is missing (the message names the extra)
20    ReadTooLargeError      the read would exceed ``RASTERET_MAX_READ_BYTES`` (nothing fetched)
21    Prefect unavailable    a flow command could not reach the Prefect API (``PREFECT_API_URL``, or
                             the temporary server Prefect starts did not come up in time)
====  =====================  ==================================================================
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime as _datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pyarrow as pa
    import shapely

    import rasteret_core as rc
    from rasteret_tasks import Kind

console = Console() if sys.stdout.isatty() else Console(width=160)  # logs and CI get whole tables
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)

# (error class name, exit code, what to do). Matched along the error's class hierarchy: the first
# listed ancestor wins. Names, not classes: AccessDeniedError is looked up where the core has it.
EXIT_CODES: tuple[tuple[str, int, str], ...] = (
    ("ConfigError", 3, "fix the setting or option named above (RASTERET_* and AWS_* variables)"),
    ("GeometryError", 5, "check the AOI file and --geometry-crs (a CRS pyproj knows, e.g. EPSG:32632)"),
    ("BandError", 6, "`rasteret info URI` lists the collection's bands"),
    ("NoRecordsError", 7, ("`rasteret info URI` shows the collection's extent and dates; "
                          "check the AOI's CRS (--geometry-crs)")),
    ("GridMismatchError", 8, "read fewer records (one CRS) or bands on one grid"),
    ("StatisticError", 9, "use count, mean, min, max, std or median"),
    ("ReadTooLargeError", 20, ("read a smaller AOI, fewer records or bands, an overview (--overview), or raise "
                              "RASTERET_MAX_READ_BYTES")),
    ("PlanningError", 4, "check the request against `rasteret info URI`"),
    ("AccessDeniedError", 12, ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); "
                              "AWS_NO_SIGN_REQUEST=YES for public buckets")),
    ("ObjectNotFoundError", 11, "check the href or URI; the object may have moved (re-ingest)"),
    ("FetchError", 10, "check the network and the endpoint (AWS_ENDPOINT_URL), then try again"),
    ("DecodeError", 14, "check the file with gdalinfo -checksum, then `rasteret enrich URI --stale`"),
    ("TiffFormatError", 13, "check the file with gdalinfo; Rasteret reads tiled or striped GeoTIFFs/COGs"),
    ("StaleAssetError", 18, "re-parse the changed headers: `rasteret enrich URI --stale`"),
    ("SchemaError", 16, "check the table's columns (--geometry-column)"),
    ("SourceError", 17, "check the STAC API or record table named above"),
    ("CollectionError", 15, "check the URI (and credentials for s3://); build or ingest a collection first"),
    ("RasteretError", 1, "see the message above"),
)
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_CREDENTIALS = 12
EXIT_MISSING_EXTRA = 19
EXIT_PREFECT = 21
_PREFECT_DOWN = ("ephemeral Prefect API server", "Failed to reach API at")  # Prefect's RuntimeError messages
_PREFECT_HINT = ("start a server (`prefect server start`) and set PREFECT_API_URL, or give Prefect's temporary "
                 "server more time: PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120")

_EPILOG = (
    "Exit codes: 0 ok; 1 some units failed (see the summary); 2 usage; 3 ConfigError; 4 PlanningError; "
    "5 GeometryError (AOI, CRS); 6 BandError; 7 NoRecordsError (AOI outside the collection); "
    "8 GridMismatchError; 9 StatisticError; 10 FetchError; 11 ObjectNotFoundError; "
    "12 AccessDeniedError (credentials missing or refused); 13 TiffFormatError; 14 DecodeError; "
    "15 CollectionError; 16 SchemaError; 17 SourceError; 18 StaleAssetError; 19 missing optional extra; "
    "20 ReadTooLargeError; 21 Prefect API unreachable. "
    "Add --debug before the command for a traceback."
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[(?:\d+;)*\d*m(?=\S)")


@dataclasses.dataclass(slots=True)
class _Run:
    """How this invocation reports: set by the global options and by each command's ``--json``."""

    debug: bool = False
    json: bool = False


_run = _Run()


def exit_code_for(exc: BaseException) -> tuple[int, str]:
    """The exit code and the what-to-do hint for an error (see the module's table)."""
    names = [cls.__name__ for cls in type(exc).__mro__]
    if type(exc).__name__ == "NoCredentialsError":  # botocore: no credentials anywhere
        return EXIT_CREDENTIALS, next(hint for name, _, hint in EXIT_CODES if name == "AccessDeniedError")
    if isinstance(exc, ImportError):
        return EXIT_MISSING_EXTRA, "install the extra named above"
    if _prefect_down(exc):
        return EXIT_PREFECT, _PREFECT_HINT
    for name, code, hint in EXIT_CODES:
        if name in names:
            return code, hint
    return 1, ""


def _is_reported(exc: BaseException) -> bool:
    """Errors the command line reports as a message: Rasteret's own, missing extras, missing credentials."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "RasteretError" in names or type(exc).__name__ == "NoCredentialsError" or _prefect_down(exc):
        return True
    return isinstance(exc, ImportError) and 'pip install "rasteret[' in str(exc)


def _prefect_down(exc: BaseException) -> bool:
    """Whether ``exc`` is Prefect saying its API is unreachable (a RuntimeError, by its message)."""
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _PREFECT_DOWN)


def report_error(exc: BaseException) -> int:
    """Print ``exc`` as one message (stderr; and a JSON document on stdout with ``--json``); return its exit code."""
    code, hint = exit_code_for(exc)
    message = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
    if type(exc).__name__ == "NoCredentialsError":
        message = "no AWS credentials found for s3:// (none in AWS_* variables, AWS_PROFILE or ~/.aws)"
    kind = "PrefectUnavailable" if _prefect_down(exc) else type(exc).__name__
    if _run.debug:
        err_console.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    err_console.print(f"[red]error ({kind}):[/red] {escape(message)}", highlight=False)
    if hint:
        err_console.print(f"[dim]what to do:[/dim] {escape(hint)}", highlight=False)
    if not _run.debug:
        err_console.print(f"[dim](exit code {code}; rasteret --debug ... shows the traceback)[/dim]",
                          highlight=False)
    if _run.json:
        print(json.dumps({"error": {"type": kind, "message": message, "hint": hint, "exit_code": code}}))
    return code


class _Group(typer.core.TyperGroup):
    """The command group: Rasteret errors become one message and their exit code (see the module's table)."""

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors click; its module is private)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not _is_reported(exc):
                raise
            raise typer.Exit(report_error(exc)) from None


app = typer.Typer(cls=_Group, help="Rasteret: index-first reads of cloud-optimized GeoTIFFs, run as Prefect flows.",
                  epilog=_EPILOG, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

_RUNNER_HELP = "Task runner: threads (default), dask (local worker processes) or a Dask scheduler tcp://HOST:PORT"

# Options several commands share.
_CollectionUri = Annotated[str, typer.Argument(help="Collection URI: a local path or s3://bucket/prefix")]
_BandList = Annotated[str, typer.Option(help="Bands, comma-separated: B1,B2,...")]
_OutputTable = Annotated[str, typer.Option(help="Output Delta table: local path or s3://")]
_GeometryColumn = Annotated[str, typer.Option(help="The geometry column (AOIs or points)")]
_GeometryCrs = Annotated[str | None, typer.Option(
    help="CRS of the geometries (or x/y) if the file does not say, e.g. EPSG:32632; default OGC:CRS84 (lon/lat)")]
_ReadVersion = Annotated[int | None, typer.Option(help="Collection version to read (default: the latest)")]
_Runner = Annotated[str | None, typer.Option(help=_RUNNER_HELP)]
_Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (no tables, no progress)")]
_Overview = Annotated[int | None, typer.Option(help="Read this overview (0 = the finest reduced level)")]
_PngOut = Annotated[Path, typer.Option(help="The PNG to write", dir_okay=False)]
_PartitionSize = Annotated[int, typer.Option(help="Scenes per header-parsing task")]
_MaxInFlight = Annotated[int, typer.Option(help="Partitions parsed at once")]
_Quarantine = Annotated[str | None, typer.Option(help="Quarantine Delta table (default URI_quarantine)")]
_AoiFile = Annotated[Path, typer.Option(
    "--aoi", help="AOIs: GeoJSON (lon/lat) or GeoParquet/Parquet; several AOIs are read as one (their union)",
    exists=True, dir_okay=False)]


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


def _band_list(value: str) -> list[str]:
    return [b.strip() for b in value.split(",") if b.strip()]


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


def _jsonable(value: Any) -> Any:
    """Summaries (dataclasses), datetimes and paths as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, _datetime):
        return value.isoformat()
    return str(value)


def _emit(document: Any) -> None:
    """Print the command's JSON document (``--json``)."""
    print(json.dumps(_jsonable(document), indent=2))


@contextmanager
def _progress(operation: str) -> Iterator[None]:
    """Progress bars for a long operation (a terminal only, never with ``--json``); Prefect logs without tracebacks."""
    from ._prefect_server import wait_ready
    from ._progress import ProgressBars

    wait_ready()  # the flow must not meet a temporary server that is not up yet
    _short_prefect_errors()
    enabled = console.is_terminal and not _run.json
    with ProgressBars(console, operation, enabled=enabled), _prefect_logs_to(console if enabled else None):
        yield


@contextmanager
def _prefect_logs_to(target: Console | None) -> Iterator[None]:
    """Print Prefect's console log lines through ``target`` (the bars' console: lines go above the bars)."""
    handlers = [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]
    if target is None or not handlers:
        yield
        return
    saved = [h.console for h in handlers]  # type: ignore[attr-defined]
    for handler in handlers:
        handler.console = target  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for handler, own in zip(handlers, saved, strict=True):
            handler.console = own  # type: ignore[attr-defined]


def _short_prefect_errors() -> None:
    """Prefect's console log lines keep saying which task or flow failed, without the traceback of an error the
    command reports itself as one message (unless ``--debug``). The logs sent to the Prefect API keep it.
    """
    if _run.debug:
        return
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith("prefect")]
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in names)]:
        for handler in logger.handlers:
            formatter = handler.formatter
            if type(handler).__name__ != "PrefectConsoleHandler" or formatter is None \
                    or getattr(formatter, "_rasteret_short", False):
                continue
            formatter.format = _without_reported_traceback(formatter.format)  # type: ignore[method-assign,assignment]
            formatter._rasteret_short = True  # type: ignore[attr-defined]  # noqa: SLF001


def _without_reported_traceback(format_record: Callable[[logging.LogRecord], str]) -> Callable[[logging.LogRecord], str]:
    """``format_record`` leaving out the traceback (and cached traceback text) of an error the command reports."""

    def short(record: logging.LogRecord) -> str:
        info = record.exc_info
        if not (info and isinstance(info[1], BaseException) and _is_reported(info[1])):
            return format_record(record)
        text = record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return format_record(record)
        finally:
            record.exc_info, record.exc_text = info, text

    return short


_FLOW_COMMANDS = frozenset({"demo", "ingest", "enrich", "extract", "sample"})


@app.callback(epilog=_EPILOG)
def main(ctx: typer.Context,
         verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v info, -vv debug")] = 0,
         debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error (and debug logs)")]
         = False) -> None:
    """Rasteret command line: build, inspect and read collections of cloud-optimized GeoTIFFs."""
    _run.debug, _run.json = debug, False
    level = logging.DEBUG if debug else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level)
    if ctx.invoked_subcommand in _FLOW_COMMANDS and "--help" not in sys.argv:
        from ._prefect_server import start_early

        ctx.with_resource(start_early())  # Prefect's temporary server boots while the command imports and checks


def _set_json(value: bool) -> None:
    _run.json = value


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the sample archive, tables and pictures go")] = Path("demo-data"),
    scale: Annotated[int, typer.Option(help="Sample image size multiplier")] = 1,
    plots: Annotated[bool, typer.Option(help="Write the quicklook and time-series PNGs (needs matplotlib)")] = True,
    json_: _Json = False,
) -> None:
    """Run the main job end to end on local defaults: sample archive, ingestion, extraction, pictures."""
    from rasteret_demo import check_demo_extra

    from .demo import run_demo

    _set_json(json_)
    check_demo_extra()  # an ImportError naming the extra: exit code 19
    if plots:
        from ._plots import require_matplotlib

        require_matplotlib()
    quiet = Console(file=sys.stderr, quiet=True) if json_ else console
    done = run_demo(workdir, scale=scale, console=quiet, plots=plots)
    if json_:
        _emit(done)


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
    partition_size: _PartitionSize = 16, max_in_flight: _MaxInFlight = 4, quarantine: _Quarantine = None,
    runner: _Runner = None,
    json_: _Json = False,
) -> None:
    """Run the ingestion flow: search a STAC API, parse the headers of new and changed records, commit them.

    Records the collection already holds as they are are skipped before any header is
    read: re-running over an unchanged archive reads no header and commits nothing.
    Exit code 1 when some headers or partitions failed (the rest is committed).
    """
    from ._runners import with_runner
    from .ingest import ingest_collection

    _set_json(json_)
    with _progress(f"ingesting {collection} into {uri}"):
        result = with_runner(ingest_collection, runner)(
            stac_api, collection, uri, bbox=_bbox(bbox), datetime=datetime, intersects=_geojson(intersects),
            query=_json_object(query, "--query"), bands=_bands(bands), max_items=max_items,
            href_rewrites=_rewrites(href_rewrite), partial=partial, partition_size=partition_size,
            max_in_flight=max_in_flight, quarantine_uri=quarantine)
    _summary("ingested", result)
    if result.failures or result.partition_failures:
        _say(f"[yellow]{len(result.failures)} header(s) failed (records left out, quarantined in "
             f"{result.quarantine}), {len(result.partition_failures)} partition(s) failed; see the run's "
             "artifact; the next ingestion tries them again")
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def enrich(
    uri: _CollectionUri,
    refresh: Annotated[bool, typer.Option(help="Re-parse every header, not only missing ones")] = False,
    stale: Annotated[bool, typer.Option(help="Also re-parse the headers of objects changed since (one HEAD each)")] = False,
    partition_size: _PartitionSize = 16, max_in_flight: _MaxInFlight = 4, quarantine: _Quarantine = None,
    runner: _Runner = None,
    json_: _Json = False,
) -> None:
    """Run the enrichment flow: parse the headers records lack, in partitions; commit a new version.

    Exit code 1 when some headers were quarantined or partitions failed.
    """
    from ._runners import with_runner
    from .enrich import enrich_collection

    _set_json(json_)
    with _progress(f"enriching {uri}"):
        result = with_runner(enrich_collection, runner)(uri, partition_size=partition_size,
                                                         max_in_flight=max_in_flight, quarantine_uri=quarantine,
                                                         refresh=True if refresh else "stale" if stale else False)
    _summary("enriched", result)
    if result.failures or result.partition_failures:
        _say(f"[yellow]{len(result.failures)} header(s) quarantined in {result.quarantine}, "
             f"{len(result.partition_failures)} partition(s) failed; see the run's artifact; "
             f"re-run `rasteret enrich {uri}` to try them again")
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def info(
    uri: _CollectionUri,
    version: Annotated[int | None, typer.Option(help="Version to describe")] = None,
    plot: Annotated[Path | None, typer.Option(
        help="Also write a PNG of the record footprints (lon/lat, coloured by date) beside a timeline",
        dir_okay=False)] = None,
    json_: _Json = False,
) -> None:
    """Summarise a collection version: records, bands, CRSs, extent and time range."""
    import pyarrow.compute as pc

    import rasteret_core as rc

    _set_json(json_)
    if plot is not None:
        from ._plots import require_matplotlib

        require_matplotlib()  # before any read
    col = rc.load(uri, version=version)
    t = col.to_arrow()
    dt = t["datetime"]
    bbox = t["bbox"]
    extent = [pc.min(bbox.combine_chunks().field(k)).as_py() for k in ("xmin", "ymin")] + \
             [pc.max(bbox.combine_chunks().field(k)).as_py() for k in ("xmax", "ymax")] if len(col) else None
    values: dict[str, Any] = {
        "uri": uri,
        "version": col.version,
        "records": len(col),
        "bands": col.bands,
        "crs": sorted({c for c in t["crs"].to_pylist() if c}),
        "extent (lon/lat)": extent,
        "time range": [pc.min(dt).as_py(), pc.max(dt).as_py()] if len(col) else None,
    }
    if plot is not None:
        values["plot"] = str(_footprints_plot(col, t, plot))
    if json_:
        _emit({k.split(" (")[0].replace(" ", "_"): v for k, v in values.items()})
        return
    _print_dict(uri, {
        **values,
        "bands": ", ".join(col.bands),
        "crs": ", ".join(values["crs"]),
        "extent (lon/lat)": ", ".join(f"{v:.5f}" for v in extent) if extent else "-",
        "time range": " .. ".join(str(v) for v in values["time range"]) if values["time range"] else "-",
    })


def _footprints_plot(col: rc.Collection, table: pa.Table, path: Path) -> Path:
    import shapely

    from ._plots import footprints_png

    footprints = shapely.from_wkb(table["geometry"].to_pylist())
    groups = [c or "?" for c in table["crs"].to_pylist()]
    return footprints_png(path, list(footprints), table["datetime"].to_pylist(), groups,
                          title=f"{col.uri} v{col.version}: {len(col)} records, bands {', '.join(col.bands)}")


@app.command()
def history(uri: _CollectionUri, json_: _Json = False) -> None:
    """List the collection's versions (Delta commits), newest first."""
    import rasteret_core as rc

    _set_json(json_)
    entries = rc.load(uri).history()
    if json_:
        _emit(entries)
        return
    table = Table("version", "timestamp", "operation", "metadata")
    for entry in entries:
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
    overview: _Overview = None,
    geometry_column: _GeometryColumn = "geometry",
    batch_size: Annotated[int, typer.Option(help="AOIs per task")] = 64,
    geometry_crs: _GeometryCrs = None,
    version: _ReadVersion = None,
    runner: _Runner = None,
    json_: _Json = False,
) -> None:
    """Run the extraction flow: read bands (or their statistics) for every AOI into an output Delta table.

    Exit code 1 when some batches failed (the others are committed).
    """
    _set_json(json_)
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
    geometry_crs: _GeometryCrs = None, version: _ReadVersion = None, runner: _Runner = None, json_: _Json = False,
) -> None:
    """Run the point-sampling flow: the band values at every point into an output Delta table.

    Exit code 1 when some batches failed (the others are committed).
    """
    _set_json(json_)
    _run_batches("points", {"match": match, "date_column": date_column, "x_column": x_column, "y_column": y_column,
                            "masked": masked}, "--match, --date-column, --x-column, --y-column", uri, points, bands,
                 out, batch_size=batch_size, geometry_column=geometry_column, geometry_crs=geometry_crs,
                 version=version, runner=runner)


@app.command()
def export(uri: _CollectionUri,
           path: Annotated[str, typer.Argument(help="GeoParquet file to write: local path or s3://")],
           version: Annotated[int | None, typer.Option(help="Version to export")] = None,
           json_: _Json = False) -> None:
    """Export a collection version to GeoParquet (stac-geoparquet conventions, no internal columns)."""
    import rasteret_core as rc

    _set_json(json_)
    with _progress(f"exporting {uri}"):
        col = rc.load(uri, version=version)
        written = col.export(path)
    if json_:
        _emit({"collection": uri, "version": col.version, "records": len(col), "path": written})
        return
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
    import rasteret_core as rc

    band_list = _band_list(bands)
    col = rc.load(uri, version=version)  # before any flow runs: a missing collection or an unknown band
    unknown = [b for b in band_list if b not in col.bands]
    if unknown or not band_list:
        raise rc.BandError(f"unknown band(s) {unknown}; the collection {uri} v{col.version} has {col.bands}")
    flow = extract_aois if kind == "aois" else sample_points
    where = source if "://" in source else str(Path(source).resolve())
    noun = "AOIs" if kind == "aois" else "points"
    with _progress(f"reading {noun} of {source} from {uri}"):
        result = with_runner(flow, runner)(uri, where, band_list, out, version=version,
                                           batch_size=batch_size, geometry_column=geometry_column,
                                           geometry_crs=geometry_crs, **options)
    _summary("extracted" if kind == "aois" else "sampled", result)
    for failure in result.failures:
        _say(f"[red]{escape(failure.unit)} failed:[/red] {escape(failure.error)}")
    if result.failures:
        raise typer.Exit(EXIT_PARTIAL)


# ---------------------------------------------------------------------------------------------- explain


@app.command()
def explain(
    uri: _CollectionUri,
    aois: Annotated[Path, typer.Option(help="AOIs: GeoJSON (lon/lat) or GeoParquet/Parquet", exists=True,
                                       dir_okay=False)],
    bands: _BandList,
    latency_ms: Annotated[float, typer.Option(help="Round-trip time of one request, for the time estimate")] = 50.0,
    concurrency: Annotated[int | None, typer.Option(
        help="Requests in flight at once (default RASTERET_MAX_CONCURRENCY, 32)")] = None,
    throughput_mbps: Annotated[float, typer.Option(
        help="Download rate in MB/s, for the time estimate")] = 100.0,
    all_touched: Annotated[bool, typer.Option(help="Every pixel an AOI touches, not only centres inside")] = False,
    overview: Annotated[int | None, typer.Option(help="Plan this overview (0 = the finest reduced level)")] = None,
    geometry_column: _GeometryColumn = "geometry", geometry_crs: _GeometryCrs = None, version: _ReadVersion = None,
    json_: _Json = False,
) -> None:
    """What reading the AOIs would cost, before anything is fetched: records, tiles, requests, bytes, time.

    Each AOI is planned as `extract` reads it (from the headers stored in the
    collection; no pixel is requested). The time estimate assumes the requests go out
    in rounds of CONCURRENCY, each round costing LATENCY_MS, plus the bytes at
    THROUGHPUT_MBPS; decoding is not counted.
    """
    import rasteret_core as rc

    _set_json(json_)
    band_list = _band_list(bands)
    col = rc.load(uri, version=version)
    table, crs = _aoi_table(aois, geometry_column, geometry_crs)
    import shapely

    geometries = shapely.from_wkb(table[geometry_column].to_pylist())
    totals = {"tiles": 0, "requests": 0, "bytes": 0, "tile_bytes": 0}
    reads, outside = 0, 0
    for geometry in geometries:
        try:
            cost = col.explain(geometry, band_list, geometry_crs=crs, all_touched=all_touched, overview=overview)
        except rc.NoRecordsError:
            outside += 1
            continue
        reads += cost["records"]
        for key in totals:
            totals[key] += cost[key]
    if outside == len(geometries):
        raise rc.NoRecordsError(f"none of the {len(geometries)} AOI(s) of {aois} meets a record of {uri} "
                                f"v{col.version} (AOI CRS {crs.to_string()})")
    records = len(col.subset(geometries=list(geometries), geometry_crs=crs))
    in_flight = concurrency or col.settings.max_concurrency
    rounds = math.ceil(totals["requests"] / in_flight)
    seconds = rounds * latency_ms / 1000 + totals["bytes"] / (throughput_mbps * 1e6)
    plan = {
        "collection": uri, "version": col.version, "aois": len(geometries), "aois_outside": outside,
        "bands": band_list, "records": records, "aoi_record_reads": reads, **totals,
        "latency_ms": latency_ms, "concurrency": in_flight, "throughput_mbps": throughput_mbps,
        "estimated_seconds": round(seconds, 3),
    }
    if json_:
        _emit(plan)
        return
    _print_dict(f"explain {uri} v{col.version} (nothing fetched)", {
        "AOIs": f"{len(geometries)} ({outside} meet no record)" if outside else len(geometries),
        "bands": ", ".join(band_list),
        "records": f"{records} ({reads} AOI x record reads)",
        "tiles": f"{totals['tiles']:,}",
        "requests": f"{totals['requests']:,}",
        "bytes": f"{totals['bytes']:,} ({totals['bytes'] / 1e6:.1f} MB)",
        "estimated time": f"{seconds:.2f} s ({rounds} round(s) of <= {in_flight} requests at {latency_ms:g} ms, "
                          f"{totals['bytes'] / 1e6:.1f} MB at {throughput_mbps:g} MB/s)",
    })


def _aoi_table(path: Path, geometry_column: str, geometry_crs: str | None) -> tuple[pa.Table, Any]:
    """An AOI file (GeoJSON or (Geo)Parquet) as an Arrow table with WKB geometries, and its CRS."""
    import pyarrow as pa
    import shapely

    from rasteret_core import GeometryError
    from rasteret_core.engine import read_geometry_table

    if path.suffix.lower() in (".geojson", ".json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise GeometryError(f"{path}: not GeoJSON ({exc})") from None
        features = doc.get("features") if doc.get("type") == "FeatureCollection" else \
            [doc if doc.get("type") == "Feature" else {"type": "Feature", "geometry": doc, "properties": {}}]
        try:
            geoms = [shapely.geometry.shape(f["geometry"]) for f in features]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise GeometryError(f"{path}: not a GeoJSON geometry, Feature or FeatureCollection ({exc})") from None
        props = [f.get("properties") or {} for f in features]
        columns = {k: [p.get(k) for p in props] for k in dict.fromkeys(k for p in props for k in p)}
        table = pa.table({**columns, geometry_column: shapely.to_wkb(geoms)})
        return read_geometry_table(table, geometry_column=geometry_column, geometry_crs=geometry_crs)
    return read_geometry_table(str(path), geometry_column=geometry_column, geometry_crs=geometry_crs)


# ---------------------------------------------------------------------------------------------- pictures


@app.command()
def quicklook(
    uri: _CollectionUri,
    aoi: _AoiFile,
    bands: Annotated[str, typer.Option(
        help="Three bands for true colour (red,green,blue order) or one band (drawn with a colour bar)")],
    out: _PngOut = Path("quicklook.png"),
    record: Annotated[str | None, typer.Option(
        help="The record (id) to draw; default the latest record meeting the AOI with valid pixels")] = None,
    overview: _Overview = None,
    geometry_column: _GeometryColumn = "geometry", geometry_crs: _GeometryCrs = None, version: _ReadVersion = None,
    json_: _Json = False,
) -> None:
    """Write a PNG of one record's pixels within an AOI: true colour (2-98 % stretch) or one band with a colour bar.

    The axes are the record's CRS coordinates (the CRS in the label); the AOI outline
    is drawn over the pixels. Needs matplotlib: the `plot` extra.
    """
    import rasteret_core as rc

    from ._pictures import write_quicklook
    from ._plots import require_matplotlib

    _set_json(json_)
    require_matplotlib()
    band_list = _band_list(bands)
    if len(band_list) not in (1, 3):
        raise typer.BadParameter(f"one band or three (red,green,blue), got {len(band_list)}", param_hint="--bands")
    col = rc.load(uri, version=version)
    table, crs = _aoi_table(aoi, geometry_column, geometry_crs)
    drawn = write_quicklook(col, _union(table, geometry_column), crs, band_list, out, record=record,
                            overview=overview)
    if json_:
        _emit(drawn)
        return
    console.print(f"wrote {drawn['png']}: {drawn['record']} ({', '.join(band_list)}), {drawn['width']} x "
                  f"{drawn['height']} px in {drawn['crs']}; {drawn['requests']} requests, {drawn['bytes']:,} bytes")


@app.command()
def timeseries(
    uri: _CollectionUri,
    band: Annotated[str, typer.Option(help="Band(s) to plot, comma-separated: one line per band (and AOI)")],
    aoi: Annotated[Path | None, typer.Option(
        help="AOIs: GeoJSON (lon/lat) or GeoParquet/Parquet: the mean of each AOI's valid pixels, per record",
        exists=True, dir_okay=False)] = None,
    point: Annotated[str | None, typer.Option(
        help="X,Y of one point (lon/lat unless --geometry-crs): the pixel value per record")] = None,
    out: _PngOut = Path("timeseries.png"),
    label_column: Annotated[str | None, typer.Option(
        help="The AOI column naming each line (default: the first text column, else the row number)")] = None,
    datetime: Annotated[str | None, typer.Option(help="Only records in START/END (ISO 8601, .. for open)")] = None,
    geometry_column: _GeometryColumn = "geometry", geometry_crs: _GeometryCrs = None, version: _ReadVersion = None,
    json_: _Json = False,
) -> None:
    """Write a PNG time series: an AOI's mean (or a point's value) of a band across the records, by date.

    Invalid pixels (nodata, masks) are left out of the means; a record without a
    valid pixel in the AOI leaves a gap. Needs matplotlib: the `plot` extra.
    """
    import rasteret_core as rc

    from ._pictures import aoi_means, point_values, write_timeseries
    from ._plots import require_matplotlib

    _set_json(json_)
    require_matplotlib()
    if (aoi is None) == (point is None):
        raise typer.BadParameter("give --aoi FILE or --point X,Y (one of them)", param_hint="--aoi/--point")
    band_list = _band_list(band)
    col = rc.load(uri, version=version)
    if datetime is not None:
        col = col.subset(datetime=datetime)
    if point is not None:
        try:
            x, y = (float(v) for v in point.split(","))
        except ValueError:
            raise typer.BadParameter(f"{point!r}: expected X,Y", param_hint="--point") from None
        crs_text = geometry_crs or "OGC:CRS84"
        series = point_values(col, x, y, crs_text, band_list)
        where, ylabel = f"point ({x:g}, {y:g}) {crs_text}", "pixel value"
    else:
        assert aoi is not None
        table, crs = _aoi_table(aoi, geometry_column, geometry_crs)
        labels = _labels(table, geometry_column, label_column)
        series = aoi_means(col, table, crs, band_list, labels, geometry_column=geometry_column)
        where = f"AOI {labels[0]}" if table.num_rows == 1 else f"{table.num_rows} AOIs of {aoi.name}"
        ylabel = "mean of valid pixels"
    drawn = write_timeseries(series, out, where=f"{', '.join(band_list)}: {where}",
                             source=f"{uri} v{col.version}", ylabel=f"{ylabel} ({', '.join(band_list)})")
    if json_:
        _emit(drawn)
        return
    console.print(f"wrote {drawn['png']}: {len(series)} line(s), {drawn['dates']} dates")


def _union(table: pa.Table, geometry_column: str) -> shapely.Geometry:
    import shapely

    from rasteret_core import GeometryError

    geometries = shapely.from_wkb(table[geometry_column].to_pylist())
    if not len(geometries):
        raise GeometryError("the AOI file holds no geometry")
    return shapely.union_all(geometries)


def _labels(table: pa.Table, geometry_column: str, label_column: str | None) -> list[str]:
    import pyarrow as pa

    from rasteret_core import SchemaError

    if label_column is not None:
        if label_column not in table.column_names:
            raise SchemaError(f"no column {label_column!r} in the AOIs (columns: {table.column_names})")
        return [str(v) for v in table[label_column].to_pylist()]
    for field in table.schema:
        if field.name != geometry_column and pa.types.is_string(field.type):
            return [str(v) for v in table[field.name].to_pylist()]
    return [f"#{i}" for i in range(table.num_rows)]


# ---------------------------------------------------------------------------------------------- output


def _say(message: str) -> None:
    """A remark for people: stdout normally, stderr with ``--json`` (stdout holds only the document)."""
    (err_console if _run.json else console).print(message)


def _summary(title: str, result: Any) -> None:
    """A flow's summary: its report as a table, or the whole summary as JSON (``--json``)."""
    if _run.json:
        _emit(result)
    else:
        _print_dict(title, result.report())


def _print_dict(title: str, values: dict) -> None:
    table = Table(title=title, show_header=False)
    for key, value in values.items():
        table.add_row(str(key), escape(str(value)))
    console.print(table)


def run() -> None:
    """Entry point: run the app (errors become one message and their exit code, see the module docstring)."""
    app()


if __name__ == "__main__":
    run()
