"""Pipeline config loading: valid configs load, each kind of mistake names file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from include.ct.config import (
    BUNDLED_PIPELINES_DIR,
    ConfigError,
    effective_pipeline_configs,
    find_pipeline_config,
    load_pipeline_config,
    metric_higher_is_better,
    parse_yaml,
    pipeline_config_paths,
    pipeline_configs,
)

CHURN = BUNDLED_PIPELINES_DIR / "churn.yaml"


def write(tmp_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(CHURN.read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_bundled_churn_config_loads() -> None:
    config = load_pipeline_config(CHURN)
    assert config.dag_id == "ct_churn"
    assert config.registered_model_name == "churn"
    assert config.task == "classification"
    assert config.metric == "roc_auc"
    assert config.features["plan"].values == ["basic", "plus", "premium"]
    assert config.features["monthly_fee"].nullable
    assert config.slices == ["plan", "contract"]


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"metric": "auc"}, "metric", "got 'auc'"),
        ({"target": None}, "target", "required"),
        ({"features": {"a": {"type": "text"}}}, "features.a.type", "got 'text'"),
        ({"metric": "rmse"}, "metric", "does not fit a classification task"),
        ({"slices": ["tenure_months"]}, "slices", "must be a category"),
        ({"schedul": "@daily"}, "schedul", "unknown key"),
        ({"features": {"plan": {"type": "category"}}}, "features.plan", "allowed 'values'"),
        ({"promotion": {"threshold": "high"}}, "promotion.threshold", "got 'high'"),
        ({"deploy": {"strategy": "blue_green"}}, "deploy.strategy", "got 'blue_green'"),
        ({"deploy": {"canary_steps": [0.5, 0.25]}}, "deploy.canary_steps", "steps must increase"),
        ({"deploy": {"canary_steps": [0.05, 1.0]}}, "deploy.canary_steps", "between 0 and 1"),
        ({"deploy": {"shadow_share": 0}}, "deploy.shadow_share", "greater than 0"),
        ({"deploy": {"online": {"min_label": 5}}}, "deploy.online.min_label", "unknown key"),
    ],
)
def test_invalid_config_names_file_and_key(
    tmp_path: Path, changes: dict[str, object], key: str, words: str
) -> None:
    path = write(tmp_path, **changes)
    with pytest.raises(ConfigError) as caught:
        load_pipeline_config(path)
    assert caught.value.key == key
    assert str(path) in str(caught.value)
    assert words in str(caught.value)


def test_yaml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: churn\nfeatures: [a, b\ntarget: churned\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_pipeline_config(path)
    assert "features: [a, b" in str(caught.value)  # the message quotes the offending line


def test_configs_read_the_same_through_libyaml() -> None:
    tricky = "a: on\nb: 1e3\nc: 0o17\nd: 2026-11-28\ne: ~\nf: '007'\ng: [1, {h: no}]\n"
    texts = [tricky, *(path.read_text() for path in pipeline_config_paths())]
    for text in texts:
        assert parse_yaml(text) == yaml.safe_load(text)


def test_pipelines_dir_adds_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = write(tmp_path, name="other")
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    assert pipeline_config_paths() == [CHURN, extra]


def test_a_config_in_the_pipelines_dir_replaces_the_bundled_one_and_a_broken_one_leaves_its_name_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    write(tmp_path, owner="churn-team").rename(tmp_path / "churn.yaml")
    assert [path for path, _ in effective_pipeline_configs()] == [tmp_path / "churn.yaml"]
    assert pipeline_configs()["churn"].owner == "churn-team"
    assert find_pipeline_config("churn").owner == "churn-team"
    (tmp_path / "churn.yaml").write_text("name: churn\nmetric: [broken\n")
    assert "churn" not in pipeline_configs()  # not the bundled churn in its place
    ((path, error),) = effective_pipeline_configs()
    assert path == tmp_path / "churn.yaml" and isinstance(error, ConfigError)
    with pytest.raises(ConfigError):
        find_pipeline_config("churn")


def test_metric_directions() -> None:
    assert metric_higher_is_better("roc_auc")
    assert metric_higher_is_better("r2")
    assert not metric_higher_is_better("rmse")
    assert not metric_higher_is_better("log_loss")
