"""A real Airflow deployment for tests: api-server, scheduler, dag-processor and triggerer processes.

Metadata on a throwaway PostgreSQL database, LocalExecutor or CeleryExecutor (Redis broker under a
key prefix of its own, named worker processes), everything on 127.0.0.1; the test that starts it
stops it and removes its Redis keys.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg2

from testbed.services import PostgresDatabase, free_port, stop_group, wait_for_http

AIRFLOW = str(Path(sys.executable).parent / "airflow")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass
class AirflowStack:
    env: dict[str, str]
    database: PostgresDatabase
    home: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    # Like compose's ``restart: unless-stopped``: a component that exits is started again.
    supervise: bool = False
    restarts: dict[str, int] = field(default_factory=dict)
    _restarted_at: dict[str, float] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return done.stdout

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.database.port, user="postgres", dbname=self.database.name
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def task_hosts(self, dag_id: str, run_id: str) -> dict[str, str]:
        """task_id -> hostname of the worker that ran it."""
        rows = self.query(
            "SELECT task_id, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s", dag_id, run_id
        )
        return {str(task): str(host) for task, host in rows}

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> tuple[str, str | None, int] | None:
        """(id, state, try_number) of one task instance, None before it exists."""
        rows = self.query(
            "SELECT id, state, try_number FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = %s",
            dag_id,
            run_id,
            task_id,
        )
        return (str(rows[0][0]), rows[0][1], int(rows[0][2])) if rows else None

    def task_process(self, task_instance_id: str) -> psutil.Process | None:
        """The process running one task instance (its title names the instance), if one is."""
        title = f"airflow worker -- {task_instance_id}"
        for process in psutil.process_iter(["cmdline"]):
            if title in " ".join(process.info["cmdline"] or []):
                return process
        return None

    def runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        """(run_id, state, run_type) of every run of ``dag_id``, oldest first."""
        rows = self.query("SELECT run_id, state, run_type FROM dag_run WHERE dag_id = %s ORDER BY id", dag_id)
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def wait_for_dag(self, dag_id: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query("SELECT 1 FROM dag WHERE dag_id = %s", dag_id):
                return
            self._check_alive()
            time.sleep(2)
        raise TimeoutError(f"{dag_id} was not parsed within {timeout} s\n{self.logs()}")

    def wait_for_watcher(self, dag_id: str, timeout: float = 240) -> None:
        """Wait until the triggerer runs the asset watcher of ``dag_id``.

        Airflow creates a watcher's trigger only when the dag-processor next parses an unpaused
        DAG, and a triggerer picks it up a loop later: data dropped before then is found by
        whatever runs first (a schedule tick), not announced.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query(
                "SELECT 1 FROM asset_watcher w JOIN trigger t ON t.id = w.trigger_id "
                "WHERE w.name = %s AND t.triggerer_id IS NOT NULL",
                f"{dag_id}_data_watcher",
            ):
                time.sleep(3)  # the triggerer's next loop starts it; its first poll sees the zone
                return
            self._check_alive()
            time.sleep(1)
        raise TimeoutError(f"the watcher of {dag_id} was not running within {timeout} s\n{self.logs()}")

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 600) -> list[tuple[str, str, str]]:
        """Wait until ``count`` runs of ``dag_id`` have finished; return all runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if sum(state in ("success", "failed") for _, state, _ in runs) >= count:
                return runs
            self._check_alive()
            time.sleep(2)
        raise TimeoutError(f"{dag_id}: {self.runs(dag_id)} after {timeout} s\n{self.logs()}")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s AND key = %s",
            dag_id,
            run_id,
            task_id,
            key,
        )
        value = rows[0][0] if rows else None
        return json.loads(value) if isinstance(value, str) else value

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.commands[name] = (command, env)
        self.processes[name] = _start(self.home, name, command, env)

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                continue
            if not self.supervise:
                raise RuntimeError(f"airflow {name} exited with {process.returncode}\n{self.logs()}")
            if time.monotonic() - self._restarted_at.get(name, 0.0) < 5:
                continue  # back off, as a process manager does, while its dependency is down
            self._restarted_at[name] = time.monotonic()
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.processes[name] = _start(self.home, name, *self.commands[name])

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {name}\n{(self.home / f'{name}.log').read_text()[-tail:]}" for name in self.processes
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, tail: int = 40) -> str:
        """The last ``tail`` events of each try of one task, as ``time level event`` lines."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        tries = []
        for path in sorted(folder.glob("attempt=*.log")):
            events = []
            for line in path.read_text().splitlines()[-tail:]:
                try:
                    entry = json.loads(line)
                except ValueError:
                    events.append(line)
                    continue
                events.append(
                    f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')}"
                )
            tries.append(f"--- {path.name}\n" + "\n".join(events))
        return "\n".join(tries) or f"no log under {folder}"


@contextmanager
def airflow_stack(
    database: PostgresDatabase, home: Path, extra_env: dict[str, str], *, celery_workers: int = 0
) -> Iterator[AirflowStack]:
    """Migrate ``database`` and run the four Airflow 3 components (plus ``celery_workers`` Celery
    workers under CeleryExecutor) until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database.url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",  # links point where the server is
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",  # as docker-compose.yaml ships it
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        **extra_env,
    }
    redis_prefix = f"ct_test_{uuid.uuid4().hex[:10]}_"
    if celery_workers:
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/0",
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": redis_prefix,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database.url.replace("+psycopg2", ""),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": redis_prefix + "queue",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "testbed.worker_identity.hostname",
            }
        )
    home.mkdir(parents=True, exist_ok=True)
    stack = AirflowStack(env, database, home)
    stack.cli("db", "migrate", timeout=600)
    try:
        for name in COMPONENTS:
            stack.start(name, [AIRFLOW, name], env)
        for index in range(1, celery_workers + 1):
            worker = f"worker-{index}"
            stack.start(
                worker,
                [AIRFLOW, "celery", "worker", "--concurrency", "1", "--skip-serve-logs",
                 "--queues", env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"], "--celery-hostname", f"{worker}@%h"],
                {**env, "CT_TEST_WORKER": worker},
            )  # fmt: skip
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", 180, stack.processes["api-server"])
        yield stack
    finally:
        for process in stack.processes.values():
            stop_group(process)
        if celery_workers:
            _delete_redis_keys(redis_prefix)


def _start(home: Path, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        stdout=(home / f"{name}.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops its workers too
    )


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
