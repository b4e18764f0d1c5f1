"""Azure OpenAI: OpenAI's chat completions behind deployment URLs, an `api-version` query
parameter and an `api-key` header.

    - name: gpt-4o-azure
      provider: azure
      model: gpt-4o                       # the model, for pricing
      base_url: https://my-resource.openai.azure.com
      api_key_env: AZURE_OPENAI_API_KEY
      options: {deployment: my-gpt-4o, api_version: "2024-10-21"}

`api_version: v1` uses Azure's version-less v1 API (`/openai/v1/...`, the model named in
the body) instead of a deployment URL. Bodies, streams and usage are OpenAI's, so
everything else is the OpenAI provider's.
"""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from thrifty.config import ModelConfig
from thrifty.errors import ConfigError
from thrifty.providers.openai import OpenAIProvider

__all__ = ["AzureOpenAIProvider", "AzureOptions", "azure_request"]


class AzureOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The deployment name (default: the model's `model`, else its `name`).
    deployment: str | None = None
    api_version: str = "2024-10-21"


def azure_request(cfg: ModelConfig, path: str) -> tuple[str, dict[str, str], bool]:
    """The URL and headers of an Azure OpenAI call to `path` (chat/completions, embeddings,
    completions), and whether the body must name the model (the v1 API)."""
    options = AzureOptions.model_validate(cfg.options)
    if not cfg.base_url:
        raise ConfigError(f"model {cfg.name!r}: provider azure needs base_url (https://<resource>.openai.azure.com)")
    base = cfg.base_url.rstrip("/")
    headers = {"Content-Type": "application/json", **cfg.headers}
    key = cfg.api_key()
    if key:
        headers["api-key"] = key
    if options.api_version == "v1":
        return f"{base}/openai/v1/{path}", headers, True
    deployment = quote(options.deployment or cfg.upstream_model, safe="")
    return f"{base}/openai/deployments/{deployment}/{path}?api-version={quote(options.api_version)}", headers, False


class AzureOpenAIProvider(OpenAIProvider):
    Options = AzureOptions

    @property
    def url(self) -> str:
        return azure_request(self.config, "chat/completions")[0]

    def _headers(self, key: str | None) -> dict[str, str]:
        return azure_request(self.config, "chat/completions")[1]

    def speaks_responses(self) -> bool:
        return False  # Azure's Responses API is not wired up: /v1/responses is translated to chat
