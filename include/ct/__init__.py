"""The continuous-training library: runs and is tested without Airflow."""
