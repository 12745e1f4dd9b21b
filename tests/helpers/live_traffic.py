"""Live traffic for online-validation tests: clients calling the prediction service with ids, and
the labels of those ids arriving moments later in the pipeline's labels folder."""

from __future__ import annotations

import threading

import httpx

from include.ct.config import find_pipeline_config
from include.ct.data.samples import schema_batch
from include.ct.monitoring.monitor import labels_dir
from include.ct.registry.served_model import json_records
from tools import datagen


class LiveTraffic:
    """Clients calling the service with ids, and the labels of those ids arriving moments later."""

    def __init__(
        self,
        url: str,
        pipeline: str,
        *,
        clients: int = 2,
        batch: int = 20,
        label: bool = True,
        pause: float = 0.0,
    ) -> None:
        self.url = url
        self.pipeline = pipeline
        self.batch = batch
        self.label = label
        self.pause = pause  # seconds each client waits between requests (leaves the host some CPU)
        self.outcomes: list[tuple[int, str]] = []
        self.answers: dict[int, list[str]] = {n: [] for n in range(clients)}  # per client, in order
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]

    def __enter__(self) -> LiveTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, client_number: int) -> None:
        import pandas as pd

        config = find_pipeline_config(self.pipeline)
        # The traffic the pipeline's training batches came from (datagen.write_batch's generator).
        if config.name == "churn":
            frame = datagen.churn_batch(20_000, day=3, seed=100 + client_number)
        else:
            frame = schema_batch(config, 20_000, day=3, seed=100 + client_number)
        records = json_records(config, frame)
        folder = labels_dir(config)
        folder.mkdir(parents=True, exist_ok=True)
        pending: list[pd.DataFrame] = []
        start = 0
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                end = start + self.batch
                ids = [f"c{client_number}-{i}" for i in range(start, end)]
                try:
                    response = http.post(
                        f"/v1/models/{self.pipeline}/predict",
                        json={"records": records[start:end], "ids": ids},
                    )
                    version = str(response.json().get("version"))
                    self.outcomes.append((response.status_code, version))
                    self.answers[client_number].append(version)
                except httpx.HTTPError as exc:
                    self.outcomes.append((0, type(exc).__name__))
                    continue
                if self.label:
                    pending.append(frame.iloc[start:end][[config.target]].assign(prediction_id=ids))
                if len(pending) >= 10:  # labels arrive in files of a few hundred, as a label job writes them
                    temporary = folder / f".c{client_number}-{start}.csv"
                    pd.concat(pending).to_csv(temporary, index=False)
                    temporary.rename(folder / f"c{client_number}-{start}.csv")
                    pending = []
                start = end % 19_000
                if self.pause:
                    self._stop.wait(self.pause)
