"""The prediction service as an Airflow connection: its address and reload token.

The ``ct_serving`` connection (seeded from ``airflow_settings.yaml``) holds the service's base URL
in its host (``http://serving:8000``, or host, port and schema) and the reload token as its
password, so the address can be changed in the Airflow UI and the token stays encrypted with the
Fernet key. Where the connection is not defined (a bare ``dag.test()``), ``CT_SERVING_URL`` and
``CT_SERVING_RELOAD_TOKEN`` are read instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from include.ct.registry.deploy import ServiceClient


def service_url(host: str | None, port: int | None = None, schema: str | None = None) -> str | None:
    """The base URL a connection's fields describe: the host as given if it is a URL."""
    if not host:
        return None
    if "://" in host:
        return host.rstrip("/")
    return f"{schema or 'http'}://{host}" + (f":{port}" if port else "")


class PredictionServiceHook(BaseHook):
    """Client of the prediction service, configured by the ``ct_serving`` connection.

    :param ct_serving_conn_id: the connection naming the service (default ``ct_serving``).
    """

    conn_name_attr = "ct_serving_conn_id"
    default_conn_name = "ct_serving"
    conn_type = "http"
    hook_name = "CT prediction service"

    def __init__(self, ct_serving_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ct_serving_conn_id = ct_serving_conn_id

    def get_conn(self) -> ServiceClient | None:
        """A client of the service; None where neither the connection nor the variables name one."""
        from include.ct.registry.deploy import ServiceClient

        try:
            connection = self.get_connection(self.ct_serving_conn_id)
        except AirflowNotFoundException:
            self.log.info("No connection %s: CT_SERVING_URL names the service", self.ct_serving_conn_id)
            return ServiceClient.from_env()
        url = service_url(connection.host, connection.port, connection.schema)
        if url is None:
            self.log.warning("Connection %s has no host: no live checks", self.ct_serving_conn_id)
            return None
        return ServiceClient(url, connection.password or None)
