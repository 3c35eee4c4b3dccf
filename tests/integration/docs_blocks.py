"""The code blocks of the documentation, and a runner that executes one page's blocks in order.

A block is a fenced block whose info string is ``python`` or ``bash``, starting at
the first column. ``python {.skip}`` or ``bash {.skip}`` (a class, which the site
renders as usual) marks one that must not run (a cluster, an install); any other
info string (``text``, ``console``, ``yaml``, none) is not code to run.

Run as a script (``python docs_blocks.py PAGE.md``) from the folder the page's
examples start in (a checkout's root): the page's Python blocks run one after the
other in one namespace, as a reader pastes them into one interpreter; each bash
block runs in a fresh ``bash -euo pipefail`` from the same folder, with the
environment the Python blocks have left. The first failing block stops the page,
naming its line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

RUNNABLE = ("python", "bash")
_FENCE = re.compile(r"^(`{3,})\s*([^`]*)$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: its language, whether it is marked ``skip``, its first code line, its code."""

    language: str
    skip: bool
    line: int
    code: str

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and not self.skip


def extract_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order (fences at the first column)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info = match.group(1), [token.strip("{}.") for token in match.group(2).split()]
        start = i + 1
        i = start
        while i < len(lines) and lines[i].rstrip() != fence:
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start}: the block opened here is never closed")
        language = info[0] if info else ""
        blocks.append(Block(language, "skip" in info[1:], start + 1, "\n".join(lines[start:i]) + "\n"))
        i += 1
    return blocks


def run_page(path: Path) -> int:
    """Run the runnable blocks of ``path`` in order; return 0, or 1 at the first failure."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    # Examples must not use deprecated names of ours: a DeprecationWarning raised for the page's own code fails it.
    warnings.filterwarnings("error", category=DeprecationWarning, module="__main__")
    for block in extract_blocks(path):
        if not block.runs:
            continue
        where = f"{path.name}:{block.line}"
        print(f"=== {where} ({block.language})", flush=True)
        start = time.monotonic()
        if block.language == "python":
            try:
                exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - the documentation's own examples
            except BaseException:  # noqa: BLE001 - report any failure with the block's place, then stop
                traceback.print_exc()
                print(f"FAILED: the python block at {where}", flush=True)
                return 1
        else:
            sys.stdout.flush()
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], env=dict(os.environ), check=False,
                                  timeout=600)
            if done.returncode != 0:
                print(f"FAILED: the bash block at {where} exited {done.returncode}", flush=True)
                return 1
        print(f"--- {where}: {time.monotonic() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    status = run_page(Path(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without interpreter teardown: native thread pools (delta-rs, Arrow) have been seen to abort
    # there ("terminate called without an active exception", rarely), after every block had passed.
    # What a page's examples do is checked above; how the interpreter winds down is not.
    os._exit(status)
