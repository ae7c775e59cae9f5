"""scripts/new_model.py: a scaffolded model passes its own tests as generated and is served with no other edit.

Everything is generated into a temporary copy of the project; the repository is never written to.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import new_model  # noqa: E402
from helpers import copy_project, run  # noqa: E402

NAME = "scaffold_probe"

INSPECT = """
import json, sys
import azure.functions as func
import function_app
from shared.routing import app_routes, dispatch
from shared.store import get_store

get_store().get()   # let the start-up dataset load finish before the interpreter exits
routes = app_routes(function_app.app)
def get(path):
    return json.loads(dispatch(routes, "GET", path)[0].body)
print(json.dumps({"params": get("/params"), "openapi": get("/openapi.json"), "root": get("/")}))
"""


def repo_snapshot() -> set[str]:
    return {str(p.relative_to(ROOT)) for folder in ("models", "blueprints", "tests")
            for p in (ROOT / folder).rglob("*") if "__pycache__" not in p.parts}


# ---------------------------------------------------------------------------- unit
def make_skeleton(root: Path) -> Path:
    for folder in ("models", "blueprints", "tests"):
        (root / folder).mkdir(parents=True)
    return root


@pytest.mark.parametrize("name", ["", "x", "Upper", "9lives", "with-dash", "class", "shared", "params", "_hidden",
                                  "a" * 41])
def test_invalid_names_are_refused(tmp_path, name):
    with pytest.raises(new_model.ScaffoldError):
        new_model.scaffold(name, root=make_skeleton(tmp_path))
    assert not any((tmp_path / "models").iterdir())


def test_existing_model_is_not_overwritten(tmp_path):
    root = make_skeleton(tmp_path)
    (root / "blueprints" / "taken.py").write_text("# mine\n")
    with pytest.raises(new_model.ScaffoldError, match="already exists"):
        new_model.scaffold("taken", root=root)
    assert (root / "blueprints" / "taken.py").read_text() == "# mine\n"
    assert not (root / "models" / "taken").exists()


def test_refuses_a_folder_that_is_not_the_project(tmp_path):
    with pytest.raises(new_model.ScaffoldError, match="does not look like the project"):
        new_model.scaffold("fine_name", root=tmp_path)


def test_generated_files_are_valid_python_with_the_names_filled_in(tmp_path):
    written = new_model.scaffold("rain_gauge", label='Rain "gauge" \\ model', root=make_skeleton(tmp_path))
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "models/rain_gauge/__init__.py", "blueprints/rain_gauge.py", "tests/api/test_rain_gauge.py"]
    blueprint = (tmp_path / "blueprints" / "rain_gauge.py").read_text()
    assert "class RainGaugeRequest(ApiModel)" in blueprint and "main=True" in blueprint
    assert "label='Rain \"gauge\" \\\\ model'" in blueprint
    for path in written:
        compile(path.read_text(), str(path), "exec")
        assert "$" not in path.read_text()


def test_command_line_reports_errors_without_a_traceback(tmp_path, capsys):
    assert new_model.main(["Bad-Name", "--root", str(make_skeleton(tmp_path))]) == 2
    assert "invalid model name" in capsys.readouterr().err


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_scaffolded_model_passes_its_tests_and_is_served(tmp_path):
    project = copy_project(tmp_path / "project")

    made = run(["scripts/new_model.py", NAME, "--label", "Scaffold probe"], cwd=project)
    assert made.returncode == 0, made.stderr
    assert f"created blueprints/{NAME}.py" in made.stdout

    tested = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/api/test_{NAME}.py"], cwd=project)
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    assert "5 passed" in tested.stdout

    served = run(["-c", INSPECT], cwd=project)
    assert served.returncode == 0, served.stderr[-3000:]
    found = json.loads(served.stdout.strip().splitlines()[-1])
    entry = next(m for m in found["params"] if m["model"] == NAME)
    assert entry["label"] == "Scaffold probe" and entry["endpoint"] == f"/{NAME}/run"
    assert {m["model"] for m in found["params"]} >= {NAME, "sampleapi", "statimpute", "correlation"}
    assert f"/{NAME}/run" in found["openapi"]["paths"] and f"/{NAME}/indicators" in found["openapi"]["paths"]
    assert "Scaffold probe" in [t["name"] for t in found["openapi"]["tags"]]
    assert NAME in [m["name"] for m in found["root"]["models"]]

    alone = run(["-c", INSPECT], cwd=project, SERVICE_MODEL=NAME)      # deployed as its own service
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert [m["model"] for m in json.loads(alone.stdout.strip().splitlines()[-1])["params"]] == [NAME]

    assert not [p for p in repo_snapshot() if NAME in p]
    assert not (ROOT / "models" / NAME).exists() and not (ROOT / "blueprints" / f"{NAME}.py").exists()
