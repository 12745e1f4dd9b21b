"""What housekeeping never removes: the champion, its rollback target, a staged challenger and
the data they were trained on."""

from __future__ import annotations

from dataclasses import dataclass, field

from include.ct.config import PipelineConfig
from include.ct.registry import registry

TRAINING_VERSIONS_TAG = f"{registry.TAG_PREFIX}training_versions"
TRAINING_DATA_VERSION_TAG = f"{registry.TAG_PREFIX}training_data_version"
PREVIOUS_CHAMPION_TAG = f"{registry.TAG_PREFIX}previous_champion"


@dataclass
class Protected:
    """Model versions kept whatever their age, and the snapshots and splits in their lineage."""

    versions: dict[str, str] = field(default_factory=dict)  # version -> why it stays
    snapshots: set[str] = field(default_factory=set)
    training_data_versions: set[str] = field(default_factory=set)


def protected_lineage(config: PipelineConfig) -> Protected:
    """Read from the registry (errors propagate: without it, nothing may be removed)."""
    from include.ct.registry.staging import staged_challenger

    client = registry.client()
    name = config.registered_model_name
    protected = Protected()
    champion = registry.champion_version_strict(config)
    if champion is not None:
        protected.versions[champion] = "the champion"
        previous = client.get_model_version(name, champion).tags.get(PREVIOUS_CHAMPION_TAG) or ""
        if previous:
            protected.versions.setdefault(previous, "the champion's rollback target")
    staged = staged_challenger(config)
    if staged is not None:
        protected.versions.setdefault(staged.version, f"the staged challenger ({staged.strategy})")
    for version in protected.versions:
        model_version = client.get_model_version(name, version)
        data_version = model_version.tags.get(TRAINING_DATA_VERSION_TAG)
        if data_version:
            protected.training_data_versions.add(data_version)
        if model_version.run_id:
            tags = client.get_run(model_version.run_id).data.tags
            protected.snapshots.update(filter(None, (tags.get(TRAINING_VERSIONS_TAG) or "").split(",")))
    return protected
