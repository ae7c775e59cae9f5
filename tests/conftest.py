"""Fixtures shared by the tests.

* ``call``: invoke a registered function of ``function_app.app`` with a real
  ``azure.functions.HttpRequest`` (no server);
* ``with_settings``: serve with given settings and a twolvlImp runtime built from them;
* ``live_server``: the local host (uvicorn) serving the same app in a subprocess;
* ``azurite``: a real Azurite blob emulator (from node_modules) on a free port;
* ``wdi``: the embedded dataset, parsed once;
* ``platform``: the SIDS platform's own data (``../shared/data/sids-platform``: SIDS only, hundreds of
  candidates for ~40 training rows), parsed once; required in CI, skipped elsewhere when absent.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import azure.functions as func
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.processes import free_port, stop_process  # noqa: E402,F401  (re-exported to the tests)
os.environ.setdefault("DATASET_PATH", str(ROOT / "data" / "wdi"))
PLATFORM_DATA = ROOT.parent / "shared" / "data" / "sids-platform"

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def wait_for(url: str, timeout: float = 60, ok=(200, 503)) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code in ok:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout}s: {last}")


def settled(body: dict) -> bool:
    """A /health answer after the instance's first dataset load ended (loaded, or failed with a reason):
    /health never waits for the load, so right after a start it may answer "unavailable" with no error yet."""
    return body.get("status") != "unavailable" or bool(body.get("last_error"))


def wait_until_settled(base: str, timeout: float = 60) -> dict:
    """Poll /health until the first load ended (see settled); its last answer."""
    deadline = time.time() + timeout
    while True:
        body = httpx.get(base + "/health", timeout=10).json()
        if settled(body) or time.time() > deadline:
            return body
        time.sleep(0.05)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        raw = gzip.decompress(self.body) if self.headers.get("content-encoding") == "gzip" else self.body
        return json.loads(raw)


@pytest.fixture(scope="session")
def app():
    import function_app

    return function_app.app


def client_headers(headers: dict | None, body: bytes | None) -> dict[str, str]:
    """Headers as an HTTP client sends them: lower-case names, a Content-Length for a body, JSON by default."""
    out = {k.lower(): v for k, v in (headers or {}).items()}
    if body:
        out.setdefault("content-type", "application/json")
    if body is not None and "transfer-encoding" not in out:  # an empty body is sent with a length of 0
        out.setdefault("content-length", str(len(body)))
    return out


@pytest.fixture(scope="session")
def call(app):
    """call(method, path, json=None, params=None, headers=None, body=None, keys=()) -> Reply, without any server.

    Routed exactly as the Functions host routes (shared.routing.dispatch, the local host's dispatcher);
    ``keys``: the function keys the host accepts for AuthLevel.FUNCTION routes (none: they answer 401).
    """
    from shared.routing import app_routes, dispatch

    routes = app_routes(app)

    def _call(method: str, path: str, json_body: Any = None, params: dict | None = None,
              headers: dict | None = None, body: bytes | None = None, keys: tuple[str, ...] = ()) -> Reply:
        if json_body is not None:
            body = json.dumps(json_body).encode()
        split = urlsplit(path)
        query = urlencode(params) if params else split.query
        reply, _ = dispatch(routes, method, split.path, query, client_headers(headers, body), body or b"", keys=keys)
        return Reply(reply.status, reply.headers, reply.body)

    return _call


@pytest.fixture
def with_settings():
    """with_settings(**values): serve with these settings and a runtime built from them (no result
    cache), which the test gets back; the previous ones are restored afterwards."""
    from blueprints import twolvlimp
    from shared.settings import Settings, reset_settings

    built, old = [], twolvlimp.use_runtime(None)

    def apply(**values):
        settings = Settings(**{"result_cache_size": 0, **values})
        reset_settings(settings)
        built.append(twolvlimp.build_runtime(settings))
        twolvlimp.use_runtime(built[-1])
        return built[-1]

    yield apply
    reset_settings(None)
    twolvlimp.use_runtime(old)
    for runtime in built:
        runtime.close()


def start_local_host(env_overrides: dict[str, str] | None = None, workers: int = 1):
    port = free_port()
    env = dict(os.environ)
    env.update(env_overrides or {})
    env.setdefault("DATASET_PATH", str(ROOT / "data" / "wdi"))
    log = tempfile.NamedTemporaryFile(prefix="localhost-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "local_host", "--port", str(port), "--workers", str(workers)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/health")
        wait_until_settled(base)
    except Exception:
        proc.kill()
        raise RuntimeError(Path(log.name).read_text()[-3000:])
    return proc, base, Path(log.name)


@pytest.fixture(scope="session")
def live_server():
    """Base URL of the local host serving function_app.app on the embedded dataset."""
    proc, base, log = start_local_host()
    yield base
    stop_process(proc)


class Azurite:
    """A real Azurite blob service in a temporary folder, which a test may stop and start again."""

    def __init__(self):
        binary = ROOT / "node_modules" / ".bin" / "azurite-blob"
        if not binary.exists():
            raise RuntimeError("Azurite is not installed: run `npm ci` (make test does it)")
        self.binary = binary
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="azurite-")
        self.proc: subprocess.Popen | None = None
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(self.binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", self.folder,
             "--silent", "--skipApiVersionCheck", "--loose"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("Azurite did not start")

    def stop(self) -> None:
        """Stop the service (its data is kept for the next start)."""
        if self.proc is not None:
            stop_process(self.proc, grace=15)
            self.proc = None

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def upload_folder(self, folder: Path, container: str = "datasets", prefix: str = "") -> None:
        client = self.service().get_container_client(container)
        if not client.exists():
            client.create_container()
        for path in sorted(Path(folder).iterdir()):
            if path.is_file():
                name = f"{prefix.strip('/')}/{path.name}" if prefix else path.name
                client.upload_blob(name, path.read_bytes(), overwrite=True)


@pytest.fixture(scope="session")
def azurite():
    server = Azurite()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def wdi():
    from shared.dataset import build_dataset

    folder = ROOT / "data" / "wdi"
    return build_dataset({p.name: str(p) for p in folder.iterdir() if p.is_file()}, version="test", source=str(folder))


def platform_data() -> Path:
    if not PLATFORM_DATA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{PLATFORM_DATA} is missing: CI must have ../shared beside the checkout")
        pytest.skip(f"{PLATFORM_DATA} is not beside this checkout")
    return PLATFORM_DATA


@pytest.fixture(scope="session")
def platform():
    from shared.dataset import build_dataset

    folder = platform_data()
    return build_dataset({p.name: str(p) for p in folder.iterdir() if p.is_file()}, version="test-platform",
                         source=str(folder))
