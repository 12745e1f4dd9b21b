"""MkDocs hook: pages generated at build time from the repository, so they cannot drift.

* ``<!-- config-reference -->`` becomes a reference of every pipeline config key, rendered from
  the pydantic models reachable from ``include.ct.config.PipelineConfig`` (public pydantic v2 API
  only: ``model_fields`` and ``FieldInfo``).
* ``<!-- bench-report -->`` becomes ``bench/report.md``, its headings one level down and its links
  to files outside ``docs/`` turned into plain text; ``<!-- bench-date -->`` becomes its date.

Nothing here touches the network.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.config_reference")

CONFIG_MARKER = "<!-- config-reference -->"
BENCH_MARKER = "<!-- bench-report -->"
BENCH_DATE_MARKER = "<!-- bench-date -->"

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
_CONSTRAINTS = {
    "gt": "> {}",
    "ge": "≥ {}",
    "lt": "< {}",
    "le": "≤ {}",
    "multiple_of": "multiple of {}",
    "min_length": "at least {} long",
    "max_length": "at most {} long",
    "pattern": "matches `{}`",
}


def _root(config: MkDocsConfig) -> Path:
    """The repository root: the directory holding mkdocs.yml."""
    return Path(config.config_file_path).resolve().parent


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    root = str(_root(config))
    if root not in sys.path:
        sys.path.insert(0, root)  # so that ``include.ct.config`` imports as in the DAGs
    return config


# --- the config reference -------------------------------------------------------------------


def _anchor(path: str) -> str:
    return "config-" + (re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "top-level")


def _constraints(metadata: list[Any]) -> list[str]:
    """``ge``/``gt``/``le``/``lt``/lengths of annotated-types metadata, as readable text."""
    found = []
    for item in metadata:
        for attr, text in _CONSTRAINTS.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(text.format(value))
    return found


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_text(annotation: Any, path: str) -> str:
    """A type as readers of YAML think of it; nested models link to their own table."""
    origin, args = get_origin(annotation), get_args(annotation)
    if _is_model(annotation):
        return f"[{annotation.__name__}](#{_anchor(path)})"
    if origin is None and annotation in _SCALARS:
        return _SCALARS[annotation]
    if annotation is Any:
        return "any"
    if origin is Literal:
        return "one of " + ", ".join(
            f"`{value if isinstance(value, str) else json.dumps(value)}`" for value in args
        )
    if origin is Annotated:
        inner = _type_text(args[0], path)
        limits = [
            text for info in args[1:] if isinstance(info, FieldInfo) for text in _constraints(info.metadata)
        ]
        return f"{inner} ({', '.join(limits)})" if limits else inner
    if origin in (Union, types.UnionType):
        parts = [_type_text(arg, path) for arg in args]
        return " or ".join(parts)
    if origin is list:
        item = _type_text(args[0], path + "[]") if args else "any"
        return f"list of ({item})" if " or " in item or item.startswith("one of") else f"list of {item}"
    if origin is dict:
        value = _type_text(args[1], path + ".<name>") if args else "any"
        return f"mapping of names to {value}"
    return f"`{annotation}`"


def _nested(annotation: Any, path: str) -> list[tuple[str, type[BaseModel]]]:
    """Models inside ``annotation`` with the key path their keys live under."""
    origin, args = get_origin(annotation), get_args(annotation)
    if _is_model(annotation):
        return [(path, annotation)]
    if origin is list and args:
        return _nested(args[0], path + "[]")
    if origin is dict and args:
        return _nested(args[1], path + ".<name>")
    if origin in (Union, types.UnionType, Annotated):
        return [found for arg in args for found in _nested(arg, path)]
    return []


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "its keys' defaults"
    return f"`{json.dumps(value, default=str)}`"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _model_table(model: type[BaseModel], path: str) -> tuple[list[str], list[tuple[str, type[BaseModel]]]]:
    """The markdown table of one model's keys, and the models nested in it."""
    title = f"`{path}`" if path else "Top level"
    lines = [
        f"### {title} {{#{_anchor(path)}}}",
        "",
        _cell(model.__doc__) + f" (`{model.__name__}`)",
        "",
        "| key | type | default | constraints | description |",
        "|---|---|---|---|---|",
    ]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        constraints = ", ".join(_constraints(field.metadata))
        lines.append(
            f"| `{key}` | {_cell(_type_text(field.annotation, key))} | {_default_text(field)} "
            f"| {_cell(constraints)} | {_cell(field.description)} |"
        )
        nested.extend(_nested(field.annotation, key))
    return lines, nested


def config_reference() -> str:
    """Every model reachable from ``PipelineConfig``, breadth first, one table each."""
    from include.ct.config import PipelineConfig

    queue: list[tuple[str, type[BaseModel]]] = [("", PipelineConfig)]
    seen: set[str] = set()
    out: list[str] = []
    while queue:
        path, model = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        lines, nested = _model_table(model, path)
        out.extend([*lines, ""])
        queue.extend(nested)
    return "\n".join(out)


# --- the benchmark report -------------------------------------------------------------------

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _plain_link(match: re.Match[str]) -> str:
    """A link to a repository file outside docs/ as text; web links and anchors stay."""
    image, text, target = match.groups()
    if re.match(r"[a-z][a-z0-9+.-]*:|#", target):
        return match.group(0)
    if image:
        return f"({text or 'figure'}: `{target}`)"
    return text if target in text else f"{text} (`{target}`)"


def bench_report(root: Path) -> tuple[str, str]:
    """``bench/report.md`` ready to sit under a page title, and the date it was measured."""
    report = root / "bench" / "report.md"
    if not report.is_file():
        log.warning("%s not found: the benchmarks page has no figures", report)
        return "*`bench/report.md` is missing: run `make bench`.*", "unknown date"
    lines: list[str] = []
    fenced = False
    for line in report.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            lines.append(line)
        elif fenced:
            lines.append(line)
        else:  # one level down under the page's own title; repository links as text
            lines.append("#" + line if line.startswith("#") else _LINK.sub(_plain_link, line))
    text = "\n".join(lines)
    date = re.search(r"Results measured on:\s*([0-9]{4}-[0-9]{2}-[0-9]{2})", text)
    return text, date.group(1) if date else "unknown date"


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, config_reference())
    if BENCH_MARKER in markdown or BENCH_DATE_MARKER in markdown:
        report, date = bench_report(_root(config))
        markdown = markdown.replace(BENCH_MARKER, report).replace(BENCH_DATE_MARKER, date)
    return markdown
