"""Real services started on loopback for tests and benchmarks: MLflow, the prediction service,
throwaway PostgreSQL databases; each is stopped (or dropped) by whoever started it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now and that this process has not handed out before.

    The caller binds it later, so two calls in a row (say, MLflow's and the service's ports) must
    not return the same port: the second server would fail to bind while the first one answered
    its health check.
    """
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free loopback port found that was not handed out already")


def wait_for_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


# MLflow 3's job runner (GenAI scorers, trace roll-ups; unused here) starts ~7 huey consumer
# processes of ~270 MB that poll all the time: off for every server this project starts.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass
class MlflowServer:
    """A running ``mlflow server`` process on loopback."""

    url: str
    root: Path
    process: subprocess.Popen[bytes]


def mlflow_server_command(root: Path, port: int, backend_store_uri: str | None = None) -> list[str]:
    """``mlflow server`` on 127.0.0.1:``port``: SQLite under ``root`` unless told another backend,
    artifacts under ``root``; run it with ``MLFLOW_SERVER_ENV``."""
    return [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def start_mlflow_server(
    root: Path, backend_store_uri: str | None = None, port: int | None = None
) -> MlflowServer:
    """``mlflow server`` on a loopback port (free unless given): SQLite under ``root`` unless told
    another backend. Restarting on the same root and port brings the same server back."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = (root / "server.log").open("ab")
    process = subprocess.Popen(
        mlflow_server_command(root, port, backend_store_uri),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        env={**os.environ, **MLFLOW_SERVER_ENV},
        start_new_session=True,  # its own process group: a test can kill the server and its workers
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", timeout=180, process=process)
    except (RuntimeError, TimeoutError):
        process.kill()
        raise RuntimeError((root / "server.log").read_text()[-3000:]) from None
    return MlflowServer(url, root, process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process``, started with ``start_new_session``, and whatever it left in its process
    group: a leader killed after its grace period cannot stop its own children."""
    stop(process)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class PostgresDatabase:
    """A throwaway PostgreSQL database on a local server (the shared one on 5432 by default)."""

    name: str
    url: str
    port: int = 5432


@contextmanager
def throwaway_database() -> Iterator[PostgresDatabase]:
    """Create a uniquely named database on 127.0.0.1:5432 and drop it afterwards."""
    import psycopg2

    name = f"ct_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PostgresDatabase(name, f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def copy_config(source: Path, folder: Path, filename: str | None = None, **replacements: str) -> Path:
    """Copy a pipeline YAML into ``folder`` with textual replacements (for variants)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = source.read_text()
    for old, new in replacements.items():
        text = text.replace(old, new)
    target = folder / (filename or source.name)
    target.write_text(text)
    shutil.copymode(source, target)
    return target


@dataclass
class PredictionService:
    """A running prediction service process (``python -m include.ct_serving``) on loopback."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path


def start_prediction_service(
    root: Path, env: dict[str, str], *, port: int | None = None, token: str | None = None
) -> PredictionService:
    """Start the service with ``env`` (on ``port`` with ``token`` to restart one in place, else a
    free port and a new token) and wait until it answers /health."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    token = token or uuid.uuid4().hex
    log_path = root / "serving.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "include.ct_serving", "serve", "--port", str(port)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env={**os.environ, "CT_SERVING_RELOAD_TOKEN": token, **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", timeout=180, process=process)
    except (RuntimeError, TimeoutError):
        process.kill()
        raise RuntimeError(log_path.read_text()[-3000:]) from None
    return PredictionService(url, token, process, log_path)
