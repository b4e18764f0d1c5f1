"""A complete answer replayed as the stream the client asked for.

The exact cache serves a stored body to a streaming client, and a cascade that buffered its
cheap tier's answer serves that body to one: both need the events a live stream of that
endpoint and protocol would have sent (chat chunks ending in `[DONE]`, Messages events,
legacy completion chunks, Responses events). This is the one place that picks the right
replayer.
"""

from __future__ import annotations

from typing import Any

from thrifty.protocol.anthropic import replay_anthropic
from thrifty.protocol.completions import replay_completion
from thrifty.protocol.openai import replay_openai
from thrifty.protocol.responses_native import replay_response
from thrifty.types import SSEEvent, Wire

__all__ = ["replay_events"]


def replay_events(body: dict[str, Any], protocol: Wire, endpoint: str, stream_options: Any = None) -> list[SSEEvent]:
    """The events of `body` as a live stream: `endpoint` "completions" for the legacy API, a
    Responses object (`"object": "response"`) as Responses events, else chat chunks or
    Messages events by `protocol`. A usage chunk is sent when `stream_options.include_usage`
    asks for one, as the APIs do."""
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    if endpoint == "completions":
        return replay_completion(body, include_usage)
    if body.get("object") == "response":
        return replay_response(body)
    if protocol == "anthropic":
        return replay_anthropic(body)
    return replay_openai(body, include_usage)
