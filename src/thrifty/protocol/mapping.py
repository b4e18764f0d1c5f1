"""What corresponds to what between the two protocols: stop reasons and message ids."""

from __future__ import annotations

STOP_TO_OPENAI = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
FINISH_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason_for(stop_reason: str | None) -> str | None:
    """The OpenAI `finish_reason` for an Anthropic `stop_reason` (None stays None)."""
    return STOP_TO_OPENAI.get(stop_reason, "stop") if stop_reason else None


def stop_reason_for(finish_reason: str | None) -> str | None:
    """The Anthropic `stop_reason` for an OpenAI `finish_reason` (None stays None)."""
    return FINISH_TO_ANTHROPIC.get(finish_reason, "end_turn") if finish_reason else None


def anthropic_id(openai_id: str) -> str:
    """A `msg_` id for an OpenAI completion id (kept when it already is one)."""
    if openai_id.startswith("msg_"):
        return openai_id
    return "msg_" + openai_id.removeprefix("chatcmpl-")


def openai_id(anthropic_id: str) -> str:
    """A `chatcmpl-` id for an Anthropic message id (kept when it already is one)."""
    if anthropic_id.startswith("chatcmpl-"):
        return anthropic_id
    return "chatcmpl-" + anthropic_id.removeprefix("msg_")
