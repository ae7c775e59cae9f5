#!/usr/bin/env bash
# Creates .venv-tools (checkov, pinned in infra/tools/requirements-checkov.txt) unless it is already
# up to date. Idempotent and quiet; tests/infra/test_infra_checkov.py calls it, and `make setup` may too.
# Needs only Python 3.9+ and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."
req=infra/tools/requirements-checkov.txt
venv=.venv-tools
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
