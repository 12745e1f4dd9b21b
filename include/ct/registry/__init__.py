"""Registry: model versions in MLflow (lineage, aliases) and their deployment."""
