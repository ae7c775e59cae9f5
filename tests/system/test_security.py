"""Security checks over real HTTP against the local host (and a few in-process ones).

* CORS honours the allow-list: listed origins are echoed (never ``*``), anything else
  gets no ``Access-Control-Allow-*`` header at all, and credentials are never combined
  with ``*``;
* only GET, HEAD (answered like GET, without a body), POST and OPTIONS are accepted: every
  other method is 405, on known and unknown paths alike;
* oversized bodies are refused with 413 before they are read or parsed;
* no error body carries a stack trace or a server-side path;
* secrets in the storage configuration never appear in /health, any other response,
  or the log;
* the production dependencies are audited with pip-audit.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import ROOT, start_local_host, stop_process
from shared.settings import DEFAULT_CORS_ORIGINS, Settings, redact, reset_settings

ALLOWED = ("GET", "HEAD", "POST", "OPTIONS")
HOSTILE_ORIGINS = [
    "https://evil.example",
    "https://data.undp.org.evil.example",        # suffix trick
    "https://evil.example/https://data.undp.org",
    "https://evildata.undp.org",                  # no subdomain matching
    "http://data.undp.org",                       # scheme matters
    "https://data.undp.org:8443",                 # port matters
    "http://localhost:9999",
    "null",                                       # sandboxed iframes, file:// pages
    "*",
]


def body_of(resp: httpx.Response) -> str:
    return resp.text


def assert_no_cors(resp: httpx.Response) -> None:
    leaked = {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}
    assert leaked == {}, f"unlisted origin got CORS headers {leaked}"


# --------------------------------------------------------------------------- CORS
@pytest.mark.parametrize("origin", DEFAULT_CORS_ORIGINS)
def test_listed_origins_are_echoed_never_star(live_server, origin):
    simple = httpx.get(live_server + "/health", headers={"Origin": origin})
    assert simple.headers["access-control-allow-origin"] == origin
    assert "origin" in simple.headers.get("vary", "").lower()
    pre = httpx.options(live_server + "/sampleapi/test_endpoint1",
                        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code in (200, 204)
    assert pre.headers["access-control-allow-origin"] == origin
    methods = {m.strip() for m in pre.headers["access-control-allow-methods"].split(",")}
    assert methods <= set(ALLOWED) and "POST" in methods
    for resp in (simple, pre):
        if resp.headers.get("access-control-allow-credentials", "").lower() == "true":
            assert resp.headers["access-control-allow-origin"] != "*"


@pytest.mark.parametrize("origin", HOSTILE_ORIGINS)
def test_unlisted_origins_get_no_cors_headers(live_server, origin):
    assert_no_cors(httpx.get(live_server + "/health", headers={"Origin": origin}))
    assert_no_cors(httpx.post(live_server + "/sampleapi/test_endpoint1", json={"requiredField": "x"},
                              headers={"Origin": origin}))
    pre = httpx.options(live_server + "/sampleapi/test_endpoint1",
                        headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert_no_cors(pre)


def test_star_is_never_sent_even_when_configured_and_credentials_never_with_star(call):
    # Even an operator who lists "*" does not turn the service into a wildcard CORS endpoint.
    reset_settings(Settings.from_env({"CORS_ALLOWED_ORIGINS": "*,https://ok.example"}))
    try:
        for origin in ("https://anything.example", "https://ok.example", "*"):
            for method, path in (("GET", "/"), ("OPTIONS", "/health")):
                reply = call(method, path, headers={"origin": origin})
                acao = reply.headers.get("access-control-allow-origin")
                assert acao != "*"
                if acao is not None:
                    assert acao == origin == "https://ok.example"
                assert reply.headers.get("access-control-allow-credentials") in (None, "false")
    finally:
        reset_settings(None)


def test_allow_list_comes_from_configuration(call):
    reset_settings(Settings.from_env({"CORS_ALLOWED_ORIGINS": "https://only.example, https://two.example/"}))
    try:
        assert call("GET", "/", headers={"origin": "https://only.example"}).headers[
            "access-control-allow-origin"] == "https://only.example"
        assert call("GET", "/", headers={"origin": "https://two.example"}).headers[
            "access-control-allow-origin"] == "https://two.example"
        for default in DEFAULT_CORS_ORIGINS:  # replaced, not merged
            assert "access-control-allow-origin" not in call("GET", "/", headers={"origin": default}).headers
    finally:
        reset_settings(None)


# --------------------------------------------------------------------------- methods
METHOD_PATHS = ["/", "/health", "/params", "/openapi.json", "/sampleapi/test_endpoint1", "/no/such/route",
                "/docs"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_only_get_head_post_options_are_accepted(live_server, method):
    # Every function lists the methods the host can route and answers those it does not serve with a 405.
    with httpx.Client(base_url=live_server) as client:
        for path in METHOD_PATHS:
            resp = client.request(method, path, content=b"{}")
            expected = 404 if path == "/no/such/route" else 405
            assert resp.status_code == expected, f"{method} {path} -> {resp.status_code}"
            detail = resp.json()["detail"]
            assert detail["type"] == ("not_found" if expected == 404 else "method_not_allowed")
            if expected == 405:
                assert "GET" in resp.headers["allow"] or "POST" in resp.headers["allow"]
                assert method not in resp.headers["allow"]


def test_head_is_answered_like_get_without_a_body(live_server):
    # RFC 9110 9.3.2 (issue 19: HEAD was 405). Each function lists HEAD, so the host routes it (functions-host.md).
    with httpx.Client(base_url=live_server) as client:
        for path in METHOD_PATHS:
            got, head = client.get(path), client.head(path)
            assert head.status_code == got.status_code, f"HEAD {path} -> {head.status_code}, GET {got.status_code}"
            assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
            assert head.headers.get("content-length") in (None, got.headers["content-length"])  # never a false 0
            if got.status_code == 405:
                assert head.headers["allow"] == got.headers["allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "FOO"])
def test_methods_no_function_can_list_are_not_routed(live_server, method):
    # As the Functions host: a method no function lists reaches no function and gets an empty 404.
    with httpx.Client(base_url=live_server) as client:
        for path in METHOD_PATHS:
            resp = client.request(method, path, content=b"{}")
            assert resp.status_code == 404 and resp.content == b"", f"{method} {path} -> {resp.status_code}"


def test_wrong_one_of_the_allowed_methods_is_405_too(live_server):
    assert httpx.get(live_server + "/sampleapi/test_endpoint1").status_code == 405
    assert httpx.post(live_server + "/health", json={}).status_code == 405
    assert httpx.post(live_server + "/openapi.json", json={}).status_code == 405


# --------------------------------------------------------------------------- body size
LIMIT = 1024 * 1024


def raw_request(base: str, head: str, parts: list[bytes], timeout: float = 10) -> bytes:
    """Send a hand-made request (headers, then body parts) and return what the server answered."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading: that is the point
        sock.settimeout(timeout)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            pass
        return answer


