#!/usr/bin/env bash
# The image's entry point, as in Airflow's image: `<image> scheduler` runs `airflow scheduler`;
# a command that is a program on PATH (bash, python, mlflow, ...) runs as it is.
set -euo pipefail
if [ $# -gt 0 ] && [ "$1" != "celery" ] && command -v "$1" >/dev/null 2>&1; then
  exec "$@"
fi
exec airflow "$@"
