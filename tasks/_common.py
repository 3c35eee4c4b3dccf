"""What every Rasteret task shares: retry policy, tags, staging (and the leases that let a re-run clean it)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from rasteret_core import RasteretError, Settings

IO_TAGS = ["rasteret", "rasteret-io"]
COMMIT_TAGS = ["rasteret", "rasteret-commit"]

RETRY_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1),
    "retry_jitter_factor": 0.5,
}


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task only when its error says a retry can help.

    Rasteret's own errors carry ``retryable`` (fetch errors) or are final
    (bad input, schema, format); anything else (a crash, a lost worker) is retried.
    """
    try:
        state.result()
    except RasteretError as exc:
        return bool(getattr(exc, "retryable", False))
    except Exception:  # noqa: BLE001 - an unexpected failure: let Prefect retry it
        return True
    return False


def attempt() -> tuple[int, bool]:
    """This task run's attempt number (1 for the first) and whether it is the last one allowed."""
    ctx = TaskRunContext.get()
    if ctx is None:  # called as a plain function
        return 1, True
    number = max(ctx.task_run.run_count, 1)
    return number, number > ctx.task.retries


def stage_folder(settings: Settings, *key: object) -> str:
    """A staging folder named by a hash of ``key``: the same job finds the same folder again."""
    digest = hashlib.sha256(json.dumps([str(k) for k in key]).encode()).hexdigest()[:20]
    return os.path.join(settings.staging_root(), digest)


def discard_folder(folder: str) -> None:
    """Remove a staging folder and everything in it (no error if it is gone)."""
    shutil.rmtree(folder, ignore_errors=True)


_STAGE_NAME = re.compile(r"^[0-9a-f]{20}$")  # the folders stage_folder names, and only those
_LEASE = ".lease"
log = logging.getLogger(__name__)


def _lock(path: str, *, wait: bool) -> int | None:
    """An exclusive ``flock`` on the lease file ``path`` (created if missing): its descriptor, or None if held.

    A lease file removed between the open and the lock (by :func:`sweep_stages`) is
    not the one at ``path`` any more: the lock is taken again on a fresh file.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def claim_stage(folder: str) -> Iterator[str]:
    """Hold the lease of a staging folder while the block runs (a flow run's life); yield the folder.

    The lease is an exclusive ``flock`` on ``<folder>.lease`` beside the folder, held
    by the flow's process: the kernel releases it when the process ends in any way,
    SIGKILL included, so :func:`sweep_stages` can tell an abandoned folder from one a
    live run is writing into. A second run of the same key (an enrichment of the
    same pinned version) waits for the first. The folder itself is left for the
    flow to resume from or discard; the lease file goes when the block ends.
    """
    lease = folder + _LEASE
    os.makedirs(os.path.dirname(lease), exist_ok=True)
    fd = _lock(lease, wait=True)
    assert fd is not None  # a blocking lock returns only once held
    try:
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lease)
        os.close(fd)


def sweep_stages(settings: Settings) -> list[str]:
    """Remove the staging folders no live run holds (left by runs that were killed); return them.

    Only folders named as :func:`stage_folder` names them are considered; a folder
    whose lease a live run holds (:func:`claim_stage`) is kept. Call it after
    claiming the run's own folder, so a resumable folder of the same key is kept
    for the run that resumes it.
    """
    root = settings.staging_root()
    names = {n.removesuffix(_LEASE) for n in os.listdir(root)}
    removed = []
    for name in sorted(n for n in names if _STAGE_NAME.match(n)):
        folder, lease = os.path.join(root, name), os.path.join(root, name + _LEASE)
        fd = _lock(lease, wait=False)
        if fd is None:  # a live run holds it
            continue
        try:
            if os.path.exists(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            os.unlink(lease)
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d abandoned staging folder(s) under %s", len(removed), root)
    return removed


def stage_table(table: pa.Table, folder: str, name: str) -> str:
    """Write ``table`` to ``folder/name-<random>.parquet``; return the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{uuid.uuid4().hex[:8]}.parquet")
    write_atomically(table, path)
    return path


def write_atomically(table: pa.Table, path: str, *, row_group_size: int | None = None) -> None:
    """Write Parquet to a temporary name beside ``path``, then rename: readers see all or nothing.

    ``row_group_size`` bounds the rows per row group (default: pyarrow's), so that
    :func:`read_rows` can read a range of rows without decoding the whole file.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(table, tmp, row_group_size=row_group_size)
    os.replace(tmp, path)


def read_rows(path: str, start: int, stop: int) -> pa.Table:
    """Rows ``[start, stop)`` of a Parquet file, decoding only the row groups that hold them."""
    file = pq.ParquetFile(path)
    groups: list[int] = []
    first = offset = 0
    for i in range(file.metadata.num_row_groups):
        rows = file.metadata.row_group(i).num_rows
        if offset < stop and offset + rows > start:
            if not groups:
                first = offset
            groups.append(i)
        offset += rows
    if not groups:
        return file.schema_arrow.empty_table()
    return file.read_row_groups(groups).slice(start - first, stop - start)


def write_manifest(path: str, value: dict[str, Any]) -> None:
    """Write a JSON manifest atomically (its presence marks a finished unit of work)."""
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh)
    os.replace(tmp, path)


def read_manifest(path: str) -> dict[str, Any] | None:
    """The manifest at ``path``, or None when the work it marks has not finished."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


_WIDER = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64()}


def _delta_type(kind: pa.DataType) -> pa.DataType:
    if kind in _WIDER:
        return _WIDER[kind]
    if pa.types.is_list(kind):
        return pa.list_(_delta_type(kind.value_type))
    if pa.types.is_large_list(kind):
        return pa.large_list(_delta_type(kind.value_type))
    return kind


def widen_unsigned(table: pa.Table) -> pa.Table:
    """Cast unsigned integer columns (and list items) to the signed type that holds every value.

    Delta Lake has no unsigned types: a ``uint16`` pixel of 40000 cannot be
    written as Delta's ``short``, so output tables store ``int32`` instead.
    """
    schema = pa.schema([f.with_type(_delta_type(f.type)) for f in table.schema], metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema)


def stream_staged(paths: list[str]) -> pa.RecordBatchReader:
    """The staged parts as one stream, a part in memory at a time; unsigned columns widened (:func:`widen_unsigned`).

    The schema is the parts' unified one (parts without rows are left out when any
    has rows, as :func:`read_staged` does); a part read is cast to it.
    """
    sized = [(p, pq.read_metadata(p).num_rows) for p in paths]
    used = [p for p, rows in sized if rows] or [p for p, _ in sized[:1]]
    widened = [pq.read_schema(p) for p in used]
    widened = [pa.schema([f.with_type(_delta_type(f.type)) for f in s], metadata=s.metadata) for s in widened]
    schema = pa.unify_schemas(widened, promote_options="default")

    def batches() -> Iterator[pa.RecordBatch]:
        for path in used:
            part = widen_unsigned(pq.read_table(path))
            if not part.schema.equals(schema):
                part = pa.concat_tables([schema.empty_table(), part], promote_options="default")
                part = part.select(schema.names).cast(schema)
            yield from part.to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def read_staged(paths: list[str]) -> pa.Table:
    """Concatenate staged partition tables.

    Parts without rows are left out (when any part has rows): their column types are
    placeholders (a batch that met no record cannot know the bands' pixel type).
    """
    tables = [pq.read_table(p) for p in paths]
    return pa.concat_tables([t for t in tables if t.num_rows] or tables[:1], promote_options="default")
