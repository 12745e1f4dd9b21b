"""Data Docs: the GX site of each data version, one result page per validated batch.

GX renders a batch's result, the suite and an index into the site its validation report links
to. Two of GX's costs per batch are avoided here: parsing every template for every page (views
share their Jinja environments), and copying its static assets (4 MB of fonts, images and styles)
into every site on every build (sites link to one copy).
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.store.tuple_store_backend import TupleFilesystemStoreBackend
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.render.view import view
from jinja2 import FileSystemBytecodeCache

log = logging.getLogger(__name__)

SITE_NAME = "ct"  # the site each data version's validation report links to
STATIC_KEY = "static"  # first part of the store keys GX gives a site's static assets


class LinkedStaticAssetsBackend(TupleFilesystemStoreBackend):  # type: ignore[misc]
    """A site's file store whose static assets are hard links to one shared copy.

    GX writes its static assets into a site on every build: 10-20 ms a batch on the bench's host,
    and 4 MB on disk for every data version. With ``shared_static_directory`` the first build
    writes each asset there once and every site gets a hard link to it: a site stays a folder of
    plain files (served, archived or copied like any other) and costs no extra space. Where a
    link cannot be made (another file system), the asset is written as GX writes it.
    """

    def __init__(self, *args: Any, shared_static_directory: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_static_directory = shared_static_directory

    def _set(self, key: Any, value: Any, **kwargs: Any) -> str:
        key = key if isinstance(key, tuple) else key.to_tuple()
        if self.shared_static_directory is None or key[:1] != (STATIC_KEY,):
            return super()._set(key, value, **kwargs)  # type: ignore[no-any-return]
        content = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        shared = Path(self.shared_static_directory, *key[1:])
        target = Path(self.full_base_directory, self._convert_key_to_filepath(key))
        try:
            if not shared.is_file() or shared.stat().st_size != len(content):
                _write_atomically(shared, content)
            _link_atomically(shared, target)
        except OSError as exc:
            log.debug("Data Docs asset %s written, not linked: %s", target, exc)
            return super()._set(key, value, **kwargs)  # type: ignore[no-any-return]
        return str(target)


def _write_atomically(path: Path, content: bytes) -> None:
    """Write ``path`` whole or not at all: other tasks may link to it at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_bytes(content)
    os.replace(partial, path)


def _link_atomically(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source``, replacing what is there (a rebuilt site)."""
    if target.exists() and os.path.samefile(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    os.link(source, partial)
    os.replace(partial, target)


def add_site(context: Any, docs_dir: Path, shared_static_dir: Path | None = None) -> None:
    """Give ``context`` the Data Docs site in ``docs_dir``, its static assets linked when possible.

    ``shared_static_dir`` holds one copy of GX's assets per GX version, shared by every site
    built with it; without it each site gets its own copy, as GX makes.
    """
    share_templates()
    shared = str(shared_static_dir / gx.__version__) if shared_static_dir is not None else None
    context.add_data_docs_site(
        site_name=SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "module_name": __name__,
                "class_name": LinkedStaticAssetsBackend.__name__,
                "base_directory": str(docs_dir),
                "shared_static_directory": shared,
            },
        },
    )


def share_templates() -> None:
    """GX 1.x recompiles every Data Docs template for every page (~0.3 s a batch): compile once.

    Each GX view builds a fresh Jinja environment, which parses every template it renders. Views
    of one class (and custom directories) now share the first one's environment, whose loaded
    templates stay in memory for the process: their filters are the view's methods, which read
    nothing but those directories. That environment also gets Jinja's file-system bytecode cache
    (a private per-user directory, keyed by template source), so every later task process loads
    the compiled templates instead of parsing them.
    """
    if hasattr(view.DefaultJinjaView, "ct_environments"):
        return
    cache: FileSystemBytecodeCache | None
    try:
        cache = FileSystemBytecodeCache()
    except (OSError, RuntimeError) as exc:  # no private temp dir: compile once per process
        log.warning("Data Docs templates are compiled in every process: no bytecode cache (%s)", exc)
        cache = None
    environments: dict[tuple[Any, ...], Any] = {}
    original = view.DefaultJinjaView.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        key = (type(self), self.custom_styles_directory, self.custom_views_directory)
        if key in environments:
            self.env = environments[key]
        else:
            self.env.bytecode_cache = cache
            environments[key] = self.env

    view.DefaultJinjaView.__init__ = init  # type: ignore[method-assign]
    view.DefaultJinjaView.ct_environments = environments  # type: ignore[attr-defined]


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
