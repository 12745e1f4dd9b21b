"""A private PostgreSQL server (initdb on a free loopback port) that a test may stop and restart.

The shared server on 5432 is never touched: restarting it would hit every other user of the
machine. Commands run as the ``postgres`` user when the tests run as root (initdb refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testbed.services import PostgresDatabase, free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("initdb not found: install the PostgreSQL server package")
    return Path(initdb).parent


@dataclass
class PrivatePostgres:
    """One PostgreSQL cluster under ``root``, trust auth, listening on 127.0.0.1:``port`` only."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(_bin_dir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}\n{tail}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects every client (what a restart looks like to them); ``immediate``
        is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> PostgresDatabase:
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            admin.close()
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"
        return PostgresDatabase(name, url, self.port)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """initdb, start, yield; then stop and delete the cluster."""
    root = Path(tempfile.mkdtemp(prefix="ct-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    server = PrivatePostgres(root, free_port())
    server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # already down
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
