"""Batch scoring from and to PostgreSQL: a day's rows landed by query, scores replaced in one transaction."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy

from include.ct.batch import checks, inputs, scoring
from include.ct.config import BatchSpec, find_pipeline_config
from include.ct.modeling.pipeline_building import build_pipeline, coerce_features
from include.ct.registry.served_model import ServedModel
from testbed.services import PostgresDatabase
from tools import datagen

pytestmark = pytest.mark.integration

QUERY = "SELECT * FROM customers WHERE event_time >= :start AND event_time < :end"


def _served(config, version: str, seed: int) -> ServedModel:
    frame = datagen.churn_batch(1500, day=1, seed=seed)
    model = build_pipeline(config).fit(coerce_features(config, frame), frame[config.target])
    return ServedModel(config, version, f"run{version}", datetime.now(UTC), model, [0, 1])


def test_a_sql_day_is_landed_scored_and_replaced_without_duplicates(
    postgres_database: PostgresDatabase, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_DATA_DIR", str(tmp_path))
    engine = sqlalchemy.create_engine(postgres_database.url)
    try:
        # days 334 and 335 of the generator are 2026-12-01 and 2026-12-02
        rows = pd.concat([datagen.churn_batch(700, day=day, seed=day) for day in (334, 335)])
        rows.drop(columns=["churned"]).to_sql("customers", engine, index=False)
        base = find_pipeline_config("churn")
        spec = BatchSpec.model_validate(
            {
                "key": ["customer_id"],
                "chunk_rows": 250,
                "source": {"type": "sql", "conn_id": "warehouse", "query": QUERY},
                "output": {"type": "sql", "conn_id": "warehouse", "table": "public.churn_scores"},
            }
        )
        config = base.model_copy(update={"batch": spec})
        day = date(2026, 12, 1)
        assert rows["event_time"].dt.date.value_counts().to_dict() == {day: 700, date(2026, 12, 2): 700}

        batch = inputs.locate_input(config, day, engine)
        assert [len(pd.read_parquet(name)) for name in batch.files] == [250, 250, 200]  # one file a chunk
        checks.validate_input(config, batch)
        model = scoring.ResolvedModel("churn", "3", "run3", "champion")
        for attempt in range(2):  # a retry replaces the day
            result = scoring.score_day(
                config, model, batch, f"run-{attempt}", served=_served(config, "3", 0), sql_engine=engine
            )
        assert result.rows == 700
        table = pd.read_sql("SELECT * FROM public.churn_scores", engine)
        assert len(table) == 700 and table["customer_id"].is_unique
        assert set(table["scoring_run_id"]) == {"run-1"} and set(table["score_date"]) == {day}

        other = inputs.locate_input(config, date(2026, 12, 2), engine)
        newer = scoring.ResolvedModel("churn", "4", "run4", "champion")
        scoring.score_day(config, newer, other, "run-2", served=_served(config, "4", 1), sql_engine=engine)
        scoring.score_day(config, newer, batch, "run-3", served=_served(config, "4", 1), sql_engine=engine)
        table = pd.read_sql(
            "SELECT score_date, model_version, count(*) AS n FROM public.churn_scores "
            "GROUP BY 1, 2 ORDER BY 1",
            engine,
        )
        assert table.to_dict("records") == [
            {"score_date": day, "model_version": "4", "n": 700},
            {"score_date": date(2026, 12, 2), "model_version": "4", "n": 700},
        ]
        with pytest.raises(inputs.NoInputError, match="no rows from warehouse"):
            inputs.locate_input(config, date(2026, 12, 5), engine)
    finally:
        engine.dispose()
