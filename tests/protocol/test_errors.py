"""Error bodies in each protocol's shape: the SDKs raise the right exception with our message."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import ErrorResponse

from thrifty.protocol.errors import (
    anthropic_error,
    anthropic_error_to_openai,
    error_message,
    openai_error,
    openai_error_to_anthropic,
    status_of_anthropic_error,
)

from .conftest import Upstream


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_error_type_follows_status(status: int, kind: str) -> None:
    body = anthropic_error(status, "boom")
    assert body == {"type": "error", "error": {"type": kind, "message": "boom"}}
    if kind != "request_too_large":  # documented for 413, but absent from the SDK's union
        assert ErrorResponse.model_validate(body).error.type == kind


def test_status_of_anthropic_error_types() -> None:
    assert status_of_anthropic_error("overloaded_error") == 529
    assert status_of_anthropic_error("rate_limit_error") == 429
    assert status_of_anthropic_error(None) == 500


def test_openai_error_shape() -> None:
    assert openai_error(400, "messages is required", "invalid_request_error", param="messages") == {
        "error": {
            "message": "messages is required",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }
    assert openai_error(503, "down")["error"]["type"] == "server_error"
    assert (
        openai_error(429, "slow down", code="rate_limit_exceeded")["error"]["code"] == "rate_limit_exceeded"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}},
            "model: claude-x",
        ),
        ({"error": {"message": "Invalid API key", "type": "invalid_request_error"}}, "Invalid API key"),
        ({"error": "Bad gateway"}, "Bad gateway"),
        ({"detail": "Not Found"}, "Not Found"),
        (b'{"message": "busy"}', "busy"),
        (b"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
        ("", "upstream error"),
        (None, "upstream error"),
        ([1, 2], "upstream error"),
    ],
)
def test_error_message_from_any_upstream_body(body: Any, message: str) -> None:
    assert error_message(body) == message


def test_converters() -> None:
    upstream = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert anthropic_error_to_openai(529, upstream) == {
        "error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded_error"}
    }
    upstream2 = {
        "error": {
            "message": "Rate limit reached for gpt-4o",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    assert openai_error_to_anthropic(429, upstream2) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-4o"},
    }


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (404, "NotFoundError"),
        (429, "RateLimitError"),
        (529, "InternalServerError"),
    ],
)
async def test_sdks_raise_the_matching_exception(upstream: Upstream, status: int, exception: str) -> None:
    upstream.status = status
    upstream.body = anthropic_error(status, "model: nope does not exist")
    a = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="test", max_retries=0)
    with pytest.raises(getattr(anthropic, exception)) as caught:
        await a.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "?"}])
    await a.close()
    assert "model: nope does not exist" in str(caught.value)

    upstream.body = anthropic_error_to_openai(status, upstream.body)
    o = openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="test", max_retries=0)
    with pytest.raises(getattr(openai, exception)) as caught2:
        await o.chat.completions.create(model="nope", messages=[{"role": "user", "content": "?"}])
    await o.close()
    assert caught2.value.message.endswith(
        "model: nope does not exist"
    ) or "model: nope does not exist" in str(caught2.value)
