"""Write .env for docker compose with fresh random secrets (keeps values already set).

python tools/make_env.py [PATH]        # default: .env beside docker-compose.yaml
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FERNET = {"AIRFLOW_FERNET_KEY"}
DOCKER_SOCKET = Path("/var/run/docker.sock")


def machine_value(key: str) -> str | None:
    """Settings read off this machine rather than generated; None when not a machine setting."""
    if key == "DOCKER_GID":  # the socket's group, for the docker-runtime override
        return str(DOCKER_SOCKET.stat().st_gid) if DOCKER_SOCKET.exists() else ""
    return None


def fresh_value(key: str) -> str:
    if key in FERNET:  # a Fernet key is 32 url-safe base64-encoded bytes
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_urlsafe(32)


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else ROOT / ".env"
    existing: dict[str, str] = {}
    if target.exists():
        for line in target.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#") and value.strip():
                existing[key.strip()] = value.strip()
    lines, generated = [], []
    for line in (ROOT / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key.startswith("#"):
            lines.append(line)
        elif key in existing:
            lines.append(f"{key}={existing[key]}")
        elif value.split("#")[0].strip():
            lines.append(line)
        elif (found := machine_value(key)) is not None:
            lines.append(f"{key}={found}")
        else:
            lines.append(f"{key}={fresh_value(key)}")
            generated.append(key)
    old_umask = os.umask(0o077)
    try:
        target.write_text("\n".join(lines) + "\n")
    finally:
        os.umask(old_umask)
    print(f"{target}: generated {', '.join(generated) or 'nothing (all set)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
