"""Extra links from a task to what it produced: the MLflow run, model version or data report.

A task sets its link's address while it runs (``set_link``); when the task ends, Airflow asks each
link for its address in the same process and stores it once as the link's XCom, which the UI
reads. So a link costs one XCom write, not a write of its own, a read back and a second write.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

LINK_ADDRESSES = "_ct_link_addresses"  # operator attribute: link name -> address set while running


def set_link(operator: Any, link: type[BaseOperatorLink], address: str | None) -> None:
    """Record the address ``link`` should show for this run of ``operator`` (empty: no link)."""
    addresses = {**(getattr(operator, LINK_ADDRESSES, None) or {}), str(link.name): address or ""}
    setattr(operator, LINK_ADDRESSES, addresses)


class _TaskOutputLink(BaseOperatorLink):
    """A link to something the task produced, whose address the task set while it ran."""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return str(getattr(operator, LINK_ADDRESSES, {}).get(self.name, ""))


class MlflowRunLink(_TaskOutputLink):
    """The MLflow run the task trained or evaluated."""

    name = "MLflow run"


class MlflowModelVersionLink(_TaskOutputLink):
    """The registered model version the task promoted."""

    name = "MLflow model version"


class ValidationReportLink(_TaskOutputLink):
    """The human-readable validation report of the task's data version."""

    name = "Validation report"
