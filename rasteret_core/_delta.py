"""Collections and output tables on Delta Lake (a local path or ``s3://``).

Every write is one Delta commit whose ``custom_metadata`` says what happened
(operation, source, counts); never secrets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from .errors import CollectionError, SchemaError
from .settings import Settings

__all__ = ["write_table", "merge_table", "read_table", "table_history", "table_exists"]

log = logging.getLogger(__name__)


def _options(uri: str, settings: Settings) -> dict[str, str] | None:
    return settings.delta_storage_options() if uri.startswith("s3://") else None


def _metadata(operation: str, metadata: Mapping[str, Any] | None) -> dict[str, str]:
    meta = {"rasteret.operation": operation}
    for key, value in (metadata or {}).items():
        meta[f"rasteret.{key}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return meta


def table_exists(uri: str, settings: Settings) -> bool:
    """Whether a Delta table exists at ``uri``."""
    try:
        DeltaTable(uri, storage_options=_options(uri, settings))
    except TableNotFoundError:
        return False
    return True


def _strip_geo_metadata(table: pa.Table) -> pa.Table:
    # delta-rs rejects/ignores schema metadata; the geo metadata is re-attached on read
    return table.replace_schema_metadata(None)


def write_table(
    table: pa.Table,
    uri: str,
    *,
    settings: Settings,
    operation: str,
    mode: str = "append",
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Append to (or overwrite) the Delta table at ``uri`` in one commit; return the new version."""
    try:
        write_deltalake(
            uri,
            _strip_geo_metadata(table),
            mode=mode,  # type: ignore[arg-type]
            schema_mode={"append": "merge", "overwrite": "overwrite"}.get(mode),
            storage_options=_options(uri, settings),
            commit_properties=CommitProperties(custom_metadata=_metadata(operation, metadata)),
        )
        version = DeltaTable(uri, storage_options=_options(uri, settings)).version()
    except CommitFailedError as exc:
        raise CollectionError(f"{uri}: commit failed ({exc}); another writer may have committed first, retry") from exc
    except (DeltaError, OSError) as exc:
        raise CollectionError(f"{uri}: cannot write the Delta table: {exc}") from exc
    log.info("%s: committed version %d (%s, %d rows)", uri, version, operation, table.num_rows)
    return version


def merge_table(
    table: pa.Table,
    uri: str,
    *,
    settings: Settings,
    operation: str,
    key: str = "id",
    metadata: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, int]]:
    """Upsert ``table`` into the Delta table at ``uri`` on ``key`` (create it if missing).

    Returns the new version and the counts of rows inserted and updated.
    """
    if not table_exists(uri, settings):
        version = write_table(table, uri, settings=settings, operation=operation, mode="error", metadata=metadata)
        return version, {"inserted": table.num_rows, "updated": 0}
    try:
        dt = DeltaTable(uri, storage_options=_options(uri, settings))
        missing = set(dt.schema().to_arrow().names) ^ set(table.schema.names)
        if missing:
            raise SchemaError(
                f"{uri}: the new records' columns differ from the collection's ({sorted(missing)}); "
                "build with the same bands and columns, or into a new URI"
            )
        result = (
            dt.merge(
                _strip_geo_metadata(table),
                predicate=f"t.`{key}` = s.`{key}`",
                source_alias="s",
                target_alias="t",
                commit_properties=CommitProperties(custom_metadata=_metadata(operation, metadata)),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        version = dt.version()
    except CommitFailedError as exc:
        raise CollectionError(f"{uri}: merge commit failed ({exc}); another writer committed first, retry") from exc
    except (DeltaError, OSError) as exc:
        raise CollectionError(f"{uri}: cannot merge into the Delta table: {exc}") from exc
    counts = {"inserted": int(result["num_target_rows_inserted"]), "updated": int(result["num_target_rows_updated"])}
    log.info("%s: merged into version %d (%s)", uri, version, counts)
    return version, counts


def read_table(
    uri: str, *, settings: Settings, version: int | None = None, as_of: datetime | str | None = None
) -> tuple[pa.Table, int]:
    """Read a Delta table (a version, or the version current at ``as_of``); return it and its version."""
    try:
        dt = DeltaTable(uri, version=version, storage_options=_options(uri, settings))
        if as_of is not None:
            dt.load_as_version(as_of)
        return dt.to_pyarrow_table(), dt.version()
    except TableNotFoundError as exc:
        raise CollectionError(f"{uri}: no collection (Delta table) here; build one first") from exc
    except (DeltaError, OSError) as exc:
        raise CollectionError(f"{uri}: cannot read the Delta table (version={version}, as_of={as_of}): {exc}") from exc


def table_history(uri: str, *, settings: Settings) -> list[dict[str, Any]]:
    """The commits of the table at ``uri``, newest first: version, timestamp, operation, metadata."""
    try:
        dt = DeltaTable(uri, storage_options=_options(uri, settings))
    except TableNotFoundError as exc:
        raise CollectionError(f"{uri}: no collection (Delta table) here") from exc
    out = []
    for entry in dt.history():
        meta = {k.removeprefix("rasteret."): v for k, v in entry.items() if k.startswith("rasteret.")}
        out.append(
            {
                "version": entry.get("version"),
                "timestamp": datetime.fromtimestamp(entry["timestamp"] / 1000).astimezone(),
                "operation": meta.pop("operation", entry.get("operation")),
                "delta_operation": entry.get("operation"),
                "metadata": meta,
            }
        )
    return out
