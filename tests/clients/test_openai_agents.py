"""The OpenAI Agents SDK with its default model (the Responses API) runs a tool-using agent
through thrifty against an Anthropic-protocol and an OpenAI-protocol upstream."""

from __future__ import annotations

import json

import openai
import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.models.openai_responses import OpenAIResponsesModel

from tests.conftest import RunningGateway
from thrifty.testing.mock_upstream import MockUpstream

set_tracing_disabled(True)  # its exporter would post spans to api.openai.com


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_agent_calls_a_tool_then_answers(
    thrifty: RunningGateway, upstream: MockUpstream, model: str, streamed: bool
) -> None:
    upstream.script = [{"tool": "weather", "arguments": {"city": "Paris"}}, {"text": "It is sunny in Paris."}]
    client = openai.AsyncOpenAI(base_url=thrifty.url + "/v1", api_key="unused", max_retries=0)
    agent = Agent(name="forecaster", instructions="Answer with the weather tool.", tools=[weather],
                  model=OpenAIResponsesModel(model=model, openai_client=client))
    if streamed:
        run = Runner.run_streamed(agent, "Weather in Paris?")
        async for _ in run.stream_events():
            pass
        result = run
    else:
        result = await Runner.run(agent, "Weather in Paris?")  # type: ignore[assignment]
    assert result.final_output == "It is sunny in Paris."
    kinds = [item.type for item in result.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    second = json.dumps(upstream.bodies[1])
    assert "sunny in Paris" in second and len(upstream.bodies) == 2
    assert len(thrifty.rows()) == 2
