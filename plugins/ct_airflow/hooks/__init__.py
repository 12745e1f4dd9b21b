"""Hooks: how tasks reach the services this project runs beside Airflow."""
