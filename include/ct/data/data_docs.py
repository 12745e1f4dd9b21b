"""Data Docs: the GX site of each data version, one result page per validated batch.

GX renders a batch's result, the suite and an index into the site its validation report links
to, through its documented site configuration (SiteBuilder on a file store).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

SITE_NAME = "ct"  # the site each data version's validation report links to


def add_site(context: Any, docs_dir: Path) -> None:
    """Give ``context`` the Data Docs site in ``docs_dir`` (GX's file store and index builder)."""
    context.add_data_docs_site(
        site_name=SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        },
    )


def render(context: Any, results: list[Any]) -> None:
    """Store batches' results and build their pages, the suite's and the index in one go.

    As GX's UpdateDataDocsAction does for a checkpoint's results; the batches share one run.
    """
    run_id = RunIdentifier(run_time=datetime.now(UTC))
    keys: list[Any] = []
    for result in results:
        result.meta["run_id"] = run_id  # what a ValidationDefinition records, shown on the page
        result.meta["validation_time"] = run_id.run_time
        suite = ExpectationSuiteIdentifier(name=result.suite_name)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=suite, run_id=run_id, batch_identifier=result.batch_id
        )
        context.validation_results_store.set(key, result)
        keys += [key, suite]
    context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=list(dict.fromkeys(keys)))
