"""Human approval before a deployment (``deploy: {approval: manual}``), recorded on the model version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.standard.exceptions import HITLTimeoutError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context, XComArg

APPROVAL_BODY = """\
**Challenger** {{ ti.xcom_pull(task_ids='evaluate')['metric'] }} =
{{ ti.xcom_pull(task_ids='evaluate')['challenger'] | round(4) }}
against champion {{ ti.xcom_pull(task_ids='evaluate')['champion'] }}
(version {{ ti.xcom_pull(task_ids='evaluate')['champion_version'] or 'none' }}).

Gate: {{ ti.xcom_pull(task_ids='evaluate')['summary'] }}

Registered as version **{{ ti.xcom_pull(task_ids='register')['version'] }}**, which passed its
infra check (it loads and predicts where it will serve). Approve to move `champion` to it;
reject (or no answer in time) leaves the champion unchanged.
"""


class DeployApprovalOperator(ApprovalOperator):
    """An ApprovalOperator whose answer (approve, reject, timeout) is tagged on the model version.

    :param pipeline: the pipeline config's ``name`` (templated).
    :param registered: the register task's result (``register.output``): the version to approve.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "pipeline", "registered")

    def __init__(self, *, pipeline: str, registered: XComArg | Mapping[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("body", APPROVAL_BODY)
        kwargs.setdefault("defaults", ApprovalOperator.REJECT)  # silence means no
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.registered = registered

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        try:
            result = super().execute_complete(context=context, event=event)
        except HITLTimeoutError:
            self._record("rejected_by_reviewer", "no approval before the timeout")
            raise
        chosen = result["chosen_options"][0]
        user = (result.get("responded_by_user") or {}).get("name") or "timeout default"
        if chosen == self.APPROVE:
            self._record("approved", f"approved by {user}")
        else:
            self._record("rejected_by_reviewer", f"rejected by {user}")
        return result

    def _record(self, decision: str, reason: str) -> None:
        from include.ct.config import find_pipeline_config
        from include.ct.registry.deploy import decision_tags
        from include.ct.registry.registry import set_version_tags
        from include.ct.registry.staging import unstage

        config = find_pipeline_config(self.pipeline)
        version = str(self.registered["version"])
        tags = {"ct.approval": reason}
        if decision != "approved":
            tags.update(decision_tags(decision, reason))
            unstage(config, version)  # loaded for its infra check only: the service drops it
        set_version_tags(config, version, tags)
        self.log.info("deployment of version %s: %s", version, reason)
