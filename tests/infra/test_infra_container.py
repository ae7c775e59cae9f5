"""The container's start-up path, as far as a machine without a Docker engine can follow it.

The build context is staged by the rules of .dockerignore, the settings come from the Dockerfile's
ENV lines, and the app is imported and served from the staged copy through the local host (the
Functions host itself is not installed here). Then /health is asked, with the dataset "volume"
mounted and without it: no dataset is baked into the image.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import free_port, stop_process, wait_for, wait_until_settled

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    env = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def dockerignore_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, line.lstrip("!").strip("/")))
    return rules


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any folder above it; '**' spans folders."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return any(re.fullmatch(regex, p) for p in prefixes)


def build_context() -> list[str]:
    """Paths (relative, posix) that `docker build .` would send, by the rules of .dockerignore."""
    rules = dockerignore_rules()
    negations = [p for negate, p in rules if negate]

    def excluded(path: str) -> bool:
        result = False
        for negate, pattern in rules:
            if _matches(pattern, path):
                result = not negate
        return result

    kept = []
    for folder, dirs, files in os.walk(ROOT):
        rel = Path(folder).relative_to(ROOT).as_posix()
        rel = "" if rel == "." else rel + "/"
        # Do not descend into an excluded folder that no '!' rule could reach into.
        dirs[:] = [d for d in dirs if not (excluded(rel + d) and not any(n.startswith(rel + d + "/") for n in negations))]
        kept += [rel + f for f in files if not excluded(rel + f)]
    return sorted(kept)


def test_dockerfile_builds_on_the_functions_python_image_and_installs_the_dependencies():
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "mcr.microsoft.com/azure-functions/python:4-python3.11")
    env = dockerfile_env()
    assert env["AzureWebJobsScriptRoot"] == "/home/site/wwwroot"
    assert env["FUNCTIONS_WORKER_RUNTIME"] == "python"
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    copies = [rest for word, rest in steps if word == "COPY"]
    assert "requirements.lock /tmp/requirements.lock" in copies
    assert "pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock" in runs  # the locked set, hashes checked
    assert ". /home/site/wwwroot" in copies
    assert [rest for word, rest in steps if word == "USER"] == ["10001:10001"]
    assert [rest for word, rest in steps if word == "EXPOSE"] == [env["ASPNETCORE_URLS"].rsplit(":", 1)[1]]


def test_build_context_has_the_app_and_no_dataset():
    context = build_context()
    for needed in ("function_app.py", "host.json", "requirements.txt", "requirements.lock", "shared/http.py",
                   "blueprints/__init__.py", "models/__init__.py"):
        assert needed in context
    # the local runner and its server: in the image the Functions host serves the app
    assert not [p for p in context if p.startswith("local_host/")]
    assert not [p for p in context if p.startswith(("data/", "tests/", "infra/", ".venv", "node_modules/", ".git/"))]
    assert "local.settings.json" not in context
    assert not [p for p in context if p.endswith((".csv", ".parquet"))], "a dataset would be baked into the image"


@pytest.fixture(scope="module")
def wwwroot(tmp_path_factory) -> Path:
    """/home/site/wwwroot as the image would hold it, plus the local runner (local_host/) that serves it here
    in place of the Functions host."""
    root = tmp_path_factory.mktemp("image") / "wwwroot"
    for rel in build_context():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    shutil.copytree(ROOT / "local_host", root / "local_host", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def serve(wwwroot: Path, dataset_path: Path, tmp_path: Path):
    """Start the app from the staged image content with the image's environment; return (process, base URL)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATASET_", "SERVICE_MODEL", "CORS_", "AzureWebJobs", "FUNCTIONS_"))}
    env.update(dockerfile_env())
    env["HOME"] = str(tmp_path)  # the image's /home
    env["DATASET_PATH"] = str(dataset_path)  # the image's /mnt/datasets, mounted or not
    port = free_port()
    log = (tmp_path / "host.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "local_host", "--port", str(port)], cwd=wwwroot, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/health", timeout=120)
        wait_until_settled(base, timeout=120)
    except Exception:
        stop_process(proc)
        raise AssertionError((tmp_path / "host.log").read_text()[-3000:])
    return proc, base


def test_image_serves_health_with_the_dataset_volume_mounted(wwwroot, tmp_path):
    mount = tmp_path / "mnt" / "datasets"
    shutil.copytree(ROOT / "data" / "wdi", mount)
    proc, base = serve(wwwroot, mount, tmp_path)
    try:
        health = httpx.get(base + "/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        root = httpx.get(base + "/", timeout=30).json()
        assert root["models"], "the staged app registered no model"
    finally:
        stop_process(proc)


def test_image_without_a_dataset_is_not_ready(wwwroot, tmp_path):
    """Nothing mounted and no blob settings: /health must keep the pod out of the Service (503)."""
    proc, base = serve(wwwroot, tmp_path / "mnt" / "datasets", tmp_path)
    try:
        models = httpx.get(base + "/", timeout=30).json()["models"]
        health = httpx.get(base + "/health", timeout=30)
        if any(m["uses_dataset"] for m in models):
            assert health.status_code == 503 and health.json()["status"] == "unavailable", health.text
        else:  # only dataset-free models registered: nothing to wait for
            assert health.status_code == 200
    finally:
        stop_process(proc)


def test_dockerignore_matcher_follows_docker_rules():
    assert _matches("data", "data/wdi/indicatorData.csv")
    assert _matches("**/__pycache__", "shared/__pycache__/x.pyc")
    assert _matches("*", "anything/at/all")
    assert not _matches("data", "database.py")
    assert not _matches("shared", "sharedx/a.py")


def funcignore_package() -> list[str]:
    """Paths the serverless zip holds: everything but what .funcignore (gitignore rules) leaves out."""
    rules = [line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]

    def ignored(rel: str, is_dir: bool) -> bool:
        for rule in rules:
            if rule.endswith("/") and not is_dir:
                continue
            pattern = rule.strip("/")
            if rule.startswith("/") or "/" in pattern:
                if fnmatch.fnmatch(rel, pattern):
                    return True
            elif fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pattern):
                return True
        return False

    kept = []
    for folder, dirs, files in os.walk(ROOT):
        rel = Path(folder).relative_to(ROOT).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if not ignored(rel + d, True)]
        kept += [rel + f for f in files if not ignored(rel + f, False)]
    return kept


def test_serverless_package_has_the_app_and_no_dataset():
    package = funcignore_package()
    for needed in ("function_app.py", "host.json", "requirements.txt", "shared/settings.py", "blueprints/__init__.py",
                   "models/__init__.py"):
        assert needed in package
    assert not [p for p in package if p.startswith(("data/", "tests/", "infra/", ".venv", "node_modules/", ".git/"))]
    assert "local.settings.json" not in package
    assert not [p for p in package if p.endswith((".csv", ".parquet"))], "the serverless zip would carry a dataset"
    assert not [p for p in package if p.startswith("local_host/")]  # the local runner: in Azure the host serves the app
    # The image holds the same code as the zip (tooling aside).
    code = {p for p in package if p.endswith(".py") or p.endswith(".json")}
    assert code <= set(build_context()) | {"package.json"}
