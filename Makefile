# Two commands do everything on a fresh machine:
#   make run    serve the app on http://localhost:7071 (embedded WDI dataset)
#   make test   install what the tests need (Python packages, Azurite, Chromium) and run them
#               (make test-unit: tests/unit alone, well under a minute)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 7071
WORKERS ?= 1

.PHONY: run test test-unit setup eval eval-quick bench bench-quick synthetic load clean lock ai-mode

# -c requirements.lock's pins (its hashes left out: a constraint with a hash would demand hashes of the dev-only
# packages too): production's packages (and theirs) at the versions the deployment installs
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	grep -v -- '--hash=' requirements.lock | sed 's/ *\\$$//' > $(VENV)/constraints.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt -c $(VENV)/constraints.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed
	bash scripts/ensure-chromium

run: $(VENV)/.installed
	$(PY) -m local_host --port $(PORT) --workers $(WORKERS)

test: setup
	$(PY) -m pytest

# the fast part alone: pure functions, models, dataset parsing (no server, no subprocess, no Azurite/Chromium)
test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis

bench: $(VENV)/.installed
	$(PY) scripts/benchmark.py --markdown bench-results/benchmark.md

bench-quick: $(VENV)/.installed
	$(PY) scripts/benchmark.py --quick

synthetic: $(VENV)/.installed
	$(PY) scripts/make_synthetic.py bench-results/synthetic --parquet

eval: $(VENV)/.installed
	$(PY) scripts/eval_twolvlimp.py --full --json bench-results/eval.json

eval-quick: $(VENV)/.installed
	$(PY) scripts/eval_twolvlimp.py --quick

# requirements.lock: requirements.txt and everything it needs, pinned with hashes (pip-tools in its own venv)
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip-tools==7.6.2
	.venv-lock/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --output-file=requirements.lock requirements.txt

load: $(VENV)/.installed
	$(PY) load/run_load.py

# AI Mode's files for the configured dataset, in one process per CPU (AI_MODE_OUT, AI_MODE_LIMIT, AI_MODE_SLOTS)
ai-mode: $(VENV)/.installed
	$(PY) scripts/ai_mode.py
