# The project's one image: Airflow 3 (every component), the MLflow server, the prediction service
# and the container runtime of `runtime: docker` steps, with exactly requirements.lock installed.
# Built from a plain Python base rather than apache/airflow: that image preinstalls ~70 providers
# built against its own constraints, and installing this lock over it would change packages
# (SQLAlchemy, Flask, pandas, numpy) under them; here nothing is installed that the lock does not pin.
#   docker build -t airflow-ct:latest .
# BASE_IMAGE needs Python 3.11 with venv and apt; docker/build_base_image.sh makes one with
# debootstrap where no image registry is reachable (make image).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 DEBIAN_FRONTEND=noninteractive
# curl: healthchecks; dumb-init: PID 1 that forwards signals; git: MLflow's code-version context.
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends ca-certificates curl dumb-init git \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

COPY requirements.lock /opt/ct/requirements.lock
# --compile-bytecode: uv writes no .pyc otherwise, and every fresh interpreter (each Airflow
# component, a task's infra check) would compile MLflow, pandas and scikit-learn again.
RUN python3 -m venv /opt/ct/venv \
    && /opt/ct/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
       --cert /etc/ssl/certs/ca-certificates.crt "$(grep -E '^uv==' /opt/ct/requirements.lock)" \
    && SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt /opt/ct/venv/bin/uv pip sync --no-cache \
       --compile-bytecode --python /opt/ct/venv/bin/python /opt/ct/requirements.lock

# Non-root, uid 50000 and group 0 as in Airflow's image (OpenShift-style arbitrary uids work
# through the group). Every path a named volume is mounted on exists here owned by that user,
# so Docker copies the ownership into a fresh volume; the init service also chowns them.
ENV AIRFLOW_HOME=/opt/airflow HOME=/opt/airflow
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airflow --no-create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/plugins /opt/airflow/include /opt/airflow/tools \
       /opt/airflow/logs \
       /opt/ct/data \
    && chown -R 50000:0 /opt/airflow /opt/ct/data && chmod -R g+rwX /opt/airflow /opt/ct/data

COPY docker/entrypoint.sh /opt/ct/entrypoint.sh
COPY --chown=50000:0 dags/ /opt/airflow/dags/
COPY --chown=50000:0 plugins/ /opt/airflow/plugins/
COPY --chown=50000:0 include/ /opt/airflow/include/
COPY --chown=50000:0 tools/ /opt/airflow/tools/
COPY --chown=50000:0 airflow_settings.yaml airflow_local_settings.py /opt/airflow/

ENV PATH=/opt/ct/venv/bin:$PATH \
    PYTHONPATH=/opt/airflow \
    CT_DATA_DIR=/opt/ct/data \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false
USER airflow
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/opt/ct/entrypoint.sh"]
CMD ["version"]
