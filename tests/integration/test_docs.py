"""Every example of the README and docs/ runs, on a fresh copy of the repository, as a reader would run it.

The copy holds the files a clone of the working tree would hold (``git ls-files``:
tracked and untracked-but-not-ignored), so ``demo-data/`` and ``build/`` start
empty. Each page's ``python`` and ``bash`` blocks run in order by
``docs_blocks.py`` in a subprocess from the copy's root, with the project's
virtualenv first on ``PATH`` (``make demo`` or ``make test`` made it) and nothing
of this session's services in the environment: no ``AWS_*``, ``RASTERET_*`` or
``PREFECT_API_URL``. Pages run in the order of ``mkdocs.yml``'s nav, the README
first: the quickstart makes the sample archive and the collection the later pages
continue from, and the deployments page starts (and stops) the local stack, on the
session's Prefect server (``PREFECT_API_URL`` set for that page alone, as for a
reader who runs one; the page's ``--prefect-api`` then deploys there instead of
starting a server). The README, the quickstart and the deployments page together
are the fresh-clone walk: a collection, a plotted AOI time series PNG, a
deployment run through the local stack's worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.docs_blocks import extract_blocks

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("docs_blocks.py")
VENV_BIN = Path(sys.executable).parent


def _nav_pages() -> list[str]:
    """The pages of mkdocs.yml's nav, in order, as paths relative to the repository root."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            pages.append(f"docs/{node}")
        elif isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            for child in node.values():
                walk(child)

    walk(config["nav"])
    return pages


PAGES = ["README.md", *_nav_pages()]
DEPLOYMENTS = "docs/deployments.md"  # run by its own test: it needs the session's Prefect server
# Pages whose examples continue from the quickstart's demo-data/ (every page after it in the nav).
FIRST_PAGES = {"README.md", "docs/index.md", "docs/quickstart.md"}


def _copy_of_the_checkout(target: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not in a clone of it
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _reader_env(home: Path) -> dict[str, str]:
    """The environment of a reader's shell: the venv on PATH, none of this session's services or settings."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AWS_", "RASTERET_", "PREFECT_", "PYTEST_", "DASK_"))}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "PREFECT_HOME": str(home),  # a reader's own ~/.prefect, empty
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return _copy_of_the_checkout(tmp_path_factory.mktemp("clone"))


@pytest.fixture(scope="module")
def reader_env(tmp_path_factory):
    return _reader_env(tmp_path_factory.mktemp("prefect-home"))


_RAN: dict[str, subprocess.CompletedProcess[str]] = {}


def _run_page(page: str, checkout: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if page not in _RAN:
        _RAN[page] = subprocess.run([sys.executable, str(RUNNER), str(checkout / page)], cwd=checkout, env=env,
                                    capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL,
                                    check=False)
        # each block's output and seconds, kept beside the copy for a look after the session
        log = checkout / "docs-runs" / (Path(page).stem + ".log")
        log.parent.mkdir(exist_ok=True)
        log.write_text(_RAN[page].stdout + _RAN[page].stderr, encoding="utf-8")
    return _RAN[page]


def _stop_leftovers(checkout: Path) -> None:
    """Stop a background service a failed page left running (its pid file names it): ours only, by id."""
    for pid_file in (checkout / "demo-data").glob("*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 15)
        except (ValueError, ProcessLookupError):
            continue


def _check_page(page: str, checkout: Path, env: dict[str, str]) -> None:
    if page not in FIRST_PAGES:
        quickstart = _run_page("docs/quickstart.md", checkout, env)
        if quickstart.returncode != 0:
            pytest.fail("the quickstart failed, and this page continues from it")
    try:
        done = _run_page(page, checkout, env)
    finally:
        _stop_leftovers(checkout)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]


@pytest.mark.parametrize("page", [p for p in PAGES if p != DEPLOYMENTS])
def test_the_examples_of_each_page_run(page, checkout, reader_env):
    _check_page(page, checkout, reader_env)


def test_the_deployments_page_runs_on_the_local_stack(checkout, reader_env, prefect_api):
    """The stack of the page (S3, STAC API, worker, deployments) on the session's Prefect server.

    A reader whose ``PREFECT_API_URL`` points at a running server gets the same:
    starting a second server would cost a minute of the suite's time for nothing.
    """
    _check_page(DEPLOYMENTS, checkout, {**reader_env, "PREFECT_API_URL": prefect_api})


def test_the_quickstart_plots_an_aoi_time_series_png(checkout, reader_env):
    done = _run_page("docs/quickstart.md", checkout, reader_env)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]
    for name in ("ndvi.png", "timeseries.png", "quicklook.png"):  # the Python plot, then the CLI's pictures
        png = checkout / "demo-data" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 10_000, name


def test_every_page_is_in_the_nav_and_few_blocks_are_skipped():
    on_disk = sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
    assert sorted(_nav_pages()) == on_disk
    blocks = [b for page in PAGES for b in extract_blocks(ROOT / page)]
    skipped = [b for b in blocks if b.language in ("python", "bash") and b.skip]
    assert sum(b.runs for b in blocks) >= 40
    assert len(skipped) <= 12, [(b.line, b.code[:60]) for b in skipped]


def test_the_site_builds_strict(tmp_path):
    done = subprocess.run([str(VENV_BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "quickstart.html").is_file()  # the offline plugin: plain .html pages
    for page in (tmp_path / "site").glob("*.html"):  # offline: no script, style or font from the network
        html = page.read_text(encoding="utf-8")
        assert 'src="http' not in html and 'rel="stylesheet" href="http' not in html, page.name


class _Recorder(dict):
    """An empty environment that records every variable looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return default


def test_the_configuration_page_names_every_variable_the_settings_read():
    import rasteret_core as rc

    environ = _Recorder()
    rc.Settings.from_env(environ)
    assert any(name.startswith("RASTERET_") for name in environ.asked)
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert sorted(name for name in environ.asked if f"`{name}`" not in page) == []


def test_the_troubleshooting_page_explains_every_error_class():
    import rasteret_core as rc

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    names = {c.__name__ for c in subclasses(rc.RasteretError) if c.__module__.startswith("rasteret_core")}
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert sorted(name for name in names if f"**`{name}`**" not in page) == []


def test_the_troubleshooting_page_lists_every_exit_code_of_the_cli():
    from rasteret_flows import cli


    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    rows = [f"| {code} | `{name}` |" for name, code, _ in cli.EXIT_CODES if name != "RasteretError"]
    rows += [f"| {cli.EXIT_PARTIAL} | |", f"| {cli.EXIT_USAGE} | usage |", f"| {cli.EXIT_MISSING_EXTRA} | missing extra |",
             f"| {cli.EXIT_PREFECT} | Prefect unavailable |"]
    assert [row for row in rows if row not in page] == []
    # every other EXIT_* constant of the command is a row too
    codes = {value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert sorted(code for code in codes if f"| {code} |" not in page) == []
