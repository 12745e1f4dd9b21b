"""``python -m include.ct_serving [serve|check]``: run the service, or the infra check of one version.

``check`` loads a version in a fresh interpreter exactly as the service would and predicts rows;
the deploy task runs it before a version may become champion.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence

from include.ct.registry.served_model import (
    ModelLoadError,
    json_records,
    load_served_model,
    records_frame,
    sample_records,
)
from include.ct_serving.app import create_app
from include.ct_serving.settings import ServingSettings


def check_main(args: argparse.Namespace) -> int:
    """Infra validation in a fresh process: load a version like the service does and predict rows."""
    import pandas as pd

    from include.ct.config import find_pipeline_config

    config = find_pipeline_config(args.pipeline)
    try:
        served = load_served_model(config, args.version)
        rows = (
            json_records(config, pd.read_parquet(args.sample).head(args.rows))
            if args.sample
            else sample_records(config)
        )
        predictions, _ = served.predict(records_frame(config, rows))
    except ModelLoadError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    except Exception as exc:  # noqa: BLE001 - anything here means the candidate cannot serve
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": True, "version": served.version, "rows": len(predictions)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.ct_serving", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the prediction service (default)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    check = commands.add_parser("check", help="load one version like the service and predict")
    check.add_argument("--pipeline", required=True)
    check.add_argument("--version", required=True)
    check.add_argument("--sample", help="Parquet file of held-out rows (default: generated rows)")
    check.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # threaded OpenMP predict is 5-10x slower here
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "check":
        return check_main(args)
    import uvicorn

    settings = ServingSettings.from_env()
    host = getattr(args, "host", None) or settings.host
    port = getattr(args, "port", None) or settings.port
    uvicorn.run(create_app(settings=settings), host=host, port=port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
