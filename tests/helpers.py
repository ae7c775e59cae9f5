"""Helpers that more than one test folder uses and that are not fixtures (fixtures are in conftest.py).

``tests/`` is on ``sys.path`` (pytest.ini's ``pythonpath``), so any test module can
``from helpers import ...`` wherever it sits.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent

# What a copy of the project needs to import function_app and run tests (data is linked, not copied).
COPIED = ("function_app.py", "host.json", "pytest.ini", "local.settings.json", "blueprints", "models", "shared",
          "scripts", "tests")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")

# infra/scripts/upload_dataset.py, the publisher's script (it is not a package)
_upload_spec = importlib.util.spec_from_file_location("upload_dataset", ROOT / "infra" / "scripts" / "upload_dataset.py")
upload_dataset = importlib.util.module_from_spec(_upload_spec)
sys.modules.setdefault("upload_dataset", upload_dataset)
_upload_spec.loader.exec_module(upload_dataset)


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


# Hypothesis: text a hostile client or a hostile data file may send (tests/api/test_hostile_input.py,
# tests/unit/test_hostile_dataset.py).
CONTROL = "".join(chr(c) for c in range(0, 32)) + "\x7f\x85\u2028\u2029\u202e\ufeff\ufffe"
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(CONTROL + "wdi-.%/\\'\"<>{}$"), max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=("Cs", "Co", "Cn", "So", "Zs", "Mn")), max_size=20),
    st.sampled_from(["", " ", "wdi-", "../../etc/passwd", "%00", "\x00", "NaN", "Infinity", "null", "true",
                     "MANUAL\x00", "rfr ", " 2015", "２０１５", "2015.0", "1e3", "-1", "0x7e0", "9" * 400,
                     "key-wdi-EG.ELC.ACCS.ZS", "wdi-EG.ELC.ACCS.ZS" * 100, "FJI\u200b", "ＦＪＩ"]),
    st.text(min_size=1000, max_size=5000),
)


# Datasets with values the models cannot use (tests/unit/test_store.py, tests/api/test_store_api.py).
def write_manifest(folder: Path) -> None:
    """What a publisher does after changing a folder's files: vouch for the new version."""
    assert upload_dataset.main(["--manifest-only", str(folder)]) == 0


HUGE = {"1e39": 1e39, "1e308": 1e308, "-2.5e20": -2.5e20, "inf": float("inf")}


JUST_INSIDE = {"9.9e14": 9.9e14, "-9.9e14": -9.9e14, "5e14": 5e14, "1e15": 1e15}


def with_huge_values(folder: Path, indicator: str, years=("2015", "2014"), values=HUGE) -> list[tuple[int, str, str]]:
    """Put values' spellings into indicator's rows (first four countries that have it); returns (row, year, country)."""
    import pandas as pd

    frame = pd.read_csv(folder / "indicatorData.csv", dtype=str, keep_default_na=False)
    rows = list(frame.index[frame["Indicator Code"] == indicator][:4])
    placed = []
    for k, (row, text) in enumerate(zip(rows, values)):
        year = years[k % len(years)]
        frame.at[row, year] = text
        placed.append((row, year, frame.at[row, "Country Code"]))
    frame.to_csv(folder / "indicatorData.csv", index=False)
    write_manifest(folder)
    return placed


def asgi_request(server, method: str, path: str, **kwargs):
    """One request to an ASGI app (e.g. the local host's FunctionAppServer) without a socket."""
    import asyncio

    import httpx

    async def go():
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())
