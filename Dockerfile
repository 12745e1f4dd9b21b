# Airflow 3.3 image with this project's locked dependencies, DAGs, plugins and library.
# Works for plain Docker/compose and Astro-style layouts (include/ under AIRFLOW_HOME on PYTHONPATH).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

USER airflow
COPY --chown=airflow:root requirements.lock /opt/ct/requirements.lock
RUN pip install --no-cache-dir -r /opt/ct/requirements.lock

COPY --chown=airflow:root dags/ ${AIRFLOW_HOME}/dags/
COPY --chown=airflow:root plugins/ ${AIRFLOW_HOME}/plugins/
COPY --chown=airflow:root include/ ${AIRFLOW_HOME}/include/
COPY --chown=airflow:root airflow_settings.yaml ${AIRFLOW_HOME}/airflow_settings.yaml
COPY --chown=airflow:root airflow_local_settings.py ${AIRFLOW_HOME}/airflow_local_settings.py

ENV PYTHONPATH=${AIRFLOW_HOME} \
    CT_DATA_DIR=/opt/ct/data \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
    GX_ANALYTICS_ENABLED=false
