"""Operations tools beside the library: the Airflow settings loader, the example-data generator
and the compose env maker."""
