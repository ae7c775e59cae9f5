"""Helpers that more than one test folder uses and that are not fixtures (fixtures are in conftest.py).

``tests/`` is on ``sys.path`` (pytest.ini's ``pythonpath``), so any test module can
``from helpers import ...`` wherever it sits.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What a copy of the project needs to import function_app and run tests (data is linked, not copied).
COPIED = ("function_app.py", "host.json", "pytest.ini", "local.settings.json", "blueprints", "models", "shared",
          "scripts", "tests")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def copy_project(target: Path) -> Path:
    """A copy of the project under ``target`` (the embedded data linked), for tests that scaffold into it."""
    for item in COPIED:
        source, dest = ROOT / item, target / item
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=IGNORED)
        elif source.exists():
            shutil.copy2(source, dest)
    (target / "data").symlink_to(ROOT / "data", target_is_directory=True)
    return target


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python *args`` in ``cwd`` on the embedded dataset, as a developer would run it."""
    environment = {k: v for k, v in os.environ.items() if k not in ("SERVICE_MODEL", "PYTEST_ADDOPTS")}
    environment.update(DATASET_PATH=str(ROOT / "data" / "wdi"), PYTHONDONTWRITEBYTECODE="1", **env)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=540)
