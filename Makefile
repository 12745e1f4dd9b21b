# The README's commands. Everything installs into .venv from requirements-spark.lock
# (requirements.lock, which the image takes, plus PySpark for batch scoring on Spark).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
# uv does not read pip's settings: give it the system CA bundle when there is one.
export SSL_CERT_FILE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export PYTHONPATH := $(CURDIR)
export CT_DATA_DIR ?= $(CURDIR)/data

.PHONY: install system-deps lock lint format docs docs-screenshots docs-check test test-fast reliability compose-e2e run data serve bench bench-quick simulate simulate-fast env image clean help

help:
	@echo "make run    start Airflow, MLflow, the prediction service and seed a first batch"
	@echo "make serve  start only the prediction service (MLFLOW_TRACKING_URI, CT_SERVING_PORT)"
	@echo "make test   install everything and run lint, the docs build + the whole test suite"
	@echo "make docs   build the docs site into site/ (mkdocs-material)"
	@echo "make data   drop the next day's churn batch into the landing zone"
	@echo "make bench  run every benchmark -> bench/report.md (bench-quick: a smoke run)"
	@echo "make simulate  replay DAYS (60) of drifting data through the real pipeline -> bench/simulation.md"
	@echo "make simulate-fast  every deployment policy on the same stream, library calls -> bench/simulation-fast/"
	@echo "make lock   re-resolve requirements.txt (+ requirements-spark.txt) into the lock files"
	@echo "make env    write .env for docker compose with fresh secrets"
	@echo "make image  build the project image airflow-ct:latest (BASE_IMAGE=... to change the base)"
	@echo "make compose-e2e  start docker-compose.yaml for real and run the churn pipeline through it"

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# --compile-bytecode: uv, unlike pip, installs no .pyc files, and where PYTHONDONTWRITEBYTECODE is
# set (as in many images) Python never writes them, so every fresh interpreter (a task's infra
# check, the dag-processor, each test's Airflow) compiled MLflow, pandas and scikit-learn from
# source again: `import mlflow` took 3.4 s instead of 1.0 s.
# The development venv takes requirements-spark.lock: requirements.lock (the image's) plus
# the Spark provider and PySpark, for batch scoring's `engine: spark` and its tests.
$(VENV)/.installed: requirements.lock requirements-spark.lock Makefile | $(PY)
	@test -x $(UV) || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip sync --compile-bytecode --python $(PY) requirements-spark.lock
	@touch $@

install: $(VENV)/.installed  ## build .venv from the lock file (idempotent)

# Docker engine, debootstrap, docker-compose and the compose plugin for the container tests (root).
system-deps:
	@bash scripts/install_system_deps.sh

lock: | $(PY)
	@test -x $(UV) || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip compile --python-version 3.11 requirements.txt -o requirements.lock
	$(UV) pip compile --python-version 3.11 requirements.txt requirements-spark.txt \
		-c requirements.lock -o requirements-spark.lock

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy include tools simulation bench testbed
	PYTHONPATH=$(CURDIR):$(CURDIR)/plugins $(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The docs site (mkdocs-material) into site/; docs-check builds it with --strict into a temp folder.
export NO_MKDOCS_2_WARNING := 1
docs: install
	$(VENV)/bin/mkdocs build --strict -d site

# The docs' screenshots, taken by the browser tests against a real deployment (needs Chromium).
docs-screenshots: install system-deps
	CT_BROWSER_ARTIFACTS=$(CURDIR)/docs/assets/screenshots $(PY) -m pytest tests/browser

docs-check: install
	@tmp=$$(mktemp -d) && $(VENV)/bin/mkdocs build --strict -q -d $$tmp; rc=$$?; rm -rf $$tmp; exit $$rc

test: lint docs-check system-deps
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not integration and not e2e"

# The fault and abuse suite alone, rewriting its dated report bench/reliability.md when it all passes.
reliability: install
	CT_RELIABILITY_REPORT=$(CURDIR)/bench/reliability.md $(PY) -m pytest tests/reliability

# docker-compose.yaml really started: builds the project image (and local stand-ins for images
# no registry serves), then up, a promoting run, a scheduler restart mid-run, down + up, Celery.
compose-e2e: install system-deps
	$(PY) -m pytest -s -m compose --timeout 3600 tests/e2e/test_compose_stack.py

run: install
	bash scripts/run_local.sh

# The prediction service alone: MLFLOW_TRACKING_URI (default: make run's MLflow), CT_PIPELINES_DIR,
# CT_SERVING_PORT (8000), CT_SERVING_HOST (127.0.0.1), CT_SERVING_RELOAD_TOKEN.
serve: install
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-http://127.0.0.1:5000} OMP_NUM_THREADS=1 \
	  $(PY) -m include.ct_serving serve

data: install
	$(PY) -m tools.datagen churn

# Every benchmark (serving, validation, DAG parse, pipeline floor and scale, orchestrated), each
# 3 runs, then bench/report.md and bench/report.json: hours on 2 cores. bench-quick: a smoke run.
bench: install
	$(PY) -m bench.suite

bench-quick: install
	$(PY) -m bench.suite --quick

# Closed-loop proof: DAYS (60) of drifting churn data through real Airflow runs, MLflow and the
# prediction service, against level-0, always-deploy and oracle baselines -> bench/simulation.md.
# About an hour on 2 cores; `make simulate-fast` is the minutes-long library replay.
DAYS ?= 60
simulate: install
	OMP_NUM_THREADS=1 $(PY) -m bench.simulation --days $(DAYS)

# Every deployment policy (point-estimate gate, statistical gate, shadow, canary, baselines) on the
# same stream through library calls, training/serving skew included -> bench/simulation-fast/.
simulate-fast: install
	$(PY) -m simulation --fast --days $(DAYS) --skew-feature support_calls --out bench/simulation-fast

# docker compose's .env with fresh secrets (keeps values already set).
env: install
	$(PY) tools/make_env.py

# The project's one image (Airflow, MLflow, serving, `runtime: docker` steps). Without a registry:
# BASE_IMAGE=ct-base:bookworm after `bash docker/build_base_image.sh` (debootstrap, as root).
image:
	DOCKER_BUILDKIT=0 docker build --network host $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  -t airflow-ct:latest .

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
