"""``python -m local_host``: serve the Functions app locally (see the package's docstring)."""
from __future__ import annotations

import argparse
import logging

from local_host import ROOT, __doc__ as PACKAGE_DOC, load_local_settings


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=PACKAGE_DOC.split("\n\n")[0])
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
