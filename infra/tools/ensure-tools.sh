#!/usr/bin/env bash
# Creates a tool's own virtual environment unless it is already up to date:
#   ensure-tools.sh [checkov]   .venv-tools  from infra/tools/requirements-checkov.txt (tests/infra/test_infra_checkov.py)
#   ensure-tools.sh doctor      .venv-doctor from infra/tools/requirements-doctor.txt  (tests/infra/test_functions_doctor.py)
# Idempotent and quiet; the tests call it, and `make setup` may too. Needs only Python 3.9+ and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-checkov}" in
  checkov) req=infra/tools/requirements-checkov.txt; venv=.venv-tools ;;
  doctor) req=infra/tools/requirements-doctor.txt; venv=.venv-doctor ;;
  *) echo "ensure-tools.sh: unknown tool $1 (checkov, doctor)" >&2; exit 2 ;;
esac
stamp="$venv/.installed-$(sha256sum "$req" | cut -c1-16)"
[ -f "$stamp" ] && exit 0
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
rm -rf "$venv"
"$python" -m venv "$venv"
log=$(mktemp)
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
touch "$stamp"
