"""What a user does in the Airflow and MLflow UIs, in a real browser against a real deployment:
log in, trigger ``ct_churn`` from the form in one click, watch the run, follow each extra link to
the report and MLflow, find the new champion in the CT view; and what an anonymous caller cannot
read. The tests form one story, in order, on one deployment.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from include.ct.config import find_pipeline_config
from tests.browser.conftest import USERS, UiStack, screenshot
from tools import datagen

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DAG_ID = "ct_churn"
TIMEOUT_MS = 60_000


def log_in(page: Any, stack: UiStack, user: str = "admin") -> None:
    page.goto(f"{stack.url}/")
    page.wait_for_url(re.compile(r".*/auth/login.*"), timeout=TIMEOUT_MS)
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(USERS[user])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def page(browser: Any, ui_stack: UiStack) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    log_in(page, ui_stack)
    yield page
    context.close()


def test_plugin_pages_refuse_anonymous_callers(ui_stack: UiStack) -> None:
    """Against the real API server, no browser needed: the report viewer and the CT view need
    Airflow's login; a browser is sent to the login page and back, an API client gets 401."""
    for path in (
        "/ct-reports/churn/any-version/",
        "/continuous-training/",
        "/continuous-training/api/pipelines/churn",
    ):
        anonymous = httpx.get(ui_stack.url + path, timeout=30)
        assert anonymous.status_code == 401, (path, anonymous.text)
        browser_like = httpx.get(ui_stack.url + path, headers={"Accept": "text/html"}, timeout=30)
        assert browser_like.status_code == 303, path
        assert (
            "/auth/login" in browser_like.headers["location"] and "next=" in browser_like.headers["location"]
        )
        forged = httpx.get(ui_stack.url + path, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
        assert forged.status_code in (401, 403), path
    viewer = {"Authorization": f"Bearer {ui_stack.token('viewer')}"}
    answer = httpx.get(f"{ui_stack.url}/continuous-training/api/pipelines/churn", headers=viewer, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["champion"] is None
    missing = httpx.get(f"{ui_stack.url}/ct-reports/churn/no-such-version/", headers=viewer, timeout=30)
    assert missing.status_code == 404


def test_trigger_from_the_form_in_one_click(page: Any, ui_stack: UiStack) -> None:
    datagen.write_batch(find_pipeline_config("churn"), rows=3000)
    ui_stack.airflow.cli("dags", "unpause", DAG_ID)
    page.goto(f"{ui_stack.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Reason").first.wait_for()
    screenshot(page, "trigger-form")
    dialog.get_by_role("button", name="Trigger").click()
    page.get_by_text("Dag Run Triggered").first.wait_for()
    (run,) = ui_stack.api(f"/dags/{DAG_ID}/dagRuns")["dag_runs"]
    assert run["conf"]["reason"] == "manual run"
    assert ui_stack.wait_for_run(DAG_ID, run["dag_run_id"]) == "success", ui_stack.airflow.logs()
    note = ui_stack.api(f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}")["note"]
    assert note.startswith("Trigger: manual. manual run\nGate: promote."), note
    page.goto(f"{ui_stack.url}/dags/{DAG_ID}/runs/{run['dag_run_id']}")
    page.get_by_text("Trigger: manual. manual run").first.wait_for()
    page.locator("table").get_by_text("deploy").first.wait_for()  # the task list has loaded
    screenshot(page, "run-grid")


def latest_run_id(stack: UiStack) -> str:
    runs = stack.api(f"/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=1")["dag_runs"]
    return str(runs[0]["dag_run_id"])


def extra_link(page: Any, stack: UiStack, task_id: str, name: str) -> str:
    """Open the task instance's Details tab and return the address its extra link ``name`` points at."""
    page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{latest_run_id(stack)}/tasks/{task_id}/details")
    link = page.get_by_role("link", name=name)
    try:
        link.wait_for()
    except Exception:
        screenshot(page, f"missing-link-{task_id}")
        raise
    href = link.get_attribute("href")
    assert href, f"{task_id}: link {name!r} has no address"
    return str(href)


def test_extra_links_open_the_report_and_mlflow(page: Any, ui_stack: UiStack) -> None:
    report = extra_link(page, ui_stack, "validate", "Validation report")
    screenshot(page, "task-extra-links")
    tab = page.context.new_page()
    tab.goto(report)
    tab.get_by_role("heading", name=re.compile("Validation of churn")).wait_for()
    assert tab.get_by_text("passed: 1 batch(es) met every rule").is_visible()
    tab.get_by_role("heading", name="Schema").wait_for()
    screenshot(tab, "validation-report")
    tab.get_by_role("link", name="Great Expectations Data Docs").click()
    tab.wait_for_url(re.compile(r".*/data_docs/index\.html"))
    assert "Expectation" in tab.content()

    tab.goto(extra_link(page, ui_stack, "train", "MLflow run"))
    tab.get_by_text("test_roc_auc").first.wait_for()
    screenshot(tab, "mlflow-run")

    tab.goto(extra_link(page, ui_stack, "register", "MLflow model version"))
    tab.get_by_text("champion").first.wait_for()
    screenshot(tab, "mlflow-model-version")
    tab.close()


def test_ct_view_shows_the_new_champion(page: Any, ui_stack: UiStack) -> None:
    """Browse -> Continuous training opens the view; its run link leads back into the Airflow UI."""
    page.goto(f"{ui_stack.url}/")
    page.get_by_role("button", name="Browse").click()
    with page.context.expect_page() as opened:
        page.get_by_role("menuitem", name="Continuous training").click()
    view = opened.value
    view.get_by_text("champion: version 1").wait_for()
    view.get_by_role("heading", name="Gate decisions").wait_for()
    assert view.locator("td.promote").count() >= 1
    assert view.locator("svg").count() == 0  # one gate decision: no chart yet
    screenshot(view, "ct-view")
    view.get_by_role("link", name=latest_run_id(ui_stack)).first.click()
    view.wait_for_url(re.compile(rf".*/dags/{DAG_ID}/runs/.*"))
    view.get_by_text("Trigger: manual. manual run").first.wait_for()
    view.close()


def test_a_logged_out_browser_cannot_read_a_report(browser: Any, page: Any, ui_stack: UiStack) -> None:
    """The report's address, opened without a login, shows the login page, then the report."""
    report = extra_link(page, ui_stack, "validate", "Validation report")
    context = browser.new_context()
    try:
        anonymous = context.new_page()
        anonymous.goto(report)
        anonymous.wait_for_url(re.compile(r".*/auth/login.*"))
        assert "Validation of churn" not in anonymous.content()
        anonymous.locator("input[name=username]").fill("viewer")
        anonymous.locator("input[name=password]").fill(USERS["viewer"])
        anonymous.keyboard.press("Enter")
        anonymous.get_by_role("heading", name=re.compile("Validation of churn")).wait_for()
    finally:
        context.close()
