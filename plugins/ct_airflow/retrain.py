"""The monitoring DAG's hand-off to retraining, in its own module.

``TriggerDagRunOperator`` pulls in Airflow's database models on import; only ``ct_monitoring``
needs it, so the pipelines' DAG file does not pay for it at parse time.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator


class RetrainTriggerOperator(TriggerDagRunOperator):
    """Start ``ct_<name>`` with the monitor's reason in the run conf and the run note."""

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "note")
