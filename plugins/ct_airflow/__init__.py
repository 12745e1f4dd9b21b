"""Airflow wrappers (operators, extra links, report viewer) around the ``include.ct`` library."""
