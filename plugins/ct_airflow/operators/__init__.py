"""Operators of the continuous-training DAG: small classes whose ``execute`` calls the library.

Each loads its pipeline config by name at run time, returns small JSON for XCom and sets the
address of what it produced for its extra link. One module per concern: ``base`` (config,
trigger, lineage), ``data``, ``modeling``, ``deployment``, ``monitoring``.
"""

from ct_airflow.operators.base import PipelineOperator, SnapshotOperator, Upstream, trigger_of
from ct_airflow.operators.data import ExtractBatchesOperator, ValidateDataOperator
from ct_airflow.operators.deployment import (
    DeployModelOperator,
    RegisterModelOperator,
    RollbackChampionOperator,
)
from ct_airflow.operators.modeling import EvaluateChallengerOperator, TrainChallengerOperator
from ct_airflow.operators.monitoring import MonitorOperator

__all__ = [
    "DeployModelOperator",
    "EvaluateChallengerOperator",
    "ExtractBatchesOperator",
    "MonitorOperator",
    "PipelineOperator",
    "RegisterModelOperator",
    "RollbackChampionOperator",
    "SnapshotOperator",
    "TrainChallengerOperator",
    "Upstream",
    "ValidateDataOperator",
    "trigger_of",
]
