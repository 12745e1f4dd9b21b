# The README's commands. Everything installs into .venv from requirements.lock.
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

.PHONY: install system-deps lock lint format test test-fast run data serve bench bench-quick simulate env trainer-image clean help

help:
	@echo "make run    start Airflow, MLflow, the prediction service and seed a first batch"
	@echo "make serve  start only the prediction service (MLFLOW_TRACKING_URI, CT_SERVING_PORT)"
	@echo "make test   install everything and run lint + the whole test suite"
	@echo "make data   drop the next day's churn batch into the landing zone"
	@echo "make bench  run every benchmark -> bench/report.md (bench-quick: a smoke run)"
	@echo "make simulate  replay DAYS (60) of drifting data through the real pipeline -> bench/simulation.md"
	@echo "make lock   re-resolve requirements.txt into requirements.lock"
	@echo "make env    write .env for docker compose with fresh secrets"
	@echo "make trainer-image  build the image runtime: docker pipelines train in"

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# --compile-bytecode: uv, unlike pip, installs no .pyc files, and where PYTHONDONTWRITEBYTECODE is
# set (as in many images) Python never writes them, so every fresh interpreter (a task's infra
# check, the dag-processor, each test's Airflow) compiled MLflow, pandas and scikit-learn from
# source again: `import mlflow` took 3.4 s instead of 1.0 s.
$(VENV)/.installed: requirements.lock Makefile | $(PY)
	@test -x $(UV) || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip sync --compile-bytecode --python $(PY) requirements.lock
	@touch $@

install: $(VENV)/.installed  ## build .venv from the lock file (idempotent)

# Docker engine, debootstrap and docker-compose for the container tests (apt, as root; else skipped).
system-deps:
	@bash scripts/install_system_deps.sh

lock: | $(PY)
	@test -x $(UV) || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip compile --python-version 3.11 requirements.txt -o requirements.lock
	$(UV) pip compile --python-version 3.11 docker/trainer-requirements.txt -c requirements.lock \
	  -o docker/trainer-requirements.lock

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy include

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint system-deps
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not integration and not e2e"

run: install
	bash scripts/run_local.sh

# The prediction service alone: MLFLOW_TRACKING_URI (default: make run's MLflow), CT_PIPELINES_DIR,
# CT_SERVING_PORT (8000), CT_SERVING_HOST (127.0.0.1), CT_SERVING_RELOAD_TOKEN.
serve: install
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-http://127.0.0.1:5000} OMP_NUM_THREADS=1 \
	  $(PY) -m include.ct.serving serve

data: install
	$(PY) -m include.ct.datagen churn

# Every benchmark (serving, validation, DAG parse, pipeline floor and scale, orchestrated), each
# 3 runs, then bench/report.md and bench/report.json: hours on 2 cores. bench-quick: a smoke run.
bench: install
	$(PY) -m bench.suite

bench-quick: install
	$(PY) -m bench.suite --quick

# Closed-loop proof: DAYS (60) of drifting churn data through real Airflow runs, MLflow and the
# prediction service, against level-0, always-deploy and oracle baselines -> bench/simulation.md.
# About an hour on 2 cores; `python -m include.ct.simulate --fast` is the minute-long library replay.
DAYS ?= 60
simulate: install
	OMP_NUM_THREADS=1 $(PY) -m bench.simulation --days $(DAYS)

# docker compose's .env with fresh secrets (keeps values already set).
env: install
	$(PY) scripts/make_env.py

# The image `runtime: docker` pipelines run train/evaluate in (BASE_IMAGE=... to change the base).
trainer-image:
	docker build -f docker/trainer.Dockerfile $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  -t ct-trainer:latest .

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
