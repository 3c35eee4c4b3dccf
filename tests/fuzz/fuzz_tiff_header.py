"""Coverage-guided fuzzing of the header parser with atheris (libFuzzer).

Run: ``python tests/fuzz/fuzz_tiff_header.py -runs=20000 [corpus_dir]``. Any exception
other than Rasteret's own errors, a hang (``-timeout``) or a blow-up in memory
(``-rss_limit_mb``) is a finding. Seeds are small real GeoTIFF headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["rasteret_core"]):
    from rasteret_core.errors import RasteretError
    from rasteret_core.tiff.parser import parse_header


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def get_range(self, uri: str, start: int, end: int) -> bytes:
        return self.data[start:end]


_LOOP = asyncio.new_event_loop()


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(RasteretError):
        _LOOP.run_until_complete(parse_header("fuzz.tif", _Bytes(data), header_read=256))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
