"""Airflow's login and DAG permissions for the pages this plugin serves from the API server.

Airflow mounts a plugin's FastAPI app as it is: the core API's authentication does not reach it.
Every route here therefore depends on the API server's own ``get_user`` (the JWT in the
``Authorization`` header or the UI's session cookie) and asks the configured auth manager whether
that user may read the pipeline's DAG. Anonymous API calls get 401; a browser is sent to the login
page and back.
"""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from include.ct.config import PipelineConfig, find_pipeline_config

User = Annotated[BaseUser, Depends(get_user)]


def can_read_dag(user: BaseUser, dag_id: str) -> bool:
    """Whether ``user`` may see ``dag_id`` (its runs, and so its reports and history)."""
    return bool(get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user))


def readable_pipeline(pipeline: str, user: User) -> PipelineConfig:
    """The pipeline named in the path, if it exists and the user may read its DAG (else 404/403)."""
    try:
        config = find_pipeline_config(pipeline)
    except (KeyError, ValueError) as exc:
        raise HTTPException(404, f"no pipeline '{pipeline}'") from exc
    if not can_read_dag(user, config.dag_id):
        raise HTTPException(403, f"you may not read DAG {config.dag_id}")
    return config


ReadablePipeline = Annotated[PipelineConfig, Depends(readable_pipeline)]


def send_browsers_to_login(app: FastAPI) -> None:
    """Answer an unauthenticated browser with the login page (coming back after); APIs keep 401."""

    async def handler(request: Request, exc: StarletteHTTPException) -> Response:
        wants_page = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 401 and wants_page and request.method == "GET":
            return RedirectResponse(
                get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303
            )
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, handler)  # type: ignore[arg-type]
