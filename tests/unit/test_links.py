"""Extra links show what the task set while it ran, and only for that run of the task."""

from __future__ import annotations

from ct_airflow.links import MlflowModelVersionLink, MlflowRunLink, ValidationReportLink, set_link
from ct_airflow.operators import RegisterModelOperator, TrainChallengerOperator


def test_a_link_shows_the_address_the_task_set() -> None:
    train = TrainChallengerOperator(task_id="train", pipeline="churn", snapshot={})
    assert MlflowRunLink().get_link(train, ti_key=None) == ""  # nothing produced yet: no link
    set_link(train, MlflowRunLink, "http://mlflow/#/experiments/1/runs/abc")
    assert MlflowRunLink().get_link(train, ti_key=None) == "http://mlflow/#/experiments/1/runs/abc"
    assert ValidationReportLink().get_link(train, ti_key=None) == ""  # other links are unaffected


def test_links_belong_to_their_task_and_can_be_cleared() -> None:
    register = RegisterModelOperator(task_id="register", pipeline="churn", trained={}, decision={})
    other = RegisterModelOperator(task_id="other", pipeline="churn", trained={}, decision={})
    set_link(register, MlflowModelVersionLink, "http://mlflow/#/models/churn/versions/3")
    assert MlflowModelVersionLink().get_link(other, ti_key=None) == ""
    set_link(register, MlflowModelVersionLink, None)
    assert MlflowModelVersionLink().get_link(register, ti_key=None) == ""


def test_links_are_stored_under_airflows_own_xcom_keys() -> None:
    # The UI reads a link's address from the XCom Airflow writes under this key as the task ends.
    assert MlflowRunLink().xcom_key == "_link_MlflowRunLink"
    assert ValidationReportLink().xcom_key == "_link_ValidationReportLink"
