"""The Swagger UI page (/docs) rendered by a real headless Chromium, offline, against the local host.

The documents it is built from (/openapi.json, /params) are tested in tests/api/test_docs_and_openapi.py.
"""
import re
import shutil
import subprocess
import tempfile

import httpx


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("google-chrome")
    assert path, "Chromium is required (make test installs Debian's chromium)"
    return path


def test_swagger_ui_renders_offline_in_headless_chromium(live_server):
    page = httpx.get(live_server + "/docs").text
    external = [u for u in re.findall(r'(?:src|href)="([^"]+)"', page) if u.startswith(("http:", "https:", "//"))]
    assert external == [], "docs must not load assets from a CDN"
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", live_server + "/docs"],
            capture_output=True, text=True, timeout=120).stdout
    rendered = set(re.findall(r'class="opblock-summary-path(?:__deprecated)?" data-path="([^"]+)"', dom))
    spec_paths = set(httpx.get(live_server + "/openapi.json").json()["paths"])
    assert rendered == spec_paths
    assert "/sampleapi/test_endpoint1" in rendered
    deprecated = set(re.findall(r'class="opblock-summary-path__deprecated" data-path="([^"]+)"', dom))
    assert deprecated == {"/imputation/predict", "/imputation/target_sample_size", "/imputation/predictor_sample_size"}
