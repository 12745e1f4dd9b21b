"""The request contract: one pydantic model per pipeline's input record, and its OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from include.ct.config import FeatureSpec, PipelineConfig


def _feature_annotation(spec: FeatureSpec) -> Any:
    python_type: Any
    if spec.type == "integer":
        python_type = Annotated[int, Field(strict=True, ge=spec.min, le=spec.max)]
    elif spec.type == "float":
        python_type = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=spec.min, le=spec.max)]
    elif spec.type == "boolean":
        python_type = Annotated[bool, Field(strict=True)]
    else:
        python_type = Literal[tuple(spec.values or ())]
    return python_type | None if spec.nullable else python_type


def record_model(config: PipelineConfig) -> type[BaseModel]:
    """A pydantic model of one input record: every feature required, nothing else allowed."""
    fields: dict[str, Any] = {
        name: (_feature_annotation(spec), Field(..., description=spec.description))
        for name, spec in config.features.items()
    }
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{config.name.title()}Record",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        **fields,
    )
    return model


def request_json_schema(config: PipelineConfig, max_batch: int) -> dict[str, Any]:
    """OpenAPI schema of a predict request, inlined so fuzzers and clients see every rule."""
    record = record_model(config).model_json_schema()
    record.pop("title", None)
    return {
        "type": "object",
        "required": ["records"],
        "additionalProperties": False,
        "properties": {
            "records": {"type": "array", "items": record, "minItems": 1, "maxItems": max_batch},
            "ids": {
                "type": "array",
                "items": {"type": "string", "maxLength": 200},
                "description": "optional caller ids, one per record, kept in the prediction log "
                "so late labels can be joined to predictions",
            },
        },
    }
