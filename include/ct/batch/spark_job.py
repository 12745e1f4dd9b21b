"""The Spark engine: the in-process scoring as a Spark job, for tables one machine cannot take.

The driver loads the resolved version once (as the service does) and broadcasts it; every Spark
partition is scored by ``score_frame``, the function the in-process engine uses, so both
engines write the same rows. The output is written to a hidden folder and swapped in whole.

    spark-submit include/ct/batch/spark_job.py --pipeline churn --request REQUEST.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from include.ct.batch.inputs import BatchInput, verify_unchanged
from include.ct.batch.partitions import (
    MANIFEST,
    batch_spec,
    output_root,
    partition_name,
    publish,
    staging_dir,
)
from include.ct.batch.scoring import (
    METADATA,
    PREDICTION,
    PROBABILITY_PREFIX,
    ResolvedModel,
    ScoringResult,
    load_model,
    metadata_of,
    score_frame,
)
from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.registry.served_model import ServedModel
from include.ct.storage import write_json_atomic

log = logging.getLogger(__name__)


def write_request(path: Path, model: ResolvedModel, batch: BatchInput, scoring_run_id: str) -> dict[str, Any]:
    """The job's request: what to score with which version, and where its result goes."""
    request = {
        "model": model.to_dict(),
        "input": batch.to_dict(),
        "scoring_run_id": scoring_run_id,
        "result": str(path.with_name("spark_result.json")),
    }
    write_json_atomic(path, request)
    return request


def output_schema(config: PipelineConfig, served: ServedModel, input_schema: Any) -> Any:
    """Key columns as read, the prediction in the model's own type, probabilities, metadata."""
    from pyspark.sql import types as spark_types

    key = batch_spec(config).key
    fields = [input_schema[name] for name in key]
    if served.classes is None:
        fields.append(spark_types.StructField(PREDICTION, spark_types.DoubleType()))
    else:
        first = served.classes[0]
        kind = (
            spark_types.BooleanType()
            if isinstance(first, bool)
            else spark_types.LongType()
            if isinstance(first, int)
            else spark_types.StringType()
        )
        fields.append(spark_types.StructField(PREDICTION, kind))
        fields.extend(
            spark_types.StructField(f"{PROBABILITY_PREFIX}{label}", spark_types.DoubleType())
            for label in served.classes
        )
    fields.extend(spark_types.StructField(name, spark_types.StringType()) for name in METADATA)
    return spark_types.StructType(fields)


def read_input(spark: Any, batch: BatchInput, key: list[str]) -> Any:
    """The day's files as one DataFrame: Parquet as written; CSV with a header, inferred types and
    the key columns as text, as the in-process engine reads them."""
    from pyspark.sql import types as spark_types

    parquet = [name for name in batch.files if name.lower().endswith(".parquet")]
    csv = [name for name in batch.files if name.lower().endswith(".csv")]
    frames = []
    if parquet:
        frames.append(spark.read.parquet(*parquet))
    if csv:
        reader = spark.read.option("header", True)
        inferred = reader.option("inferSchema", True).csv(csv).schema
        schema = spark_types.StructType(
            [
                spark_types.StructField(f.name, spark_types.StringType(), f.nullable) if f.name in key else f
                for f in inferred.fields
            ]
        )
        frames.append(reader.schema(schema).csv(csv))
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other, allowMissingColumns=True)
    return frame


def run(spark: Any, config: PipelineConfig, request: dict[str, Any]) -> ScoringResult:
    """Score the request's day on ``spark`` and swap the result in as the day's partition."""
    started = time.perf_counter()
    model = ResolvedModel(**request["model"])
    batch = BatchInput.from_dict(request["input"])
    verify_unchanged(batch)
    served = load_model(config, model)
    metadata = metadata_of(model, batch, request["scoring_run_id"])
    frame = read_input(spark, batch, batch_spec(config).key)
    schema = output_schema(config, served, frame.schema)
    shared = spark.sparkContext.broadcast(served)

    def score(chunks: Iterator[Any]) -> Iterator[Any]:
        for chunk in chunks:
            yield score_frame(config, shared.value, chunk, metadata)

    final = output_root(config) / partition_name(date.fromisoformat(batch.day))
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(final)
    frame.mapInPandas(score, schema).write.parquet(str(staging))
    rows = spark.read.parquet(str(staging)).count()
    files = len(list(staging.glob("part-*.parquet")))
    write_json_atomic(
        staging / MANIFEST,
        {
            **metadata,
            "day": batch.day,
            "rows": rows,
            "files": files,
            "engine": "spark",
            "written_at": datetime.now(UTC).isoformat(),
        },
    )
    publish(staging, final)
    result = ScoringResult(
        batch.day,
        rows,
        model.version,
        batch.data_version,
        str(final),
        files,
        round(time.perf_counter() - started, 3),
    )
    log.info(
        "%s %s: %d rows scored on Spark by v%s -> %s", config.name, batch.day, rows, model.version, final
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score one day of a pipeline's batch input on Spark.")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--request", type=Path, required=True, help="JSON written by the score task")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pyspark.sql import SparkSession

    config = find_pipeline_config(args.pipeline)
    request = json.loads(args.request.read_text())
    spark = SparkSession.builder.appName(f"ct_{config.name}_batch").getOrCreate()
    try:
        result = run(spark, config, request)
    finally:
        spark.stop()
    write_json_atomic(Path(request["result"]), result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
