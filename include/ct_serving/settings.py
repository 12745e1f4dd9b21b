"""Service configuration from ``CT_SERVING_*`` variables (the reload token never from the repo)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from include.ct.monitoring.prediction_log import prediction_log_dir

API_PREFIX = "/v1/models"
RELOAD_TOKEN_ENV = "CT_SERVING_RELOAD_TOKEN"


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class ServingSettings:
    """Service configuration, from ``CT_SERVING_*`` variables (the token never from the repo)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    poll_seconds: float = 30.0
    reload_token: str | None = None
    prediction_log: Path | None = None
    flush_seconds: float = 2.0
    pipelines: tuple[str, ...] | None = None
    load_on_start: bool = True

    @classmethod
    def from_env(cls) -> ServingSettings:
        token = os.environ.get(RELOAD_TOKEN_ENV) or None
        token_file = os.environ.get(f"{RELOAD_TOKEN_ENV}_FILE")
        if not token and token_file:
            token = Path(token_file).read_text().strip() or None
        names = os.environ.get("CT_SERVING_PIPELINES", "").strip()
        return cls(
            host=os.environ.get("CT_SERVING_HOST", "127.0.0.1"),
            port=int(os.environ.get("CT_SERVING_PORT", "8000")),
            max_batch=int(os.environ.get("CT_SERVING_MAX_BATCH", "1000")),
            max_body_bytes=int(os.environ.get("CT_SERVING_MAX_BODY_BYTES", str(8 * 1024 * 1024))),
            poll_seconds=env_float("CT_SERVING_POLL_SECONDS", 30.0),
            reload_token=token,
            prediction_log=prediction_log_dir(),
            flush_seconds=env_float("CT_PREDICTION_LOG_FLUSH_SECONDS", 2.0),
            pipelines=tuple(n.strip() for n in names.split(",") if n.strip()) or None,
        )
