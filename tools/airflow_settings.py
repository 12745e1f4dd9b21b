"""Load ``airflow_settings.yaml`` (the Astro CLI format) into any Airflow: connections, pools, variables.

``astro dev start`` reads this file itself; the compose init job and ``make run`` call this
module instead, so every deployment gets the same connections, pools and variables. It checks
the whole file first (an error names the entry and the key), expands ``${ENV_VAR}`` references
so secrets stay out of the repository, and applies everything with Airflow's own import
commands, overwriting what exists: applying twice changes nothing.

    python -m tools.airflow_settings check [FILE]
    python -m tools.airflow_settings apply [FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "airflow_settings.yaml"  # beside tools/
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SettingsError(ValueError):
    """The settings file cannot be applied; the message names the file, the entry and the key."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionEntry(_Entry):
    """One Airflow connection, with the Astro CLI's key names."""

    conn_id: str = Field(min_length=1)
    conn_type: str = Field(min_length=1)
    conn_host: str | None = None
    conn_schema: str | None = None
    conn_login: str | None = None
    conn_password: str | None = None
    conn_port: int | None = Field(default=None, ge=1, le=65535)
    conn_extra: dict[str, Any] | str | None = None
    conn_description: str | None = None

    def to_import(self) -> dict[str, Any]:
        """The entry as ``airflow connections import`` reads it."""
        extra = json.dumps(self.conn_extra) if isinstance(self.conn_extra, dict) else self.conn_extra
        fields = {
            "conn_type": self.conn_type,
            "host": self.conn_host,
            "schema": self.conn_schema,
            "login": self.conn_login,
            "password": self.conn_password,
            "port": self.conn_port,
            "extra": extra,
            "description": self.conn_description,
        }
        return {key: value for key, value in fields.items() if value not in (None, "")}


class PoolEntry(_Entry):
    """One pool: a cap on concurrently running task slots."""

    pool_name: str = Field(min_length=1)
    pool_slot: int = Field(ge=0)
    pool_description: str = ""
    include_deferred: bool = False


class VariableEntry(_Entry):
    """One Airflow Variable; non-string values are stored as JSON."""

    variable_name: str = Field(min_length=1)
    variable_value: Any

    @field_validator("variable_value")
    @classmethod
    def _present(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a value is required (use an empty string for none)")
        return value


class AirflowSettings(_Entry):
    """The ``airflow:`` section of the file."""

    connections: list[ConnectionEntry] = Field(default_factory=list)
    pools: list[PoolEntry] = Field(default_factory=list)
    variables: list[VariableEntry] = Field(default_factory=list)


class _SettingsFile(_Entry):
    airflow: AirflowSettings = Field(default_factory=AirflowSettings)


def _expand(value: Any, where: str, env: Mapping[str, str]) -> Any:
    """Replace ``${NAME}`` in every string with the environment variable NAME."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise SettingsError(f"{where}: environment variable {name} is not set")
            return env[name]

        return ENV_REFERENCE.sub(lookup, value)
    if isinstance(value, list):
        return [_expand(item, f"{where}[{index}]", env) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _expand(item, f"{where}.{key}", env) for key, item in value.items()}
    return value


def _describe(raw: Any, location: tuple[Any, ...]) -> str:
    """``airflow.connections[1] (conn_id 'warehouse').conn_port`` for a pydantic error location."""
    text, node = "", raw
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict):
                name_key = next((k for k in ("conn_id", "pool_name", "variable_name") if k in node), None)
                if name_key:
                    text += f" ({name_key} {node[name_key]!r})"
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text


def load_settings(path: Path = DEFAULT_FILE, env: Mapping[str, str] | None = None) -> AirflowSettings:
    """Read and check the whole file; raise SettingsError naming the first bad entries."""
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise SettingsError(f"{path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping with an 'airflow:' section")
    try:
        settings = _SettingsFile.model_validate(raw).airflow
    except ValidationError as exc:
        problems = [f"{_describe(raw, tuple(error['loc']))}: {error['msg']}" for error in exc.errors()]
        raise SettingsError(f"{path}: " + "; ".join(problems)) from exc
    for kind, key in (("connections", "conn_id"), ("pools", "pool_name"), ("variables", "variable_name")):
        names = [getattr(entry, key) for entry in getattr(settings, kind)]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise SettingsError(f"{path}: airflow.{kind}: {key} {duplicates} defined more than once")
    expanded = _expand(settings.model_dump(), "airflow", env)
    return AirflowSettings.model_validate(expanded)


def import_files(settings: AirflowSettings, folder: Path) -> dict[str, Path]:
    """Write the files Airflow's ``connections/pools/variables import`` commands read."""
    files: dict[str, Path] = {}
    if settings.connections:
        files["connections"] = folder / "connections.json"
        body = {entry.conn_id: entry.to_import() for entry in settings.connections}
        files["connections"].write_text(json.dumps(body))
    if settings.pools:
        files["pools"] = folder / "pools.json"
        pools = {
            entry.pool_name: {
                "slots": entry.pool_slot,
                "description": entry.pool_description,
                "include_deferred": entry.include_deferred,
            }
            for entry in settings.pools
        }
        files["pools"].write_text(json.dumps(pools))
    if settings.variables:
        files["variables"] = folder / "variables.json"
        values = {entry.variable_name: entry.variable_value for entry in settings.variables}
        files["variables"].write_text(json.dumps(values))
    return files


def apply_settings(settings: AirflowSettings, airflow: str | None = None) -> dict[str, int]:
    """Upsert connections, pools and variables into the Airflow of this environment.

    Uses ``airflow connections import --overwrite``, ``airflow pools import`` and ``airflow
    variables import -a overwrite``, so re-applying the same file is a no-op.
    """
    beside = Path(sys.executable).parent / "airflow"  # this environment's Airflow, then PATH's
    binary = airflow or (str(beside) if beside.exists() else shutil.which("airflow") or "airflow")
    commands = {
        "connections": ["connections", "import", "--overwrite"],
        "pools": ["pools", "import"],
        "variables": ["variables", "import", "--action-on-existing-key", "overwrite"],
    }
    with tempfile.TemporaryDirectory(prefix="ct-settings-") as folder:
        os.chmod(folder, 0o700)  # the connection file may hold passwords
        for kind, path in import_files(settings, Path(folder)).items():
            done = subprocess.run(
                [binary, *commands[kind], str(path)], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise SettingsError(f"airflow {' '.join(commands[kind][:2])} failed: {done.stderr[-2000:]}")
            log.info("applied %d %s", len(getattr(settings, kind)), kind)
    return {kind: len(getattr(settings, kind)) for kind in commands}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["check", "apply"])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = load_settings(args.file)
        if args.action == "check":
            counts = {kind: len(getattr(settings, kind)) for kind in ("connections", "pools", "variables")}
        else:
            counts = apply_settings(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    print(f"{args.file}: {'valid' if args.action == 'check' else 'applied'} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
