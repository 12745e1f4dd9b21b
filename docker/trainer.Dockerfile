# The trainer image: what the `runtime: docker` pipelines run train and evaluate in, through
# Airflow's DockerOperator. The project's library and its ML dependencies, no Airflow; the same
# step code and entry point as in-process runs (python -m include.ct.steps).
#   docker build -f docker/trainer.Dockerfile -t ct-trainer:latest .
# BASE_IMAGE needs Python 3.11 with venv; docker/build_base_image.sh makes one without a registry.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8
RUN python3 -m venv /opt/ct/venv
COPY docker/trainer-requirements.lock /opt/ct/requirements.lock
RUN /opt/ct/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      --cert /etc/ssl/certs/ca-certificates.crt -r /opt/ct/requirements.lock
# Non-root by default; the DockerOperator runs it as the Airflow worker's uid so files written
# to shared storage belong to the worker.
RUN useradd --uid 50000 --gid 0 --no-create-home --home-dir /tmp ct
COPY include/ /opt/ct/app/include/
ENV PATH=/opt/ct/venv/bin:$PATH \
    PYTHONPATH=/opt/ct/app \
    HOME=/tmp \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
USER 50000
WORKDIR /opt/ct/app
ENTRYPOINT ["python", "-m", "include.ct.steps"]
