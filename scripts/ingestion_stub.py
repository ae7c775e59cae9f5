"""A stand-in for Application Insights' ingestion endpoint, on loopback (no internet here).

The Azure Monitor exporter POSTs its telemetry items (JSON, usually gzip-compressed) to
``<IngestionEndpoint>/v2.1/track``; this server accepts them all and keeps them, so that the tests
can check what a request sends and the benchmark can time the service with telemetry really on.

    stub = IngestionStub().start()
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = stub.connection_string
    ...
    stub.items()      # every item received, e.g. {"name": "Microsoft.ApplicationInsights.Request", "data": ...}
    stub.stop()

``python scripts/ingestion_stub.py`` serves until interrupted and prints what it receives.
"""
from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INSTRUMENTATION_KEY = "00000000-0000-4000-8000-000000000000"


class IngestionStub:
    def __init__(self, port: int = 0):
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                text = raw.decode("utf-8", "replace").strip()
                try:
                    items = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()
                                                                           if line.strip()]
                except ValueError:
                    items = []
                with stub._lock:
                    stub._items.extend(items)
                body = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="ingestion-stub", daemon=True)

    @property
    def connection_string(self) -> str:
        port = self.server.server_address[1]
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint=http://127.0.0.1:{port}/"

    def start(self) -> "IngestionStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)


def environment(stub: IngestionStub, prompt: bool = True) -> dict[str, str]:
    """What a process needs to send its telemetry to ``stub`` and nowhere else; ``prompt``: export every
    0.2 s (spans, logs) and 1 s (metrics) instead of the defaults (5 s and 60 s), for tests."""
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": stub.connection_string,
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"}   # the exporter's own usage reports
    if prompt:
        env.update(OTEL_BSP_SCHEDULE_DELAY="200", OTEL_BLRP_SCHEDULE_DELAY="200", OTEL_METRIC_EXPORT_INTERVAL="1000")
    return env


if __name__ == "__main__":
    stub = IngestionStub(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(stub.connection_string, flush=True)
    seen = 0
    try:
        while True:
            threading.Event().wait(1)
            items = stub.items()
            for item in items[seen:]:
                print(json.dumps(item)[:300], flush=True)
            seen = len(items)
    except KeyboardInterrupt:
        stub.stop()
