"""The one async executor: fetch a plan's byte ranges, decode tiles, assemble, mask.

Requests run concurrently (bounded by the settings' ``max_concurrency`` inside
:class:`~rasteret_core.io.store.Stores`); tiles decode in a thread pool (imagecodecs
releases the GIL) and are pasted into one preallocated array per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from rasteret_core.errors import FetchError, ReadTooLargeError
from rasteret_core.geo.rasterize import rasterize_mask
from rasteret_core.io.runtime import with_stores
from rasteret_core.io.store import IOStats, Stores
from rasteret_core.settings import Settings
from rasteret_core.tiff.decode import decode_tile
from rasteret_core.tiff.header import ImageInfo

from .planner import ChunkPlan, PointSet, RangeRequest, ReadPlan, TilePart, Window, split_plan

__all__ = ["execute_plan", "read_plan", "reduce_plan"]

log = logging.getLogger(__name__)

T = TypeVar("T")


async def execute_plan(plan: ReadPlan, stores: Stores, *, masked: bool = False) -> list[np.ndarray]:
    """Run ``plan``; return one array per chunk (window shape, native dtype), masked with its fill.

    Pixels outside the chunk's geometry (per rasterio.mask rules, honouring
    ``plan.all_touched``), pixels GDAL's mask band marks invalid (an internal mask,
    nodata, alpha; see :class:`~rasteret_core.read.planner.MaskPlan`) and sparse tiles hold
    the chunk's fill value. With ``masked`` each array is a ``numpy.ma.MaskedArray``
    whose mask is True at those pixels (as rasterio's ``read(masked=True)``).

    A point chunk (``chunk.points``) gives a 1-D array, one value per slot of its
    :class:`~rasteret_core.read.planner.PointSet`, under the same mask rules; each tile is
    decoded once and all its points are gathered from it at once.

    Raises:
        ReadTooLargeError: the plan's output exceeds ``RASTERET_MAX_READ_BYTES`` (nothing is fetched).
    """
    check_read_size(plan, stores.settings)
    outs = [np.full(_shape(c), c.fill, dtype=c.image.dtype) for c in plan.chunks]
    valid = [np.ones(_shape(c), dtype=bool) for c in plan.chunks]
    users: dict[tuple[str, int, int], list[tuple[int, bool]]] = defaultdict(list)  # -> (chunk, is its mask)
    for ci, chunk in enumerate(plan.chunks):
        for tile in chunk.tiles:
            users[(chunk.uri, chunk.ifd, tile)].append((ci, False))
        mask = chunk.mask
        if mask is not None and mask.image is not None and mask.ifd is not None:
            for tile in mask.tiles:
                if mask.image.tile_byte_counts[tile] == 0 and chunk.points is not None:
                    valid[ci][chunk.points.by_tile[(mask.ifd, tile)]] = False
                elif mask.image.tile_byte_counts[tile] == 0:  # a sparse mask tile reads 0: invalid
                    _paste(valid[ci], chunk.window, mask.image, tile, np.zeros((1, 1, 1), bool), 0)
                else:
                    users[(chunk.uri, mask.ifd, tile)].append((ci, True))
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=stores.settings.decode_threads, thread_name_prefix="rasteret-decode") as pool:

        async def run(req: RangeRequest) -> None:
            data = await stores.get_range(req.uri, req.start, req.end)
            if len(data) < req.length:
                raise FetchError(
                    f"got {len(data)} bytes of [{req.start}, {req.end}); the object is shorter than its "
                    "header says (replaced since indexing?); re-enrich the collection",
                    uri=req.uri,
                    retryable=False,
                )
            decodes = []
            for part in req.parts:
                raw = data[part.offset - req.start : part.offset - req.start + part.length]
                chunk_users = users[(req.uri, part.ifd, part.tile)]
                decodes.append(
                    loop.run_in_executor(pool, _decode_and_paste, raw, part, plan.chunks, chunk_users, outs, valid)
                )
            await asyncio.gather(*decodes)

        await asyncio.gather(*(run(req) for req in plan.requests))
        grids = {(id(c.geometry), c.transform, c.window.height, c.window.width): c for c in plan.chunks
                 if c.points is None}
        inside = dict(zip(grids, await asyncio.gather(
            *(loop.run_in_executor(pool, rasterize_mask, c.geometry, c.transform, c.window.height, c.window.width,
                                   plan.all_touched) for c in grids.values())
        ), strict=True))
    results: list[np.ndarray] = []
    for out, ok, chunk in zip(outs, valid, plan.chunks, strict=True):
        if chunk.mask is not None and chunk.mask.kind == "nodata":
            nodata = chunk.mask.nodata
            ok &= ~np.isnan(out) if nodata is not None and math.isnan(nodata) else out != nodata  # noqa: PLW2901 (in place)
        if chunk.points is None:  # a point is inside the pixel that holds it
            ok &= inside[(id(chunk.geometry), chunk.transform, chunk.window.height, chunk.window.width)]  # noqa: PLW2901
        out[~ok] = chunk.fill
        results.append(np.ma.MaskedArray(out, mask=~ok) if masked else out)
    return results


def _decode_and_paste(
    raw: bytes, part: TilePart, chunks: Sequence[ChunkPlan], users: list[tuple[int, bool]],
    outs: list[np.ndarray], valid: list[np.ndarray],
) -> None:
    """Decode one tile once and paste it into every chunk that reads it: as pixels, or as a chunk's mask."""
    ci, is_mask = users[0]
    first = chunks[ci]
    image = first.mask.image if is_mask and first.mask is not None and first.mask.image is not None else first.image
    pixels = decode_tile(raw, image, byte_order=first.byte_order, uri=first.uri, tile=part.tile, offset=part.offset)
    for ci, is_mask in users:
        chunk = chunks[ci]
        if is_mask:
            assert chunk.mask is not None
            sample = 0 if image.planar_config == 2 else chunk.mask.sample
            if chunk.points is not None:
                _gather(valid[ci], chunk.points, part.ifd, image, part.tile, pixels, sample, nonzero=True)
            else:
                _paste(valid[ci], chunk.window, image, part.tile, pixels[sample : sample + 1] != 0, 0)
        else:
            sample = 0 if image.planar_config == 2 else chunk.sample
            if chunk.points is not None:
                _gather(outs[ci], chunk.points, part.ifd, image, part.tile, pixels, sample)
            else:
                _paste(outs[ci], chunk.window, image, part.tile, pixels, sample)


def _shape(chunk: ChunkPlan) -> tuple[int, ...]:
    """A chunk's output shape: its window, or one value per point of a point chunk."""
    return (len(chunk.points),) if chunk.points is not None else (chunk.window.height, chunk.window.width)


def _gather(
    out: np.ndarray, points: PointSet, ifd: int, image: ImageInfo, tile: int, pixels: np.ndarray, plane: int,
    *, nonzero: bool = False,
) -> None:
    """Copy sample ``plane`` of a decoded tile at the pixels of the points it holds into their slots of ``out``.

    With ``nonzero`` the slots get whether the pixel is non-zero (a mask: valid).
    """
    slots = points.by_tile[(ifd, tile)]
    local = tile % (image.tiles_across * image.tiles_down)
    trow, tcol = divmod(local, image.tiles_across)
    values = pixels[plane][points.rows[slots] - trow * image.tile_height, points.cols[slots] - tcol * image.tile_width]
    out[slots] = values != 0 if nonzero else values


def _paste(out: np.ndarray, window: Window, image: ImageInfo, tile: int, pixels: np.ndarray, plane: int) -> None:
    """Copy sample ``plane`` of a decoded tile into ``out`` (which holds ``window``), where they overlap.

    A ``pixels`` array of shape ``(1, 1, 1)`` broadcasts its one value over the tile.
    """
    local = tile % (image.tiles_across * image.tiles_down)
    trow, tcol = divmod(local, image.tiles_across)
    y0, x0 = trow * image.tile_height, tcol * image.tile_width
    r0, r1 = max(y0, window.row_off), min(y0 + image.tile_height, window.row_off + window.height)
    c0, c1 = max(x0, window.col_off), min(x0 + image.tile_width, window.col_off + window.width)
    if r0 >= r1 or c0 >= c1:
        return
    source = pixels[plane]
    if source.shape != (1, 1):
        source = source[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0]
    out[r0 - window.row_off : r1 - window.row_off, c0 - window.col_off : c1 - window.col_off] = source


def check_read_size(plan: ReadPlan, settings: Settings) -> None:
    """Refuse a plan whose output would exceed ``settings.max_read_bytes``, saying its size and what to do.

    Raises:
        ReadTooLargeError: it would.
    """
    for chunk in plan.chunks:  # one tile (or strip) is fetched and decoded whole, however few pixels are read
        image = chunk.image
        samples = 1 if image.planar_config == 2 else image.samples_per_pixel
        decoded = image.tile_width * image.tile_height * samples * image.dtype.itemsize
        stored = max((int(image.tile_byte_counts[t]) for t in chunk.tiles), default=0)
        if max(decoded, stored) > settings.max_read_bytes:
            kind = "tile" if image.tiled else "strip"
            raise ReadTooLargeError(
                f"{chunk.uri}: one {kind} of this file is {image.tile_width} x {image.tile_height} px "
                f"({_human(decoded)} decoded, {_human(stored)} stored) and must be read whole, more than "
                f"RASTERET_MAX_READ_BYTES={settings.max_read_bytes} ({_human(settings.max_read_bytes)}); nothing was "
                f"fetched. Convert the file to a tiled COG (gdal_translate -of COG), or raise RASTERET_MAX_READ_BYTES",
                size=max(decoded, stored), limit=settings.max_read_bytes,
            )
    size = plan.output_bytes()
    if size <= settings.max_read_bytes:
        return
    biggest = max(plan.chunks, key=lambda c: c.window.height * c.window.width)
    raise ReadTooLargeError(
        f"this read would assemble {_human(size)} ({size} bytes: {len(plan.chunks)} record x band chunk(s), the "
        f"largest {biggest.window.height} x {biggest.window.width} px of {biggest.image.dtype}), more than "
        f"RASTERET_MAX_READ_BYTES={settings.max_read_bytes} ({_human(settings.max_read_bytes)}); nothing was "
        "fetched. Read a smaller AOI, fewer bands or records, an overview (overview=), in chunks (get_xarray) or "
        "in batches (the extraction flow, stats=), or raise RASTERET_MAX_READ_BYTES",
        size=size, limit=settings.max_read_bytes,
    )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def read_plan(
    plan: ReadPlan,
    settings: Settings,
    *,
    check: Callable[[Stores], Coroutine[Any, Any, None]] | None = None,
    masked: bool = False,
) -> tuple[list[np.ndarray], IOStats]:
    """Run a plan from sync code on the shared runtime; return its arrays and the I/O it took.

    ``check`` runs first on the same stores and sets what they check on each answer
    (``expect_fresh``: that the objects are still those the headers came from, with no
    HEAD). ``masked`` as in :func:`execute_plan`.

    Raises:
        ReadTooLargeError: the output would exceed ``RASTERET_MAX_READ_BYTES`` (checked before any I/O).
    """
    check_read_size(plan, settings)

    async def run(stores: Stores) -> list[np.ndarray]:
        return await execute_plan(plan, stores, masked=masked)

    return with_stores(settings, lambda stores: _run_checked(stores, run, check))


async def _run_checked(
    stores: Stores,
    run: Callable[[Stores], Coroutine[Any, Any, T]],
    check: Callable[[Stores], Coroutine[Any, Any, None]] | None,
) -> tuple[T, IOStats]:
    """``run(stores)`` after ``check(stores)`` if given (it sets what the stores check on each answer); also the I/O."""
    if check is not None:
        await check(stores)
    return await run(stores), stores.stats


def reduce_plan(
    plan: ReadPlan,
    settings: Settings,
    reduce: Callable[[ChunkPlan, np.ma.MaskedArray], T],
    *,
    max_pixels: int,
    check: Callable[[Stores], Coroutine[Any, Any, None]] | None = None,
) -> tuple[list[T], IOStats]:
    """Run ``plan`` in bounded batches and reduce each chunk's masked array as soon as its batch is read.

    The plan is cut by :func:`~rasteret_core.read.planner.split_plan` into batches of at most
    ``max_pixels`` window pixels; they run one after another, so only one batch's
    arrays are held at once. ``reduce(chunk, array)`` gets each chunk's masked array
    (as :func:`execute_plan` with ``masked``) in a worker thread. Returns one
    reduction per chunk, in plan order, and the I/O it took. ``check`` as in
    :func:`read_plan` (it runs once, alongside the batches).
    """
    batches = split_plan(plan, max_pixels=max_pixels)

    def reduce_all(chunks: Sequence[ChunkPlan], arrays: list[np.ndarray]) -> list[T]:
        return [reduce(chunk, arr) for chunk, arr in zip(chunks, arrays, strict=True)]  # type: ignore[arg-type]

    async def run(stores: Stores) -> list[T]:
        out: list[T] = []
        for batch in batches:
            arrays = await execute_plan(batch, stores, masked=True)
            out.extend(await asyncio.to_thread(reduce_all, batch.chunks, arrays))
            del arrays  # before the next batch decodes
        log.debug("reduced %d chunks in %d batch(es)", len(plan.chunks), len(batches))
        return out

    return with_stores(settings, lambda stores: _run_checked(stores, run, check))
