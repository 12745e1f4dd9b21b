"""Airflow wrappers (operators, sensors, triggers, links) around the ``include.ct`` library."""

import warnings

# Loading a model makes pickle look up scipy's ufuncs in every imported module, and each of
# Airflow's deprecated module attributes answers with a warning: hundreds of lines in a task log.
warnings.filterwarnings("ignore", category=FutureWarning, module="pickle")
