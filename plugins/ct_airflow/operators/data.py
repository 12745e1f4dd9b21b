"""Extract and validate: the landing zone's new batches become a validated snapshot, or a quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ct_airflow.links import ValidationReportLink, set_link
from ct_airflow.operators.base import PipelineOperator, SnapshotOperator, trigger_of

INCREMENTAL_RUN_TYPES = frozenset({"scheduled", "asset_triggered"})


class ExtractBatchesOperator(PipelineOperator):
    """Snapshot the new batches of the landing zone; skip the run when nothing arrived.

    :param force: snapshot the accepted data even when no new batch arrived; a bool or a template
        rendering to ``true``/``false`` (``"{{ params.force }}"``).
    """

    template_fields: Sequence[str] = ("pipeline", "force")

    def __init__(self, *, force: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.force = force

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.data.extract import NoNewDataError, extract

        force = str(self.force).lower() in ("true", "1", "yes")
        kind, reason = trigger_of(context)
        self.log.info("Run triggered by %s: %s", kind, reason)
        context["ti"].xcom_push(key="trigger", value={"kind": kind, "reason": reason})
        config = self.load_config()
        only = self._land_sql_window(config, context) if config.source.type == "sql" else None
        try:
            snapshot = extract(config, force=force, only=only)
        except NoNewDataError as exc:
            raise AirflowSkipException(f"Nothing to train on: {exc}") from exc
        return snapshot.to_dict()

    def _land_sql_window(self, config: Any, context: Context) -> list[str] | None:
        """Land this run's window; exact-interval runs then snapshot only that window's file."""
        from airflow.sdk import BaseHook

        from include.ct.data.extract import land_sql_window, sql_batch_name, sql_window

        dag_run = context["dag_run"]
        run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
        # Backfills and manual runs for a chosen date re-read exactly their interval; the rest
        # continue from the watermark so the incremental stream has no gap and no overlap.
        incremental = run_type in INCREMENTAL_RUN_TYPES or bool((dag_run.conf or {}).get("trigger"))
        start, end = sql_window(
            config,
            context.get("data_interval_start"),
            context.get("data_interval_end"),
            dag_run.run_after,
            incremental=incremental,
        )
        hook: Any = BaseHook.get_hook(config.source.conn_id)
        landed = land_sql_window(
            config, hook.get_sqlalchemy_engine(), start, end, advance_watermark=incremental
        )
        window = "incremental" if incremental else "exact interval"
        self.log.info("SQL window (%s) %s .. %s: %s", window, start, end, landed or "no new rows")
        return None if incremental else [sql_batch_name(start, end)]


class ValidateDataOperator(SnapshotOperator):
    """Run the GX suite on every batch; quarantine bad batches and fail, or accept the snapshot."""

    operator_extra_links = (ValidationReportLink(),)
    ui_color = "#fdf1e8"

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.data.extract import Snapshot
        from include.ct.data.validate import DataValidationError, validate_snapshot
        from include.ct.monitoring.drift import snapshot_value_skew

        config = self.load_config()
        snapshot = Snapshot.from_dict(self.snapshot)
        if not snapshot.new_data:
            self.log.info("Forced run without new data: nothing new to validate")
            return {"data_version": snapshot.data_version, "success": True, "new_data": False}
        self._set_report_link(config.name, snapshot.data_version)
        try:
            outcome = validate_snapshot(config, snapshot)
        except DataValidationError as exc:
            # Retrying cannot fix the data: fail now, the batch is already in quarantine.
            raise AirflowFailException(str(exc)) from exc
        skew = snapshot_value_skew(config, snapshot)
        if skew["drifted"]:
            self.log.warning(
                "Value skew against champion v%s (PSI > %s): %s",
                skew["champion"],
                config.validation.drift_threshold,
                skew["drifted"],
            )
        self.log.info("Per-feature PSI against the champion's training data: %s", skew["psi"])
        return {
            "data_version": outcome.data_version,
            "success": outcome.success,
            "new_data": True,
            "report": outcome.report_path,
            "value_skew": skew,
        }

    def _set_report_link(self, pipeline: str, data_version: str) -> None:
        from airflow.configuration import conf

        from ct_airflow.reports import report_url

        base = conf.get("api", "base_url", fallback="http://localhost:8080")
        set_link(self, ValidationReportLink, report_url(base, pipeline, data_version))
