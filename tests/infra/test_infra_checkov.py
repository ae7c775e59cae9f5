"""checkov over the infrastructure code: Bicep, the portal's ARM template, the Kubernetes manifests,
the Dockerfile and the GitHub workflows. Nothing may fail; a skipped check must say why, at the place
it applies (a `// checkov:skip=ID: reason` comment in Bicep, `metadata.checkov` in ARM, a
`checkov.io/skipN` annotation in Kubernetes).

checkov lives in its own virtual environment (.venv-tools, pinned in
infra/tools/requirements-checkov.txt), made by infra/tools/ensure-tools.sh on first use.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkov() -> Path:
    subprocess.run(["bash", str(ROOT / "infra" / "tools" / "ensure-tools.sh")], check=True, timeout=900)
    return CHECKOV


def run_checkov(checkov: Path, target: list[str], frameworks: list[str]) -> dict[str, dict]:
    env = dict(os.environ, LOG_LEVEL="ERROR", BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    done = subprocess.run([str(checkov), *target, "--framework", *frameworks, "--skip-download", "--output", "json",
                           "--soft-fail"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return {r["check_type"]: r for r in reports}


def assert_clean(report: dict) -> None:
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert not failed, f"checkov {report['check_type']} failures: {failed}"
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert summary["passed"] > 0, f"checkov scanned nothing: {summary}"
    for check in report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert reason and reason != "No comment provided" and len(reason) > 20, \
            f"{check['check_id']} on {check['resource']} is skipped without a reason"


@pytest.mark.parametrize("target, frameworks, expected_resources", [
    # arm 20: the 15 of before, the telemetry publisher role, the action group, two alerts, the saved query
    (["-d", "infra"], ["bicep", "arm", "kubernetes"], {"bicep": 30, "arm": 20, "kubernetes": 6}),
    (["-f", "Dockerfile"], ["dockerfile"], {"dockerfile": 1}),
    (["-d", ".github/workflows"], ["github_actions"], {"github_actions": 0}),  # checkov counts no resources here
], ids=["infra", "dockerfile", "workflows"])
def test_checkov_passes(checkov, target, frameworks, expected_resources):
    reports = run_checkov(checkov, target, frameworks)
    assert set(reports) == set(expected_resources), f"checkov did not scan every framework: {sorted(reports)}"
    for framework, at_least in expected_resources.items():
        assert_clean(reports[framework])
        assert reports[framework]["summary"]["resource_count"] >= at_least, reports[framework]["summary"]


def test_checkov_would_catch_a_regression(checkov, tmp_path):
    """The scan is not hollow: a storage account allowing public blobs and HTTP fails it."""
    bad = tmp_path / "bad.bicep"
    bad.write_text("resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'stbad'\n"
                   "  location: 'westeurope'\n  kind: 'StorageV2'\n  sku: {\n    name: 'Standard_LRS'\n  }\n"
                   "  properties: {\n    supportsHttpsTrafficOnly: false\n    allowBlobPublicAccess: true\n  }\n}\n")
    report = run_checkov(checkov, ["-f", str(bad)], ["bicep"])["bicep"]
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_AZURE_3", "CKV_AZURE_190"} & failed, failed
