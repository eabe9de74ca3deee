"""The composition root's model wiring: LiteLLM only when a remote model is configured."""

from __future__ import annotations

from taskpilot.inference.settings import InferenceSettings, ModelsConfig
from taskpilot.runtime.testing import python


def test_the_embedded_default_never_imports_litellm() -> None:
    code = (
        "import sys\n"
        "from taskpilot.inference import app\n"
        "from taskpilot.inference.settings import InferenceSettings\n"
        "assert app.build_model(InferenceSettings().models_config()) is None\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )
    done = python("-c", code)

    assert done.returncode == 0, done.stderr


def test_models_come_from_json_in_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(
        "TASKPILOT_INFERENCE_MODELS",
        '{"deployments": [{"tier": "L3", "model": "openai/gpt-4o", "api_key_env": "K"}]}',
    )

    config = InferenceSettings().models_config()

    assert config.remote and config.deployments[0].group_name == "L3"
    assert config.tier_of_groups() == {"L3": "L3"}

    path = tmp_path / "models.json"
    path.write_text('{"deployments": [], "num_retries": 0}')
    monkeypatch.setenv("TASKPILOT_INFERENCE_MODELS_FILE", str(path))
    assert InferenceSettings().models_config() == ModelsConfig(num_retries=0)


def test_a_group_cannot_mix_tiers() -> None:
    import pytest

    with pytest.raises(ValueError, match="mixes tiers"):
        ModelsConfig.model_validate(
            {
                "deployments": [
                    {"tier": "L2", "group": "g", "model": "a"},
                    {"tier": "L3", "group": "g", "model": "b"},
                ]
            }
        )
