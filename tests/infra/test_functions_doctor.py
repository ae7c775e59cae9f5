"""azure-functions-doctor (the community diagnostic for Python function apps) over this project, for both
hosting plans the templates offer: no check may fail. Warnings are allowed (Core Tools absent on the
build machine, native wheels built remotely, `local.settings.json` tracked on purpose: it holds no secret).

The doctor lives in its own virtual environment (.venv-doctor, pinned in infra/tools/requirements-doctor.txt),
made by infra/tools/ensure-tools.sh on first use, apart from the app's dependencies.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCTOR = ROOT / ".venv-doctor" / "bin" / "azure-functions-doctor"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def doctor() -> Path:
    subprocess.run(["bash", str(ROOT / "infra" / "tools" / "ensure-tools.sh"), "doctor"], check=True, timeout=900)
    return DOCTOR


def diagnose(doctor: Path, project: Path, plan: str, tmp_path: Path) -> tuple[dict, list[dict]]:
    summary, report = tmp_path / f"summary-{plan}.json", tmp_path / f"report-{plan}.json"
    done = subprocess.run([str(doctor), "doctor", "--path", str(project), "--profile", "full", "--hosting-plan", plan,
                           "--format", "json", "--output", str(report), "--summary-json", str(summary)],
                          capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert summary.exists(), done.stderr[-2000:]
    items = [item for group in json.loads(report.read_text())["results"] for item in group["items"]]
    return json.loads(summary.read_text()), items


@pytest.mark.parametrize("plan", ["flex-consumption", "linux-consumption"])
def test_doctor_finds_no_failure(doctor, plan, tmp_path):
    summary, items = diagnose(doctor, ROOT, plan, tmp_path)
    failed = [(i["rule_id"], i["value"]) for i in items if i["status"] == "fail"]
    assert summary["failed"] == 0 and not failed, failed
    passed = {i["rule_id"] for i in items if i["status"] == "pass"}
    assert summary["passed"] >= 15, summary
    # the checks that matter here ran and passed: v2 model with its blueprints, host.json, pinned requirements
    assert {"check_programming_model_v2", "check_blueprint_registration", "check_unpinned_requirements"} <= passed, passed


def test_doctor_would_catch_a_broken_app(doctor, tmp_path):
    """Not hollow: a host.json without its version and requirements without azure-functions fail it."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "function_app.py").write_text("import azure.functions as func\n\napp = func.FunctionApp()\n\n\n"
                                         "@app.route(route='x')\ndef x(req):\n    return func.HttpResponse('ok')\n")
    (app / "host.json").write_text('{"extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", '
                                   '"version": "[4.*, 5.0.0)"}}')
    (app / "requirements.txt").write_text("numpy==2.4.6\n")
    summary, items = diagnose(doctor, app, "flex-consumption", tmp_path)
    assert summary["failed"] >= 2, summary
