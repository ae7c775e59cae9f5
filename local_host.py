"""Serve the Functions app locally on a real HTTP server, without Azure Functions Core Tools (``make run``).

    python -m local_host [--port 7071] [--workers 1]

A runner, not part of the app: it loads ``local.settings.json`` into the environment first, as
``func start`` does (variables already set win), imports ``function_app.app`` as the Functions
worker does and serves it with uvicorn through :class:`shared.asgi_server.FunctionAppServer`
(routed by the Functions host's rules). Neither the serverless package nor the container image
carries it (.funcignore, .dockerignore): there the Functions host serves the app.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from shared.asgi_server import FunctionAppServer

ROOT = Path(__file__).resolve().parent


def load_local_settings(path: Path = ROOT / "local.settings.json") -> dict[str, str]:
    """Copy local.settings.json's Values into os.environ without overriding what is already set."""
    if not path.exists():
        return {}
    values = json.loads(path.read_text()).get("Values", {})
    applied = {}
    for key, value in values.items():
        if key not in os.environ:
            os.environ[key] = str(value)
            applied[key] = str(value)
    return applied


def create_server() -> FunctionAppServer:
    """ASGI factory (one call per worker process): import the Functions app exactly as the worker would and wrap it."""
    load_local_settings()
    import function_app

    return FunctionAppServer(function_app.app)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (each one is an instance)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    load_local_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"Serving function_app.app on http://{args.host}:{args.port} (docs: http://{args.host}:{args.port}/docs)",
          flush=True)
    uvicorn.run("local_host:create_server", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=False, app_dir=str(ROOT))


if __name__ == "__main__":
    main()
