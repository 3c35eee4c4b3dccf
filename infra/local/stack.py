"""The whole local stack on loopback: SeaweedFS, a STAC API, a Prefect server, a process worker; deployed.

Run::

    python -m infra.local.stack up --root /tmp/rasteret-stack

It writes the sample archive, serves it from SeaweedFS (S3) and ``rustac serve``
(STAC API), starts ``prefect server start --host 127.0.0.1``, creates the
``rasteret-local`` process pool, registers the local deployments of
``prefect.yaml`` (``RASTERET_COLLECTION_URI`` = ``s3://rasteret-tables/collection``)
(on the server of ``--prefect-api URL`` instead, when one already runs),
starts a process worker with the S3 credentials in its environment, prints how
to reach everything, and waits. Ctrl-C stops it all, in reverse order.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .cli import start_sample_services, wait_for_interrupt
from .deploy import LOCAL_DEPLOYMENTS, LOCAL_POOL, PROJECT_DIR, create_process_pool, deploy
from .prefect_server import prefect_server, prefect_worker

COLLECTION_URI = "s3://rasteret-tables/collection"


def main(argv: Sequence[str] | None = None) -> int:
    """Start the local stack, deploy, and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.stack", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service on loopback, deploy, start a worker")
    up.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    up.add_argument("--scale", type=int, default=1, help="sample image size multiplier")
    up.add_argument("--ui", action="store_true", help="serve Prefect's web UI too")
    up.add_argument("--prefect-api", default=None, metavar="URL",
                    help="deploy to this running Prefect API (say $PREFECT_API_URL) instead of starting a server")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        root = (args.root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rasteret-")))).resolve()
        services = start_sample_services(stack, root, scale=args.scale)
        api_url = args.prefect_api or stack.enter_context(prefect_server(root / "prefect", ui=args.ui))
        print(f"Prefect API:   {api_url}")
        create_process_pool(api_url, LOCAL_POOL)
        deploy(api_url, names=LOCAL_DEPLOYMENTS,
               variables={"RASTERET_STAC_API": services.stac_api, "RASTERET_COLLECTION_URI": COLLECTION_URI})
        print(f"deployed:      {', '.join(LOCAL_DEPLOYMENTS)} (pool {LOCAL_POOL})")
        worker_env = {**os.environ, **services.s3.env(), "RASTERET_STAGING_DIR": str(root / "staging")}
        stack.enter_context(prefect_worker(LOCAL_POOL, api_url=api_url, cwd=PROJECT_DIR,
                                           log_path=root / "prefect" / "worker.log", env=worker_env))
        print(f"worker:        polling {LOCAL_POOL} (log {root / 'prefect' / 'worker.log'})")
        print("try:")
        print(f"  export PREFECT_API_URL={api_url}")
        for key, value in services.s3.env().items():
            print(f"  export {key}={value}")
        print("  prefect deployment run ingest-collection/scheduled-ingestion")
        wait_for_interrupt()
    print("stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
