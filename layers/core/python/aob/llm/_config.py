"""The gateway's configuration: providers, tiers (ordered routes) and limits, from `AOB_MODEL_*`.

AOB_MODEL_ROUTES is JSON:

    {"providers": [
       {"name": "local", "kind": "vllm", "base_url": "http://10.0.0.5:8000/v1", "timeout_s": 30},
       {"name": "hosted", "kind": "openai_compatible", "base_url": "https://api.example.com/v1",
        "api_key_ref": "arn:aws:secretsmanager:us-east-1:123456789012:secret:aob/hosted-key",
        "timeout_s": 60}],
     "tiers": {
       "small": {"targets": [{"provider": "local", "model": "aob-tiny"},
                             {"provider": "hosted", "model": "gpt-4o-mini"}]},
       "large": {"targets": [{"provider": "hosted", "model": "gpt-4o"}], "max_prompt_chars": 400000}}}

`api_key_ref` is `ssm:/parameter/name` (SSM SecureString) or a Secrets Manager secret ARN or name;
the key itself never appears in configuration. The other `AOB_MODEL_*` variables are the fields
of ModelGatewaySettings below (e.g. AOB_MODEL_BREAKER_FAILURES=3).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from aob.errors import ConfigurationError, UnknownModelTier

ENV_PREFIX = "AOB_MODEL_"

ProviderName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="e.g. local-vllm")]
TierName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@/+|-]{1,200}$", description="e.g. small")]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Config):
    """An OpenAI-compatible endpoint; `vllm` ones are also probed on /health and /version."""

    name: ProviderName
    kind: Literal["vllm", "openai_compatible"]
    base_url: str = Field(description="the OpenAI API root, e.g. http://127.0.0.1:8008/v1")
    api_key_ref: str | None = Field(default=None, description="ssm:/name, or a Secrets Manager ARN or name")
    timeout_s: float = Field(default=30.0, gt=0, description="a whole call, before the next provider")
    connect_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be an http(s):// URL of the OpenAI API root, e.g. http://127.0.0.1:8008/v1"
            )
        return value.rstrip("/")

    @property
    def server_root(self) -> str:
        """Where vLLM serves /health and /version: the base URL without its `/v1`."""
        return self.base_url.removesuffix("/v1")


class Target(_Config):
    provider: ProviderName
    model: str = Field(min_length=1, max_length=200)


class TierConfig(_Config):
    targets: list[Target] = Field(min_length=1, description="tried in order until one answers")
    max_prompt_chars: int | None = Field(default=None, ge=1, description="default AOB_MODEL_MAX_PROMPT_CHARS")


class ModelRoutes(_Config):
    providers: list[ProviderConfig] = []
    tiers: dict[TierName, TierConfig] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [provider.name for provider in self.providers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"provider names must be unique: {', '.join(duplicates)}")
        for tier, config in self.tiers.items():
            unknown = sorted({t.provider for t in config.targets} - set(names))
            if unknown:
                raise ValueError(f"tier {tier} routes to undefined provider(s) {', '.join(unknown)}")
        return self

    def tier(self, name: str) -> TierConfig:
        """The tier's routes; UnknownModelTier (listing the configured tiers) if it has none."""
        config = self.tiers.get(name)
        if config is None:
            known = ", ".join(sorted(self.tiers)) or f"none: set {ENV_PREFIX}ROUTES"
            raise UnknownModelTier(f"tier: no model tier {name!r}; configured tiers: {known}")
        return config


class ModelGatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True)

    routes: ModelRoutes = ModelRoutes()
    default_max_tokens: int = Field(default=512, ge=1, description="when a request sets no max_tokens")
    max_prompt_chars: int = Field(default=100_000, ge=1, description="JSON of messages + tools, per call")
    breaker_failures: int = Field(default=3, ge=1, description="failures within the window that open it")
    breaker_window_s: float = Field(default=60.0, gt=0)
    breaker_cooldown_s: float = Field(default=30.0, gt=0, description="open this long, then one trial")
    readiness_ttl_s: float = Field(default=180.0, gt=0, description="a probe's record counts this long")
    probe_timeout_s: float = Field(default=2.0, gt=0)
    secret_ttl_s: float = Field(default=900.0, ge=0, description="API keys are re-read after this long")


def load_model_settings() -> ModelGatewaySettings:
    """Settings from the environment; a bad value raises ConfigurationError naming the variable."""
    try:
        return ModelGatewaySettings()
    except SettingsError as exc:  # a JSON variable that does not parse
        raise ConfigurationError(
            f"invalid model gateway settings: {exc} ({ENV_PREFIX}ROUTES is JSON)"
        ) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{str(e['loc'][0]).upper()}"
            + "".join(f".{p}" for p in e["loc"][1:])
            + f": {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid model gateway settings: {problems}") from exc