def test_declared_oversized_body_is_refused_without_reading_it(live_server):
    # 64 MiB declared, nothing sent: an answer at all proves the server did not wait for the body.
    started = time.monotonic()
    head = ("POST /sampleapi/test_endpoint1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {64 * LIMIT}\r\n\r\n")
    answer = raw_request(live_server, head, [b'{"requiredField": "'])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 8
    assert b"payload_too_large" in answer


def test_streamed_body_without_a_length_is_never_read(live_server):
    # Chunked upload with no declared length that never ends: as under the Functions host, a body
    # without a Content-Length does not reach the function (it answers 411 Length Required; issue 19:
    # it was a 422 about an empty document) and the server answers without reading the stream to its
    # end (that would hang until our timeout).
    head = ("POST /sampleapi/test_endpoint1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    piece = b"[" * 65536
    parts = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 24  # 1.5 MiB, no terminating 0-chunk
    answer = raw_request(live_server, head, parts)
    assert answer.startswith(b"HTTP/1.1 411"), answer[:200]
    assert b'"type":"length_required"' in answer


def test_oversized_invalid_json_is_413_not_422(live_server):
    # The size check comes before parsing: a body over the limit is never handed to the JSON parser.
    resp = httpx.post(live_server + "/sampleapi/test_endpoint1", content=b"[" * (LIMIT + 1),
                      headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["detail"]["type"] == "payload_too_large"


def test_a_slow_body_neither_blocks_other_posts_nor_stays(tmp_path):
    # Issue 19: a client declaring 1 MiB and sending a byte every 3 s held its whole reservation for as long
    # as it kept sending: at a 1 MiB budget, 4 of 4 other POSTs got 503 meanwhile. Now only the bytes that
    # arrived are held, and the body must arrive within BODY_READ_TIMEOUT_SECONDS (408, then the socket closes).
    proc, base, _ = start_local_host({"MAX_BUFFERED_BODY_BYTES": str(LIMIT), "BODY_READ_TIMEOUT_SECONDS": "3"})
    try:
        url = urlsplit(base)
        with socket.create_connection((url.hostname, url.port), timeout=20) as slow:
            slow.sendall(("POST /sampleapi/test_endpoint1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {LIMIT}\r\n\r\n").encode())
            started = time.monotonic()
            slow.sendall(b"{")
            others = [httpx.post(base + "/sampleapi/test_endpoint1", json={"requiredField": str(i)}, timeout=20)
                      for i in range(4)]
            assert [r.status_code for r in others] == [200] * 4, [r.text[:100] for r in others]
            while time.monotonic() - started < 2:  # still sending, a byte every 0.2 s (then silent: writing
                slow.sendall(b" ")                     # after the server closed would reset the connection)
                time.sleep(0.2)
            slow.settimeout(15)
            answer = b""
            while chunk := slow.recv(65536):  # to the end: the server closes the connection after its answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"request_timeout" in answer and time.monotonic() - started >= 2.5
    finally:
        stop_process(proc)


def test_body_at_the_limit_is_still_parsed(live_server):
    body = json.dumps({"requiredField": "x"}).encode()
    body = body + b" " * (LIMIT - len(body))
    resp = httpx.post(live_server + "/sampleapi/test_endpoint1", content=body,
                      headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text[:200]


# --------------------------------------------------------------------------- no leaks
def leak_markers() -> list[str]:
    markers = ["Traceback", 'File "', str(ROOT), "site-packages", sys.prefix, sys.base_prefix,
               "raise ", "Error(", "<class '", "<module>", "0x7f"]
    return [m for m in markers if m]


def assert_no_leak(resp: httpx.Response, extra: tuple[str, ...] = ()) -> None:
    text = resp.content.decode("utf-8", "replace")  # httpx has already undone any gzip
    for marker in [*leak_markers(), *extra]:
        assert marker not in text, f"{resp.request.method} {resp.request.url} -> {resp.status_code} leaks {marker!r}"


HOSTILE_REQUESTS = [
    ("GET", "/no/such/route", {}),
    ("GET", "/twolvlImp/predict/../../shared/settings", {}),
    ("GET", "/docs/static/..%2F..%2Fshared%2Fsettings.py", {}),
    ("GET", "/docs/static/%2e%2e%2f%2e%2e%2frequirements.txt", {}),
    ("GET", "/docs/static/" + "A" * 5000, {}),
    ("GET", "/sampleapi/test_endpoint1", {}),
    ("DELETE", "/health", {}),
    ("POST", "/sampleapi/test_endpoint1", {"content": b"{"}),
    ("POST", "/sampleapi/test_endpoint1", {"content": b"\xff\xfe\x00garbage"}),
    ("POST", "/sampleapi/test_endpoint1", {"content": b"[" * 100000}),
    ("POST", "/sampleapi/test_endpoint1", {"content": b'{"requiredField": ' + b"9" * 5000 + b"}"}),
    ("POST", "/sampleapi/test_endpoint1", {"content": b'{"requiredField": NaN}'}),
    ("POST", "/sampleapi/test_endpoint1", {"content": b'{"requiredField": "\\ud800"}'}),
    ("POST", "/sampleapi/test_endpoint1", {"json": {"requiredField": {"$where": "1"}}}),
    ("POST", "/sampleapi/test_endpoint1", {"json": ["not", "an", "object"]}),
    ("POST", "/sampleapi/test_endpoint1", {"content": b"[" * (LIMIT + 10)}),
    ("POST", "/sampleapi/test_endpoint2", {"params": {"name": "x" * 10000}}),
    ("POST", "/sampleapi/test_endpoint2", {}),
    ("GET", "/statimpute/countries", {"params": {"target": "../../../../etc/passwd"}}),
    ("GET", "/statimpute/countries", {"params": {"target": "wdi-\x00\x01\u202e"}}),
    ("GET", "/statimpute/targets", {"params": {"dataset": "' OR 1=1 --"}}),
    ("POST", "/statimpute/impute", {"json": {"target": "nope", "country": "FJI"}}),
    ("POST", "/twolvlImp/predict", {"json": {"target": "nope"}}),
    ("POST", "/twolvlImp/predict", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
]


def test_no_stack_trace_or_path_in_any_error_body(live_server):
    seen = set()
    with httpx.Client(base_url=live_server, timeout=30) as client:
        for method, path, kwargs in HOSTILE_REQUESTS:
            resp = client.request(method, path, **kwargs)
            seen.add(resp.status_code)
            assert resp.status_code < 500, f"{method} {path} -> {resp.status_code}: {resp.text[:300]}"
            assert_no_leak(resp)
            assert resp.headers.get("x-request-id"), f"{method} {path} has no request id"
            if resp.status_code >= 400 and method != "HEAD":
                assert resp.headers["content-type"].startswith("application/json")
                assert "detail" in resp.json()
    assert {404, 405, 413, 422} <= seen


def test_documentation_assets_cannot_be_used_to_read_files(live_server):
    for name in ("..%2F..%2Fshared%2Fsettings.py", "%2e%2e%2f%2e%2e%2flocal.settings.json", "__init__.py",
                 "..%5C..%5Cfunction_app.py"):
        resp = httpx.get(f"{live_server}/docs/static/{name}")
        assert resp.status_code == 404, name
        assert "import" not in resp.text and "Values" not in resp.text


def test_unavailable_dataset_error_does_not_show_the_server_path():
    hidden = Path(tempfile.gettempdir()) / f"private-{uuid.uuid4().hex}" / "datasets"
    proc, base, log = start_local_host({"DATASET_PATH": str(hidden)})
    try:
        for path in ("/datasets", "/statimpute/targets"):
            resp = httpx.get(base + path, timeout=30)
            if resp.status_code == 404 and path.startswith("/statimpute"):
                continue  # model not present in this build
            assert resp.status_code == 503, f"{path} -> {resp.status_code}"
            assert resp.json()["detail"]["type"] == "dataset_unavailable"
            assert "does not exist" in resp.json()["detail"]["msg"]
            assert_no_leak(resp, extra=(str(hidden), hidden.parent.name))
        # /health is the operators' view: it names the source (by design) and the reason.
        health = httpx.get(base + "/health", timeout=30).json()
        assert health["status"] == "unavailable" and health["last_error"]
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- secrets
def gather(base: str) -> list[httpx.Response]:
    with httpx.Client(base_url=base, timeout=30) as client:
        out = [client.get(p) for p in ("/", "/health", "/datasets", "/params", "/openapi.json", "/no/such",
                                       "/statimpute/targets")]
        out.append(client.post("/sampleapi/test_endpoint1", content=b"{"))
    return out


def wait_health(base: str, wanted: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while True:
        health = httpx.get(base + "/health", timeout=30).json()
        if health["status"] == wanted or time.time() > deadline:
            return health
        time.sleep(0.2)


def test_account_key_never_in_responses_or_logs(azurite):
    from conftest import AZURITE_KEY

    container = f"sec{uuid.uuid4().hex[:10]}"
    azurite.upload_folder(ROOT / "data" / "wdi", container=container, prefix="v1")
    proc, base, log = start_local_host({
        "DATASET_BLOB_CONNECTION_STRING": azurite.connection_string,
        "DATASET_BLOB_CONTAINER": container,
        "DATASET_BLOB_PREFIX": "v1",
        "LOG_LEVEL": "DEBUG",
    })
    try:
        assert wait_health(base, "ok")["status"] == "ok"
        responses = gather(base)
        # A failing source: the error path must redact too.
        azurite.stop()
        try:
            httpx.get(base + "/health", timeout=30)
            responses += gather(base)
        finally:
            azurite.start()
    finally:
        stop_process(proc)
    key_parts = (AZURITE_KEY, AZURITE_KEY[:20], "AccountKey=Eby8")
    for resp in responses:
        text = resp.text
        for part in key_parts:
            assert part not in text, f"{resp.request.url} shows the account key"
    logged = log.read_text()
    assert "devstoreaccount1" in logged or "loading dataset" in logged  # the log was written
    for part in key_parts:
        assert part not in logged


@pytest.mark.parametrize("connection_string", [
    "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=U3VwZXJTZWNyZXRLZXlWYWx1ZTEyMw==;"
    "BlobEndpoint=http://127.0.0.1:9/acct;",
    "AccountKey=U3VwZXJTZWNyZXRLZXlWYWx1ZTEyMw==;this is not a connection string",
    "BlobEndpoint=http://127.0.0.1:9/acct;SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rl"
    "&sig=U3VwZXJTZWNyZXRLZXlWYWx1ZTEyMw%3D%3D",
], ids=["unreachable-account", "malformed", "sas"])
def test_misconfigured_or_unreachable_storage_never_prints_the_secret(connection_string):
    secret_forms = ("U3VwZXJTZWNyZXRLZXlWYWx1ZTEy", "SuperSecretKeyValue")
    proc, base, log = start_local_host({
        "DATASET_BLOB_CONNECTION_STRING": connection_string,
        "DATASET_BLOB_CONTAINER": "datasets",
        "LOG_LEVEL": "DEBUG",
    })
    try:
        health = wait_health(base, "unavailable")
        assert health["status"] == "unavailable" and health["last_error"]
        responses = gather(base)
    finally:
        stop_process(proc)
    for resp in responses:
        for secret in secret_forms:
            assert secret not in resp.text, f"{resp.request.url} shows the secret: {resp.text[:300]}"
    logged = log.read_text()
    assert "dataset load failed" in logged
    for secret in secret_forms:
        assert secret not in logged


@pytest.mark.parametrize("text,secret", [
    ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc/def+ghi==;EndpointSuffix=core.windows.net",
     "abc/def+ghi=="),
    ("https://a.blob.core.windows.net/c?sv=2022-11-02&sig=Zm9vYmFy%3D&se=2030", "Zm9vYmFy"),
    ("BlobEndpoint=https://a;SharedAccessSignature=sv=2022&sig=s3cr3t", "s3cr3t"),
    ("accountkey=lowercase-secret;x=y", "lowercase-secret"),
    ("https://reader:hunter2@acct.blob.core.windows.net/datasets", "hunter2"),
    ("cannot list https://reader:p@ss:w0rd@acct.blob.core.windows.net/c/: Error", "w0rd"),
])
def test_redact_hides_keys_and_signatures(text, secret):
    assert secret not in redact(text)


# --------------------------------------------------------------------------- dependencies
# Accepted findings, each with its reason. Add an entry as "--ignore-vuln", "ID" and a comment.
PIP_AUDIT_IGNORES: list[str] = []


def vulnerability_service() -> tuple[str | None, str]:
    """The pip-audit service that answers from here ("pypi" or "osv"), or None and why neither does."""
    reasons = []
    try:  # pip-audit's default service reads PyPI's per-release JSON API
        resp = httpx.get("https://pypi.org/pypi/pip/24.0/json", timeout=15)
        if resp.status_code == 200 and "vulnerabilities" in resp.json():
            return "pypi", ""
        reasons.append(f"PyPI per-release JSON API answered {resp.status_code}")
    except (httpx.HTTPError, ValueError) as exc:
        reasons.append(f"PyPI JSON API unreachable ({type(exc).__name__})")
    try:
        resp = httpx.post("https://api.osv.dev/v1/query", json={"package": {"name": "pip", "ecosystem": "PyPI"},
                                                                 "version": "24.0"}, timeout=15)
        if resp.status_code == 200:
            return "osv", ""
        reasons.append(f"OSV answered {resp.status_code}")
    except httpx.HTTPError as exc:
        reasons.append(f"OSV unreachable ({type(exc).__name__})")
    return None, "; ".join(reasons)


@pytest.mark.slow
def test_pip_audit_requirements():
    """pip-audit over requirements.txt (what production installs), every dependency resolved and audited."""
    service, why_not = vulnerability_service()
    if service is None:
        pytest.skip(f"no vulnerability database reachable from this machine: {why_not}")
    cmd = [sys.executable, "-m", "pip_audit", "-r", str(ROOT / "requirements.txt"), "--format", "json",
           "--progress-spinner", "off", "--strict", "--vulnerability-service", service, *PIP_AUDIT_IGNORES]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"pip-audit failed (exit {run.returncode}): {run.stderr[-3000:]}")
    deps = report.get("dependencies", [])
    assert len(deps) >= 11, f"pip-audit audited only {len(deps)} packages"
    vulnerable = {d["name"]: [v["id"] for v in d.get("vulns", [])] for d in deps if d.get("vulns")}
    assert vulnerable == {}, f"known vulnerabilities (fix the pin, or accept one in PIP_AUDIT_IGNORES): {vulnerable}"
    skipped = [(d["name"], d.get("skip_reason")) for d in deps if d.get("skip_reason")]
    assert not skipped, f"not audited: {skipped}"
    assert run.returncode == 0, run.stderr[-3000:]


def test_health_shows_no_url_password_and_no_server_folder_path(tmp_path):
    """/health is anonymous: the account URL's user-info and the absolute dataset folder stay out of it."""
    from shared.store import DatasetStore, LocalFolderSource, source_from_settings

    settings = Settings(blob_account_url="https://reader:hunter2@127.0.0.1:9/devstoreaccount1",
                        blob_connect_timeout=1, blob_read_timeout=1, blob_retries=0)
    store = DatasetStore(source_from_settings(settings))
    store.refresh()  # fails: nothing listens on port 9
    status = store.status()
    assert status["status"] == "unavailable" and status["last_error"]
    assert "hunter2" not in json.dumps(status) and "reader:" not in json.dumps(status)
    assert status["source"].startswith("https://***@127.0.0.1:9/devstoreaccount1/")

    folder = tmp_path / "private-datasets" / "wdi-copy"
    shutil.copytree(ROOT / "data" / "wdi", folder)
    local = DatasetStore(LocalFolderSource(folder))
    local.get()
    shown = json.dumps(local.status())
    assert local.status()["source"] == "folder wdi-copy"
    assert str(tmp_path) not in shown and "private-datasets" not in shown
    assert DatasetStore(LocalFolderSource(ROOT / "data" / "wdi")).status()["source"] == "folder data/wdi"
