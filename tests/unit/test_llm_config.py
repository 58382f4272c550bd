"""Routes and limits come from AOB_MODEL_* variables; a mistake names the variable and the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aob.errors import ConfigurationError, UnknownModelTier
from aob.llm import ModelRoutes, load_model_settings

ROUTES: dict[str, Any] = {
    "providers": [
        {"name": "local", "kind": "vllm", "base_url": "http://127.0.0.1:8008/v1/"},
        {
            "name": "hosted",
            "kind": "openai_compatible",
            "base_url": "https://api.example.com/v1",
            "api_key_ref": "ssm:/aob/hosted-key",
            "timeout_s": 60,
        },
    ],
    "tiers": {
        "small": {
            "targets": [{"provider": "local", "model": "aob-tiny"}, {"provider": "hosted", "model": "mini"}]
        },
        "large": {"targets": [{"provider": "hosted", "model": "big"}], "max_prompt_chars": 400000},
    },
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("AOB_MODEL_ROUTES", "AOB_MODEL_BREAKER_FAILURES", "AOB_MODEL_MAX_PROMPT_CHARS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _with(routes: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOB_MODEL_ROUTES", json.dumps(routes))


def test_routes_and_limits_are_read_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    _with(ROUTES, clean_env)
    clean_env.setenv("AOB_MODEL_BREAKER_FAILURES", "5")

    settings = load_model_settings()

    assert [t.provider for t in settings.routes.tier("small").targets] == ["local", "hosted"]
    assert settings.routes.tier("large").max_prompt_chars == 400000
    local, hosted = settings.routes.providers
    assert local.base_url == "http://127.0.0.1:8008/v1" and local.server_root == "http://127.0.0.1:8008"
    assert (hosted.api_key_ref, hosted.timeout_s) == ("ssm:/aob/hosted-key", 60)
    assert settings.breaker_failures == 5


def test_an_unknown_tier_lists_the_configured_ones() -> None:
    routes = ModelRoutes.model_validate(ROUTES)

    with pytest.raises(UnknownModelTier, match=r"no model tier 'medium'; configured tiers: large, small"):
        routes.tier("medium")


def test_without_routes_every_tier_is_unknown_and_says_what_to_set() -> None:
    with pytest.raises(UnknownModelTier, match="configured tiers: none: set AOB_MODEL_ROUTES"):
        load_model_settings().routes.tier("small")


def test_a_tier_routed_to_an_undefined_provider_is_a_configuration_error(
    clean_env: pytest.MonkeyPatch,
) -> None:
    routes = ROUTES | {"tiers": {"small": {"targets": [{"provider": "elsewhere", "model": "m"}]}}}
    _with(routes, clean_env)

    with pytest.raises(ConfigurationError, match="AOB_MODEL_ROUTES: tier small routes to undefined provider"):
        load_model_settings()


def test_duplicate_provider_names_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    _with(ROUTES | {"providers": ROUTES["providers"] + ROUTES["providers"][:1]}, clean_env)

    with pytest.raises(ConfigurationError, match="provider names must be unique: local"):
        load_model_settings()


def test_a_bad_base_url_names_the_field(clean_env: pytest.MonkeyPatch) -> None:
    providers = [{"name": "local", "kind": "vllm", "base_url": "127.0.0.1:8008"}]
    _with({"providers": providers, "tiers": {}}, clean_env)

    with pytest.raises(
        ConfigurationError, match=r"AOB_MODEL_ROUTES\.providers\.0\.base_url: must be an http"
    ):
        load_model_settings()


def test_routes_that_are_not_json_say_so(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AOB_MODEL_ROUTES", "{providers: []")

    with pytest.raises(ConfigurationError, match="AOB_MODEL_ROUTES is JSON"):
        load_model_settings()
