"""Pipeline config loading: valid configs load, each kind of mistake names file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from include.ct.config import (
    BUNDLED_PIPELINES_DIR,
    ConfigError,
    PipelineConfig,
    effective_pipeline_configs,
    find_pipeline_config,
    load_pipeline_config,
    metric_higher_is_better,
    parse_yaml,
    pipeline_config_paths,
    pipeline_configs,
    pipeline_name,
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


def test_a_broken_override_named_after_another_file_still_replaces_the_pipeline_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    override = write(tmp_path, metric="auc").rename(tmp_path / "churn_for_team_b.yaml")
    ((path, error),) = effective_pipeline_configs()
    assert path == override and isinstance(error, ConfigError)
    assert error.pipeline == "churn" and pipeline_name(path, error) == "churn"
    with pytest.raises(ConfigError, match="got 'auc'"):
        find_pipeline_config("churn")
    # a file too broken to declare a usable name stands for its file name
    (tmp_path / "churn_for_team_b.yaml").write_text("name: Churn B\n")
    ((path, error),) = [(p, e) for p, e in effective_pipeline_configs() if p.parent == tmp_path]
    assert isinstance(error, ConfigError) and pipeline_name(path, error) == "churn_for_team_b"
    assert pipeline_configs()["churn"].owner == load_pipeline_config(CHURN).owner


def test_two_files_of_one_folder_naming_the_same_pipeline_are_an_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    first = write(tmp_path, name="other", owner="team-a").rename(tmp_path / "a.yaml")
    second = write(tmp_path, name="other", owner="team-b").rename(tmp_path / "b.yaml")
    assert "other" not in pipeline_configs()  # neither is picked silently
    ((path, error),) = [(p, e) for p, e in effective_pipeline_configs() if p.parent == tmp_path]
    assert path == second and isinstance(error, ConfigError) and error.key == "name"
    assert str(first) in str(error) and str(second) in str(error)
    with pytest.raises(ConfigError, match="already the name of"):
        find_pipeline_config("other")
    # across folders the same name is an override, not a clash
    first.unlink()
    second.unlink()
    write(tmp_path, owner="team-a").rename(tmp_path / "a.yaml")
    assert pipeline_configs()["churn"].owner == "team-a"


def test_the_bundled_folder_named_as_the_pipelines_dir_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_PIPELINES_DIR", str(BUNDLED_PIPELINES_DIR))
    assert pipeline_config_paths() == sorted(BUNDLED_PIPELINES_DIR.glob("*.yaml"))
    assert isinstance(pipeline_configs()["churn"], PipelineConfig)  # not clashing with itself


def test_metric_directions() -> None:
    assert metric_higher_is_better("roc_auc")
    assert metric_higher_is_better("r2")
    assert not metric_higher_is_better("rmse")
    assert not metric_higher_is_better("log_loss")
